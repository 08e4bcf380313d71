"""Flux queries against a real InfluxDB 2 (collected only when PLANTWATCH_TEST_INFLUX_URL is set).

Environment: PLANTWATCH_TEST_INFLUX_URL, PLANTWATCH_TEST_INFLUX_TOKEN, PLANTWATCH_TEST_INFLUX_ORG
(default "plantwatch"), PLANTWATCH_TEST_INFLUX_BUCKET (default "plantwatch"). The answers are
compared with the SQLite store's answers for the same readings.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ingest.store.influx import open_influx
from ingest.store.sqlite import SQLiteReadingStore
from tests.store._util import make_batch

T0 = 1_795_459_488_000


def test_flux_raw_and_aggregate_match_sqlite(tmp_path: Path) -> None:
    url = os.environ["PLANTWATCH_TEST_INFLUX_URL"]
    store = open_influx(url, os.environ.get("PLANTWATCH_TEST_INFLUX_TOKEN", ""),
                        os.environ.get("PLANTWATCH_TEST_INFLUX_ORG", "plantwatch"),
                        os.environ.get("PLANTWATCH_TEST_INFLUX_BUCKET", "plantwatch"), tmp_path, background=False)
    ref = SQLiteReadingStore(tmp_path / "ref.sqlite3")
    ent = f'E "{uuid.uuid4().hex[:8]}"'  # quotes and spaces: must travel as parameters
    n = 300
    ts = [T0 + i * 1500 for i in range(n)]
    vals = [round((i * 7919) % 1000 / 10.0, 1) for i in range(n)]
    b = make_batch([ent] * n, ["GW 1"] * n, ["GT,101"] * n, ts, vals, rows=[0] * n, ts_source=[i % 3 for i in range(n)])
    store.write_readings(b)
    ref.write_readings(b)
    assert store.buffer_bytes == 0
    start, end = T0 + 10_000, T0 + 400_000
    assert store.query_readings(ent, "GT,101", start, end, 50) == ref.query_readings(ent, "GT,101", start, end, 50)
    got = store.query_aggregate(ent, "GT,101", start, end, 60_000)
    want = ref.query_aggregate(ent, "GT,101", start, end, 60_000)
    assert [(a.start_ms, a.min, a.max, a.count) for a in got] == [(a.start_ms, a.min, a.max, a.count) for a in want]
    assert all(abs(a.mean - w.mean) < 1e-9 for a, w in zip(got, want, strict=True))
    assert store.query_readings(ent, "other", start, end, 50) == []
    store.close()
    ref.close()
