"""The ``plantwatch`` command: serve, demo, simulate, replay, evaluate."""

from __future__ import annotations

import argparse
import logging
import sys

from plantwatch.tools import add_parsers as add_tool_parsers
from plantwatch.tools import evaluate_main, replay_main


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from plantwatch.settings import Settings

    overrides = {k: v for k, v in (("http_host", args.host), ("http_port", args.port)) if v is not None}
    settings = Settings(**overrides)
    _setup_logging(settings.log_level)
    logging.getLogger("plantwatch").info(
        "plantwatch serve: MQTT %s (prefix %r), HTTP http://%s:%d, data %s, store %s",
        settings.mqtt_url, settings.topic_prefix, settings.http_host, settings.http_port,
        settings.data_dir, settings.store)
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                log_level=settings.log_level.lower(), access_log=False, ws="websockets-sansio")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from plantwatch.demo import run_demo

    return run_demo(speed=args.speed, duration_s=args.duration, http_port=args.port, mqtt_port=args.mqtt_port,
                    data_dir=args.data_dir)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "simulate":
        from simulators.cli import main as simulate_main

        return simulate_main(argv[1:])
    parser = argparse.ArgumentParser(prog="plantwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the service against an external MQTT broker (settings from PLANTWATCH_*)")
    p.add_argument("--host", help="HTTP bind address (default PLANTWATCH_HTTP_HOST)")
    p.add_argument("--port", type=int, help="HTTP port (default PLANTWATCH_HTTP_PORT)")
    p = sub.add_parser("demo", help="embedded MQTT broker + simulated plants with incidents + the service")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many real seconds")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--mqtt-port", type=int, default=1883, help="embedded broker port (default 1883)")
    p.add_argument("--data-dir", default="./var/demo", help="demo data directory, wiped at start")
    sub.add_parser("simulate", help="publish simulated plants to a broker (see: plantwatch simulate --help)")
    add_tool_parsers(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "replay":
        return replay_main(args)
    if args.command == "evaluate":
        return evaluate_main(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
