"""The ``plantwatch`` command: serve, demo, simulate, replay, evaluate."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="plantwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service against an external MQTT broker")
    sub.add_parser("demo", help="embedded broker + simulated plants + the service")
    sub.add_parser("simulate", help="publish a simulated plant to a broker", add_help=False)
    if argv and argv[0] == "simulate":
        from simulators.cli import main as simulate_main

        return simulate_main(argv[1:])
    args = parser.parse_args(argv)
    parser.error(f"command {args.command!r} is not implemented yet")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
