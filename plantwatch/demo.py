"""``plantwatch demo``: embedded broker (amqtt), simulated plants with incidents, the service.

Everything runs in one asyncio loop: the amqtt broker on loopback, the service (its
MQTT client connects to that broker exactly as it would to Mosquitto), the HTTP API
under uvicorn, and the simulators publishing the demo scenario. Alarm events are
printed to the terminal as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("plantwatch.demo")

DEMO_DAY_S = 24 * 3600.0

_COLOURS = {"red": "\033[41;97m", "orange": "\033[48;5;208;30m", "yellow": "\033[43;30m", "blue": "\033[44;97m",
            "none": ""}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(preferred: int) -> int:
    if preferred and _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(config: Any) -> Any:
    """uvicorn's server without its own signal capture: the demo handles Ctrl-C itself and
    shuts the parts down in order (uvicorn would re-raise the signal after serving)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


async def _start_broker(port: int) -> Any:
    from amqtt.broker import Broker

    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 1000}},
        "sys_interval": 0,
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    return broker


def format_event(item: dict[str, Any]) -> str:
    """One terminal line for a hub item ``{"alarm": ..., "event": ...}`` (value null = no reading)."""
    a, e = item["alarm"], item["event"]
    colour = _COLOURS.get(a["level"], "")
    value = "—" if a.get("value") is None else f"{a['value']:.4g}"
    by = f" by {e['by']}" if e.get("by") else ""
    return (f"{colour}[{a['level'].upper():6}]\033[0m #{a['id']} {e['type']:<12} {a['enterprise_id']}/"
            f"{a['sensor_id']} {a['kind']} rule={a['rule']} value={value} status={a['status']}{by}")


async def _print_events(svc: Any) -> None:
    sub = svc.hub.subscribe()
    try:
        while True:
            item = await sub.queue.get()
            if item is None:
                return
            print(format_event(item), flush=True)
    finally:
        svc.hub.unsubscribe(sub)


async def _demo(speed: float, duration_s: float | None, http_port: int, mqtt_port: int, data_dir: Path) -> None:
    import uvicorn

    from api.app import create_app
    from plantwatch.clock import wall_ms
    from plantwatch.registry import Registry
    from plantwatch.service import Service
    from plantwatch.settings import Settings
    from simulators.demo import demo_scenario
    from simulators.publish import default_start_ms
    from simulators.publish import run as publish

    mqtt_port = _pick_port(mqtt_port)
    http_port = _pick_port(http_port)
    # at speed > 1 the simulated day starts in the past so its timestamps never run ahead of
    # the wall clock (the service rejects readings > max_future_skew_s in the future)
    start_ms = wall_ms() if speed <= 1 else default_start_ms(DEMO_DAY_S, speed)
    scenario = demo_scenario(start_ms, duration_s=DEMO_DAY_S)
    registry = Registry()
    registry.load(scenario.registry(), where="demo scenario")
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}", http_port=http_port, data_dir=data_dir,
                        mqtt_client_id="plantwatch-demo")
    broker = await _start_broker(mqtt_port)
    svc = Service(settings, registry=registry)
    await svc.start()
    app = create_app(service=svc)
    server = _server(uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning",
                                           access_log=False, ws="websockets-sansio"))
    base = f"http://127.0.0.1:{http_port}"
    print(
        f"\nplantwatch demo — {len(registry.enterprises)} enterprises, {len(registry)} sensors, speed {speed}x\n"
        f"  MQTT broker (embedded):  mqtt://127.0.0.1:{mqtt_port}  topics plants/+/+/telemetry\n"
        f"  API docs:                {base}/docs\n"
        f"  open alarms:             {base}/api/v1/alarms?status=open\n"
        f"  enterprises + risk:      {base}/api/v1/enterprises\n"
        f"  live alarm stream:       ws://127.0.0.1:{http_port}/api/v1/alarms/stream\n"
        f"  metrics:                 {base}/metrics\n"
        f"  data:                    {data_dir}\n"
        "Alarms appear below within a minute (scheduled incidents). Ctrl-C stops.\n",
        flush=True,
    )
    stop = asyncio.Event()  # tells the simulators to stop

    async def _simulate() -> None:
        stats = await publish(scenario, settings.mqtt_url, speed=speed, stop=stop, start_ms=start_ms)
        if not stats.stopped:
            print(f"simulated day over: {stats.readings} readings in {stats.messages} messages published; "
                  "the service keeps running (Ctrl-C stops)", flush=True)

    quit_ = asyncio.Event()  # Ctrl-C / SIGTERM
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, quit_.set)
    tasks = [
        asyncio.create_task(server.serve(), name="http"),
        asyncio.create_task(_print_events(svc), name="printer"),
        asyncio.create_task(_simulate(), name="simulators"),
    ]
    quit_task = asyncio.create_task(quit_.wait(), name="quit")
    try:
        # until Ctrl-C, the duration, or the HTTP server ending on its own (e.g. its port was taken);
        # when the simulated day is over the service keeps running for browsing
        await asyncio.wait([quit_task, tasks[0]], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.error("demo component %s failed: %r", t.get_name(), t.exception())
    finally:
        quit_task.cancel()
        # orderly: stop publishing, let uvicorn finish its lifespan, then the service, then the broker
        stop.set()
        server.should_exit = True
        http, printer, sims = tasks
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(sims), 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(http), 10.0)
        await svc.stop()  # closes the hub: the printer sees the end of its queue
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(printer), 5.0)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(Exception):
            await broker.shutdown()
        print("plantwatch demo stopped.", flush=True)


def run_demo(*, speed: float = 1.0, duration_s: float | None = None, http_port: int = 8080,
             mqtt_port: int = 1883, data_dir: str | Path = "./var/demo") -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("plantwatch").setLevel(logging.INFO)
    data_path = Path(data_dir)
    shutil.rmtree(data_path, ignore_errors=True)
    data_path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_demo(speed, duration_s, http_port, mqtt_port, data_path))
    return 0
