#!/usr/bin/env bash
# The demo on a fresh machine: virtualenv + pinned packages, then an embedded MQTT
# broker, simulated plants with scheduled incidents and the service, all in one process.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" test
exec plantwatch demo "$@"
