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
import socket
from pathlib import Path
from typing import Any

log = logging.getLogger("plantwatch.demo")

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


async def _start_broker(port: int) -> Any:
    from amqtt.broker import Broker

    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 1000}},
        "sys_interval": 0,
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    return broker


async def _print_events(svc: Any) -> None:
    sub = svc.hub.subscribe()
    try:
        while True:
            item = await sub.queue.get()
            if item is None:
                return
            a, e = item["alarm"], item["event"]
            colour = _COLOURS.get(a["level"], "")
            print(f"{colour}[{a['level'].upper():6}]\033[0m #{a['id']} {e['type']:<12} {a['enterprise_id']}/"
                  f"{a['sensor_id']} {a['kind']} rule={a['rule']} value={a['value']:.4g} status={a['status']}",
                  flush=True)
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
    from simulators.publish import run as publish

    mqtt_port = _pick_port(mqtt_port)
    http_port = _pick_port(http_port)
    start_ms = wall_ms()
    scenario = demo_scenario(start_ms)
    registry = Registry()
    registry.load(scenario.registry(), where="demo scenario")
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}", http_port=http_port, data_dir=data_dir,
                        mqtt_client_id="plantwatch-demo")
    broker = await _start_broker(mqtt_port)
    svc = Service(settings, registry=registry)
    await svc.start()
    app = create_app(service=svc)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning",
                                           access_log=False, ws="websockets"))
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
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(server.serve(), name="http"),
        asyncio.create_task(_print_events(svc), name="printer"),
        asyncio.create_task(publish(scenario, settings.mqtt_url, speed=speed, stop=stop, start_ms=start_ms),
                            name="simulators"),
    ]
    try:
        if duration_s is not None:
            await asyncio.sleep(duration_s)
        else:
            await asyncio.gather(*tasks)
    finally:
        stop.set()
        server.should_exit = True
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        await svc.stop()
        with contextlib.suppress(Exception):
            await broker.shutdown()


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
