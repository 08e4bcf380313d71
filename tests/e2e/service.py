"""Start ``plantwatch serve`` as a user would (a subprocess) against a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import free_port


@dataclass
class RunningService:
    base: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=5) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body.decode()

    def get_with_headers(self, path: str) -> tuple[Any, dict[str, str]]:
        """The JSON body and the response headers of a GET."""
        with urllib.request.urlopen(self.base + path, timeout=5) as r:
            return json.loads(r.read()), dict(r.headers.items())

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, JSON body) of any method; HTTP errors are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metrics(self) -> str:
        out: str = self.get("/metrics")
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(pred: Any, timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``pred()`` until truthy (bounded wait on a real server; not a clock substitute)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last value {last!r}")


@contextmanager
def plantwatch_serve(tmp: Path, mqtt_url: str, config_toml: str, extra_env: dict[str, str] | None = None,
                     ) -> Iterator[RunningService]:
    """Run ``python -m plantwatch.cli serve`` with PLANTWATCH_* settings; wait until healthy."""
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "plantwatch.toml"
    cfg.write_text(config_toml)
    port = free_port()
    env = {**os.environ,
           "PLANTWATCH_MQTT_URL": mqtt_url, "PLANTWATCH_HTTP_HOST": "127.0.0.1", "PLANTWATCH_HTTP_PORT": str(port),
           "PLANTWATCH_DATA_DIR": str(tmp / "data"), "PLANTWATCH_CONFIG": str(cfg),
           "PLANTWATCH_MQTT_CLIENT_ID": f"plantwatch-test-{port}", **(extra_env or {})}
    log_path = tmp / "service.log"
    with log_path.open("wb") as log:
        exe = Path(sys.executable).parent / "plantwatch"  # the console script users run
        cmd = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "plantwatch.cli", "serve"]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    svc = RunningService(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"plantwatch serve exited with {proc.returncode}:\n{svc.log()}")
            try:
                return bool(svc.get("/api/v1/healthz")["mqtt_connected"])
            except (OSError, urllib.error.HTTPError):
                return False
        wait_for(healthy, 30.0, "plantwatch serve to become healthy")
        yield svc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
