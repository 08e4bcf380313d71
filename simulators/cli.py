"""``plantwatch simulate``: publish a scenario, a generated load or a recorded CSV to a broker.

Examples::

    plantwatch simulate --scenario gas --mqtt-url mqtt://127.0.0.1:1883 --speed 10
    plantwatch simulate --scenario plant.toml --fast --labels-out labels.jsonl --registry-out registry.toml
    plantwatch simulate --plants 20 --sensors-per-plant 100 --rate 1 --duration 600
    plantwatch simulate --replay recorded.csv --speed 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
from pathlib import Path

import aiomqtt

from simulators.labels import write_labels
from simulators.publish import PublishStats, default_start_ms, replay, run
from simulators.scenario import (
    Scenario,
    bundled_scenarios,
    generate_scenario,
    load_mode_scenario,
    load_scenario,
)
from simulators.spec import ScenarioError
from simulators.stream import ReplayError, write_csv
from simulators.tomlw import registry_toml


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plantwatch simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source (one of)")
    src.add_argument("--scenario", metavar="FILE",
                     help=f"scenario TOML, or a bundled name: {', '.join(bundled_scenarios())}")
    src.add_argument("--generate", metavar="SEED", type=int, help="a random scenario from this seed")
    src.add_argument("--plants", type=int, help="load mode: number of plants (one gateway each)")
    src.add_argument("--replay", metavar="FILE.csv",
                     help="replay recorded CSV (ts_ms,enterprise_id,device_id,sensor,value)")
    p.add_argument("--sensors-per-plant", type=int, default=100, help="load mode: sensors per plant (100)")
    p.add_argument("--rate", type=float, default=1.0, help="load mode: readings per second per sensor (1)")
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883", help="broker (mqtt://[user:pass@]host:port)")
    p.add_argument("--speed", type=float, default=1.0, help="virtual clock: N× real time (1)")
    p.add_argument("--fast", action="store_true", help="as fast as possible (ignores --speed)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                   help="one batch message per gateway and tick (default) or one message per reading")
    p.add_argument("--prefix", default="plants", help="topic prefix (plants)")
    p.add_argument("--duration", type=float, metavar="S", help="override the scenario duration (s)")
    p.add_argument("--seed", type=int, help="override the scenario seed")
    p.add_argument("--start-ms", type=int, help="virtual start, epoch ms (default: ends at about now)")
    p.add_argument("--keep-ts", action="store_true", help="replay: keep the recorded timestamps")
    p.add_argument("--labels-out", metavar="FILE", help="write ground-truth labels (JSON lines)")
    p.add_argument("--registry-out", metavar="FILE", help="write the registry (.json, else TOML)")
    p.add_argument("--record-out", metavar="FILE.csv", help="write the readings as CSV")
    p.add_argument("--dry-run", action="store_true", help="write the requested files, publish nothing")
    p.add_argument("--no-offline", action="store_true", help="do not publish retained 'offline' at the end")
    return p


def write_registry(sc: Scenario, path: Path) -> None:
    reg = sc.registry()
    if path.suffix == ".json":
        path.write_text(json.dumps(reg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        path.write_text(registry_toml(reg), encoding="utf-8")


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario:
        sc = load_scenario(args.scenario)
    elif args.generate is not None:
        sc = generate_scenario(args.generate)
    else:
        sc = load_mode_scenario(args.plants, args.sensors_per_plant, args.rate, seed=args.seed or 0,
                                duration_s=args.duration or 3600.0)
    if args.seed is not None:
        sc = sc.with_seed(args.seed)
    if args.duration is not None:
        sc = sc.with_duration(args.duration)
    return sc


async def _main(args: argparse.Namespace, speed: float) -> PublishStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if args.replay:
        return await replay(Path(args.replay), args.mqtt_url, speed=speed, qos=args.qos, batch=args.batch,
                            prefix=args.prefix, stop=stop, start_ms=args.start_ms, keep_ts=args.keep_ts,
                            announce_offline=not args.no_offline)
    sc = args.compiled
    return await run(sc, args.mqtt_url, speed=speed, qos=args.qos, batch=args.batch, prefix=args.prefix,
                     stop=stop, start_ms=sc.start_ms, announce_offline=not args.no_offline)


def main(argv: list[str]) -> int:
    """Entry point of ``plantwatch simulate``; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    sources = sum(x is not None for x in (args.scenario, args.generate, args.plants, args.replay))
    if sources != 1:
        parser.error("give exactly one of --scenario, --generate, --plants, --replay")
    speed = math.inf if args.fast else args.speed
    if not args.fast and args.speed <= 0:
        parser.error("--speed must be positive (use --fast for as fast as possible)")
    try:
        if not args.replay:
            sc = _scenario(args)
            start = args.start_ms if args.start_ms is not None else sc.start_ms
            if start is None:
                start = default_start_ms(sc.duration_s, speed)
            sc = sc.with_start(start)
            args.compiled = sc
            if args.registry_out:
                write_registry(sc, Path(args.registry_out))
            if args.labels_out:
                write_labels(sc.labels(), Path(args.labels_out))
            if args.record_out:
                n = write_csv(sc.plant(), Path(args.record_out))
                print(f"recorded {n} readings to {args.record_out}", file=sys.stderr)
            print(f"scenario {sc.name}: {len(sc.sensors)} sensors on {len(sc.devices)} gateways, "
                  f"{len(sc.events)} incidents/faults, {sc.duration_s:g} s from start_ms={start}", file=sys.stderr)
        if args.dry_run:
            return 0
        stats = asyncio.run(_main(args, speed))
    except (ScenarioError, ReplayError) as exc:
        print(f"plantwatch simulate: {exc}", file=sys.stderr)
        return 2
    except (aiomqtt.MqttError, OSError) as exc:
        print(f"plantwatch simulate: broker {args.mqtt_url}: {exc}", file=sys.stderr)
        return 1
    print(f"published {stats.messages} messages, {stats.readings} readings, {stats.status} status, "
          f"{stats.wills} gateway deaths in {stats.wall_s:.2f} s ({stats.readings_per_s:.0f} readings/s); "
          f"virtual {stats.start_ms}..{stats.end_ms}{' (stopped)' if stats.stopped else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
