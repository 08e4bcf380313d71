#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs Mosquitto and VictoriaMetrics
# (apt) when missing, the virtualenv and pinned packages, then ruff, mypy, pytest.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # the Debian packages enable system services; tests start their own on free ports
  for s in mosquitto victoria-metrics; do $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true; done
fi
source "$(dirname "$0")/_venv.sh" test
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"; exec pytest "$@"
