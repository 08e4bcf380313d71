"""Real servers for end-to-end tests: Mosquitto and VictoriaMetrics on free loopback ports.

The test command (scripts/test.sh) installs both with apt; these helpers start them as
subprocesses and wait until they accept connections. Nothing here is a fake.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until 127.0.0.1:port accepts a TCP connection (or raise naming the port)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def find_binary(name: str, *extra: str) -> str:
    for cand in (shutil.which(name), *extra):
        if cand and Path(cand).exists():
            return cand
    raise RuntimeError(f"{name} is not installed; run scripts/test.sh, which installs it with apt")


@dataclass
class Broker:
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


@contextmanager
def mosquitto(tmp: Path, port: int | None = None) -> Iterator[Broker]:
    """Run a real Mosquitto broker bound to loopback with persistence in ``tmp``."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {tmp}/\n"
        "max_queued_messages 1000000\n"
        "max_inflight_messages 1000\n"
        "log_type error\n"
    )
    binary = find_binary("mosquitto", "/usr/sbin/mosquitto")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc=proc)
        yield Broker("127.0.0.1", port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class VictoriaMetrics:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def victoria_metrics(tmp: Path, port: int | None = None) -> Iterator[VictoriaMetrics]:
    """Run Debian's victoria-metrics (speaks InfluxDB's v2 write API) on loopback."""
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    binary = find_binary("victoria-metrics", "/usr/bin/victoria-metrics")
    proc = subprocess.Popen(
        [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={tmp}",
         "-retentionPeriod=100y", "-search.disableCache", "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, proc=proc)
        yield VictoriaMetrics(port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
