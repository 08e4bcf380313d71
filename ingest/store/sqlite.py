"""Embedded SQLite stores (WAL): readings, unregistered sensors, alarms, events, snapshots.

Two database files under ``data_dir`` so that a large reading transaction never delays
an alarm save (SQLite allows one writer per file): ``readings.sqlite3`` and
``alarms.sqlite3``.

Durability: WAL with ``synchronous=NORMAL`` (default). A committed transaction is in
the WAL file when ``write_readings``/``save_changes`` returns, so it survives the
process being killed (``kill -9``). Against power loss or an OS crash, the WAL is only
fsynced at checkpoints, so the last transactions before the crash may roll back (the
database stays consistent). Pass ``synchronous="FULL"`` to fsync every commit.

Threads: all writes go through one writer connection under a lock (normally the
ingest thread for readings, the event loop for alarms); reads use one read-only
connection per calling thread, so API queries never wait for a write to finish.
"""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from alerts.model import Alarm, AlarmEvent, Change
from ingest.batch import ReadingBatch
from ingest.store.base import AggRow, ReadingRow, StoredSince, StoreError, UnregisteredSensor
from plantwatch.domain import AlarmStatus, Level

Synchronous = Literal["OFF", "NORMAL", "FULL"]


class _Db:
    """One SQLite file: a locked writer connection plus per-thread read-only connections."""

    def __init__(self, path: Path, schema: str, synchronous: Synchronous, name: str) -> None:
        self.path = path
        self.name = name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            w = self.writer
            w.execute("PRAGMA journal_mode=WAL")
            w.execute(f"PRAGMA synchronous={synchronous}")
            w.execute("PRAGMA busy_timeout=10000")
            w.execute("PRAGMA cache_size=-65536")  # KiB: 64 MiB page cache for the writer
            w.execute("PRAGMA temp_store=MEMORY")
            # each batch dirties ~one index page per sensor; checkpoint every ~40 MiB of WAL instead of
            # every 4 MiB so those pages are copied to the database once per many batches
            w.execute("PRAGMA wal_autocheckpoint=10000")
            w.execute("PRAGMA journal_size_limit=67108864")
            w.executescript(schema)
        except sqlite3.Error as exc:
            raise StoreError(name, "open", f"{path}: {exc}") from None
        self.lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False

    @contextmanager
    def transaction(self, op: str) -> Iterator[sqlite3.Connection]:
        """Writer connection inside BEGIN IMMEDIATE ... COMMIT (rolled back on error)."""
        with self.lock:
            if self._closed:
                raise StoreError(self.name, op, "store is closed")
            w = self.writer
            try:
                w.execute("BEGIN IMMEDIATE")
                try:
                    yield w
                except BaseException:
                    w.execute("ROLLBACK")
                    raise
                w.execute("COMMIT")
            except sqlite3.Error as exc:
                if w.in_transaction:
                    w.execute("ROLLBACK")
                raise StoreError(self.name, op, str(exc)) from None

    @property
    def closed(self) -> bool:
        return self._closed

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(self.name, "read", "store is closed")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self.lock:
                self._readers.append(conn)
        return conn

    def query(self, op: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.reader().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(self.name, op, str(exc)) from None

    def close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
            for c in self._readers:
                c.close()
            self._readers.clear()
            with suppress(sqlite3.Error):
                self.writer.execute("PRAGMA optimize")
            self.writer.close()


# -- readings ---------------------------------------------------------------------------

BUCKET_MS = 3_600_000  # a chunk never spans two hours: queries seek (series, hour) ranges

_READINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    enterprise_id TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    UNIQUE (enterprise_id, sensor_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    series INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ts BLOB NOT NULL,
    value BLOB NOT NULL,
    ts_source BLOB NOT NULL,
    received BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_series_bucket ON chunks (series, bucket, id);
CREATE TABLE IF NOT EXISTS unregistered (
    series INTEGER PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS unregistered_seen (
    series INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (series, ts_ms)
) WITHOUT ROWID;
"""

_I64 = np.dtype("<i8")
_F64 = np.dtype("<f8")


class _Cols:
    """Decoded columns of a sensor's chunks in one bucket, deduplicated (first written wins), by ts."""

    __slots__ = ("src", "ts", "value")

    def __init__(self, rows: list[Any]) -> None:
        ts = np.frombuffer(b"".join(r[0] for r in rows), dtype=_I64)
        value = np.frombuffer(b"".join(r[1] for r in rows), dtype=_F64)
        src = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint8)
        # rows come in insertion order; np.unique returns the first occurrence, sorted by ts
        _, first = np.unique(ts, return_index=True)
        self.ts, self.value, self.src = ts[first], value[first], src[first]


def _in_pieces(cur: sqlite3.Cursor, fetch: int, n_col: int, max_readings: int,
               piece: Callable[[list[Any]], StoredSince]) -> Iterator[StoredSince]:
    """The rows of ``cur`` as pieces of about ``max_readings`` readings (whole rows; column
    ``n_col`` counts a row's readings), fetched ``fetch`` rows at a time; the cursor is closed
    at the end or when the caller stops early."""
    try:
        taken: list[Any] = []
        n = 0
        while rows := cur.fetchmany(fetch):
            for r in rows:
                taken.append(r)
                n += r[n_col]
                if n >= max_readings:
                    yield piece(taken)
                    taken, n = [], 0
        if taken:
            yield piece(taken)
    except sqlite3.Error as exc:
        raise StoreError("sqlite", "readings_after", str(exc)) from None
    finally:
        cur.close()


class SQLiteReadingStore:
    """Readings in ``readings.sqlite3``, stored as per-sensor column chunks.

    Schema: ``series(id, enterprise_id, sensor_id, device_id)`` unique on (enterprise,
    sensor); ``chunks(id, series, bucket, n, ts, value, ts_source, received)`` where each
    row holds the readings of one sensor from one batch within one hour (``bucket =
    ts_ms // 3_600_000``) as little-endian numpy column bytes (int64 ms, float64, uint8,
    int64 ms), indexed by (series, bucket, id). A 10k-reading batch of 1000 sensors is
    ~1000 row inserts instead of 10,000, which is what makes the embedded store fast.

    Identity and duplicates: a reading is identified by (enterprise, sensor, ts). Queries
    deduplicate by ts keeping the first one written (lowest chunk id), so an MQTT
    redelivery is harmless (it costs only disk until ``compact()`` rewrites the chunks),
    and of two different values with the same timestamp the first one is kept.
    """

    _schema = _READINGS_SCHEMA

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous
        """Where and how durably it writes (a writer process opens the same file the same way)."""
        self._db = _Db(path, self._schema, synchronous, "sqlite")
        self._by_key: dict[tuple[str, str], int] = {
            (e, s): i for i, e, s in self._db.writer.execute("SELECT id, enterprise_id, sensor_id FROM series")
        }
        self._by_row = np.full(1024, -1, dtype=np.int64)  # registry row -> series id (rows never move)

    # -- writing ----------------------------------------------------------------------
    def _series_ids(self, conn: sqlite3.Connection, batch: ReadingBatch) -> npt.NDArray[np.int64]:
        rows = batch.row
        n = len(rows)
        if len(rows) and int(rows.max()) >= len(self._by_row):
            grown = np.full(max(int(rows.max()) + 1, 2 * len(self._by_row)), -1, dtype=np.int64)
            grown[: len(self._by_row)] = self._by_row
            self._by_row = grown
        ids = np.full(n, -1, dtype=np.int64)
        known = rows >= 0
        ids[known] = self._by_row[rows[known]]
        missing = np.flatnonzero(ids < 0)
        if len(missing):
            ent, sen, dev = batch.enterprise_id, batch.sensor_id, batch.device_id
            by_key = self._by_key
            for i in missing.tolist():
                key = (ent[i], sen[i])
                sid = by_key.get(key)
                if sid is None:
                    # another process (a writer child, a restarted service) may have added it meanwhile
                    cur = conn.execute("INSERT INTO series (enterprise_id, sensor_id, device_id) VALUES (?, ?, ?) "
                                       "ON CONFLICT (enterprise_id, sensor_id) DO NOTHING", (key[0], key[1], dev[i]))
                    if cur.rowcount == 1:
                        sid = int(cur.lastrowid or 0)
                    else:
                        sid = int(conn.execute("SELECT id FROM series WHERE enterprise_id = ? AND sensor_id = ?",
                                               key).fetchone()[0])
                    by_key[key] = sid
                ids[i] = sid
                r = int(rows[i])
                if r >= 0:
                    self._by_row[r] = sid
        return ids

    def write_readings(self, batch: ReadingBatch) -> None:
        """Insert the whole batch in one transaction (durable against process kill on return)."""
        if not len(batch):
            return
        try:
            with self._db.transaction("write_readings") as conn:
                ids = self._series_ids(conn, batch)
                unreg = batch.row < 0
                if unreg.any():
                    self._note_unregistered(conn, batch, ids, unreg)
                self._insert_chunks(conn, ids, batch)
        except BaseException:
            # series rows inserted in the failed transaction were rolled back: forget their ids
            if not self._db.closed:
                self._reload_series()
            raise

    @staticmethod
    def _insert_chunks(conn: sqlite3.Connection, ids: npt.NDArray[np.int64], batch: ReadingBatch) -> None:
        ts_all = batch.ts_ms
        bucket = ts_all // BUCKET_MS
        o = np.lexsort((ts_all, bucket, ids))
        sid, bk = ids[o], bucket[o]
        cut = np.flatnonzero((sid[1:] != sid[:-1]) | (bk[1:] != bk[:-1])) + 1
        starts = np.concatenate(([0], cut))
        ends = np.concatenate((cut, [len(o)]))
        ts_b = ts_all[o].astype(_I64, copy=False).tobytes()
        val_b = batch.value[o].astype(_F64, copy=False).tobytes()
        src_b = batch.ts_source[o].tobytes()
        recv_b = batch.received_ms[o].astype(_I64, copy=False).tobytes()
        conn.executemany(
            "INSERT INTO chunks (series, bucket, n, ts, value, ts_source, received) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(s, b, e - a, ts_b[8 * a:8 * e], val_b[8 * a:8 * e], src_b[a:e], recv_b[8 * a:8 * e])
             for s, b, a, e in zip(sid[starts].tolist(), bk[starts].tolist(), starts.tolist(), ends.tolist(),
                                   strict=True)],
        )

    @staticmethod
    def _note_unregistered(conn: sqlite3.Connection, batch: ReadingBatch, ids: npt.NDArray[np.int64],
                           unreg: npt.NDArray[np.bool_]) -> None:
        """Count unregistered readings per sensor exactly (a redelivered reading is not counted again)."""
        sub_ids = ids[unreg]
        order = np.argsort(sub_ids, kind="stable")
        idx = np.flatnonzero(unreg)[order]
        bounds = np.flatnonzero(np.diff(sub_ids[order])) + 1
        for grp in np.split(idx, bounds):
            sid = int(ids[grp[0]])
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO unregistered_seen VALUES (?, ?)",
                             zip([sid] * len(grp), batch.ts_ms[grp].tolist(), strict=True))
            new = conn.total_changes - before
            recv = batch.received_ms[grp]
            conn.execute(
                "INSERT INTO unregistered (series, first_seen_ms, last_seen_ms, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (series) DO UPDATE SET first_seen_ms = min(first_seen_ms, excluded.first_seen_ms), "
                "last_seen_ms = max(last_seen_ms, excluded.last_seen_ms), count = count + excluded.count",
                (sid, int(recv.min()), int(recv.max()), new),
            )

    def _reload_series(self) -> None:
        with self._db.lock:
            self._by_key = {
                (e, s): i for i, e, s in self._db.writer.execute("SELECT id, enterprise_id, sensor_id FROM series")
            }
            self._by_row[:] = -1

    def compact(self, before_ms: int) -> int:
        """Rewrite each sensor's chunks of the hours entirely before ``before_ms`` as one
        deduplicated chunk per hour; returns the number of chunk rows removed."""
        last_bucket = before_ms // BUCKET_MS - 1
        removed = 0
        groups = self._db.query("compact", "SELECT series, bucket FROM chunks WHERE bucket <= ? "
                                "GROUP BY series, bucket HAVING count(*) > 1", (last_bucket,))
        for series, bucket in groups:
            with self._db.transaction("compact") as conn:
                rows = conn.execute("SELECT id, ts, value, ts_source, received FROM chunks "
                                    "WHERE series = ? AND bucket = ? ORDER BY id", (series, bucket)).fetchall()
                ts = np.frombuffer(b"".join(r[1] for r in rows), dtype=_I64)
                _, first = np.unique(ts, return_index=True)
                cols = [np.frombuffer(b"".join(r[k] for r in rows), dtype=dt)[first]
                        for k, dt in ((1, _I64), (2, _F64), (3, np.uint8), (4, _I64))]
                conn.execute("DELETE FROM chunks WHERE series = ? AND bucket = ?", (series, bucket))
                # the merged chunk keeps the group's highest id, so the highest id in the table never
                # goes down and a chunk committed later always gets a higher one (replay marks rely on it)
                conn.execute("INSERT INTO chunks (id, series, bucket, n, ts, value, ts_source, received) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (rows[-1][0], series, bucket, len(first), *(c.tobytes() for c in cols)))
                removed += len(rows) - 1
        return removed

    # -- replay after a restart ---------------------------------------------------------
    def replay_mark(self) -> int:
        """Highest chunk id committed so far (0 when empty). Chunks committed later get
        higher ids, so :meth:`readings_after` with this mark returns exactly them."""
        return int(self._db.query("replay_mark", "SELECT coalesce(max(id), 0) FROM chunks")[0][0])

    @property
    def replay_source(self) -> str:
        """Which file the replay marks count chunks of (a snapshot's mark is only valid here)."""
        return self.path.name

    def readings_after(self, mark: int, max_readings: int = 100_000) -> Iterator[StoredSince]:
        """Readings of the chunks committed after ``mark``, in commit order (by sensor and
        time within one chunk), in pieces of about ``max_readings`` (whole chunks). The
        service feeds them to the alarm engine after restoring a snapshot taken at ``mark``."""
        return self._pieces_after("SELECT id, series, n, ts, value, received FROM chunks WHERE id > ? ORDER BY id",
                                  mark, 4096, 2, max_readings, self._stored_since)

    def _pieces_after(self, sql: str, mark: int, fetch: int, n_col: int, max_readings: int,
                      piece: Callable[[list[Any], dict[int, tuple[str, str]]], StoredSince]) -> Iterator[StoredSince]:
        """The rows of ``sql`` (ids above ``mark``) as :class:`StoredSince` pieces (``_in_pieces``)."""
        keys = {i: (e, s) for i, e, s in self._db.query("readings_after", "SELECT id, enterprise_id, sensor_id "
                                                        "FROM series")}
        try:
            cur = self._db.reader().execute(sql, (mark,))
        except sqlite3.Error as exc:
            raise StoreError("sqlite", "readings_after", str(exc)) from None
        # closing the cursor ends the read transaction even when the caller stops early
        yield from _in_pieces(cur, fetch, n_col, max_readings, lambda taken: piece(taken, keys))

    @staticmethod
    def _stored_since(taken: list[Any], keys: dict[int, tuple[str, str]]) -> StoredSince:
        _, series, counts, ts, value, received = zip(*taken, strict=True)
        sids, index = np.unique(np.array(series, np.int64), return_inverse=True)
        return StoredSince(
            keys=[keys[sid] for sid in sids.tolist()],
            series=np.repeat(index.astype(np.int64), np.array(counts, np.int64)),
            ts_ms=np.frombuffer(b"".join(ts), dtype=_I64).astype(np.int64),
            value=np.frombuffer(b"".join(value), dtype=_F64).astype(np.float64),
            received_ms=np.frombuffer(b"".join(received), dtype=_I64).astype(np.int64),
            mark=int(taken[-1][0]),
        )

    # -- reading ----------------------------------------------------------------------
    def _series_id(self, enterprise_id: str, sensor_id: str, op: str) -> int | None:
        rows = self._db.query(op, "SELECT id FROM series WHERE enterprise_id = ? AND sensor_id = ?",
                              (enterprise_id, sensor_id))
        return int(rows[0][0]) if rows else None

    def _buckets(self, op: str, sid: int, start_ms: int, end_ms: int) -> Generator[_Cols, None, None]:
        """Deduplicated columns per hour bucket overlapping [start_ms, end_ms), in time order."""
        if end_ms <= start_ms:
            return
        try:
            cur = self._db.reader().execute(
                "SELECT bucket, ts, value, ts_source FROM chunks WHERE series = ? AND bucket BETWEEN ? AND ? "
                "ORDER BY bucket, id", (sid, start_ms // BUCKET_MS, (end_ms - 1) // BUCKET_MS))
        except sqlite3.Error as exc:
            raise StoreError("sqlite", op, str(exc)) from None
        try:  # closing the cursor ends the read transaction even when the caller stops early
            group: list[Any] = []
            current = None
            for row in cur:
                if row[0] != current and group:
                    yield _Cols(group)
                    group = []
                current = row[0]
                group.append(row[1:])
            if group:
                yield _Cols(group)
        except sqlite3.Error as exc:
            raise StoreError("sqlite", op, str(exc)) from None
        finally:
            cur.close()

    def query_readings(self, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
                       limit: int = 10_000) -> list[ReadingRow]:
        sid = self._series_id(enterprise_id, sensor_id, "query_readings")
        if sid is None or limit <= 0:
            return []
        out: list[ReadingRow] = []
        with closing(self._buckets("query_readings", sid, start_ms, end_ms)) as buckets:
            for c in buckets:
                m = (c.ts >= start_ms) & (c.ts < end_ms)
                take = limit - len(out)
                ts, val, src = c.ts[m][:take], c.value[m][:take], c.src[m][:take]
                out.extend(map(ReadingRow, ts.tolist(), val.tolist(), src.tolist()))
                if len(out) >= limit:
                    break
        return out

    def query_aggregate(self, enterprise_id: str, sensor_id: str, start_ms: int, end_ms: int,
                        window_ms: int) -> list[AggRow]:
        if window_ms <= 0:
            raise StoreError("sqlite", "query_aggregate", f"window_ms must be positive, got {window_ms}")
        sid = self._series_id(enterprise_id, sensor_id, "query_aggregate")
        if sid is None:
            return []
        parts: list[tuple[npt.NDArray[np.int64], ...] | tuple[npt.NDArray[Any], ...]] = []
        for c in self._buckets("query_aggregate", sid, start_ms, end_ms):
            m = (c.ts >= start_ms) & (c.ts < end_ms)
            if not m.any():
                continue
            ts, val = c.ts[m], c.value[m]
            w = ts - ts % window_ms  # floor for any sign (numpy % follows the divisor)
            keys, first = np.unique(w, return_index=True)  # ts sorted, so w sorted: windows are runs
            parts.append((keys, np.add.reduceat(val, first), np.minimum.reduceat(val, first),
                          np.maximum.reduceat(val, first), np.diff(np.append(first, len(w)))))
        if not parts:
            return []
        keys = np.concatenate([p[0] for p in parts])
        s, lo, hi, cnt = (np.concatenate([p[k] for p in parts]) for k in range(1, 5))
        if len(parts) > 1:  # a window longer than an hour spans buckets: merge the partials
            uk, first = np.unique(keys, return_index=True)
            if len(uk) != len(keys):
                keys, s = uk, np.add.reduceat(s, first)
                lo, hi = np.minimum.reduceat(lo, first), np.maximum.reduceat(hi, first)
                cnt = np.add.reduceat(cnt, first)
        return [AggRow(k, t / n, a, b, n) for k, t, a, b, n in
                zip(keys.tolist(), s.tolist(), lo.tolist(), hi.tolist(), cnt.tolist(), strict=True)]

    def unregistered_sensors(self) -> list[UnregisteredSensor]:
        rows = self._db.query(
            "unregistered_sensors",
            "SELECT s.enterprise_id, s.device_id, s.sensor_id, u.first_seen_ms, u.last_seen_ms, u.count "
            "FROM unregistered u JOIN series s ON s.id = u.series ORDER BY s.enterprise_id, s.sensor_id")
        return [UnregisteredSensor(*r) for r in rows]

    @property
    def buffer_bytes(self) -> int:
        return 0

    @property
    def buffer_near_full(self) -> bool:
        return False

    def close(self) -> None:
        self._db.close()


# -- alarms -----------------------------------------------------------------------------


class ReplayJournal(SQLiteReadingStore):
    """The readings since the last engine snapshot, for a reading store that has no commit
    order of its own to replay from (InfluxDB). One row per written batch,
    ``batches(id, n, series, ts, value, received)`` with the columns as little-endian bytes
    (series ids from the inherited ``series`` table): one INSERT per batch and no sort, so
    it costs the writer little. ``id`` is the replay mark; :meth:`forget_below` drops what
    a durable snapshot holds. Only replay methods are meant to be used on it."""

    _schema = _READINGS_SCHEMA + """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    series BLOB NOT NULL,
    ts BLOB NOT NULL,
    value BLOB NOT NULL,
    received BLOB NOT NULL
);
"""

    def write_readings(self, batch: ReadingBatch) -> None:
        """Append the batch (registered readings: its rows name the series) in one transaction."""
        if not len(batch):
            return
        try:
            with self._db.transaction("journal_write") as conn:
                ids = self._series_ids(conn, batch)
                conn.execute("INSERT INTO batches (n, series, ts, value, received) VALUES (?, ?, ?, ?, ?)",
                             (len(batch), ids.astype(_I64, copy=False).tobytes(),
                              batch.ts_ms.astype(_I64, copy=False).tobytes(),
                              batch.value.astype(_F64, copy=False).tobytes(),
                              batch.received_ms.astype(_I64, copy=False).tobytes()))
        except BaseException:
            if not self._db.closed:
                self._reload_series()
            raise

    def replay_mark(self) -> int:
        """Highest batch id committed so far (0 when empty)."""
        return int(self._db.query("replay_mark", "SELECT coalesce(max(id), 0) FROM batches")[0][0])

    def readings_after(self, mark: int, max_readings: int = 100_000) -> Iterator[StoredSince]:
        """The batches committed after ``mark``, in commit order, in pieces of about
        ``max_readings`` (whole batches)."""
        return self._pieces_after("SELECT id, n, series, ts, value, received FROM batches WHERE id > ? ORDER BY id",
                                  mark, 64, 1, max_readings, self._piece)

    @staticmethod
    def _piece(taken: list[Any], keys: dict[int, tuple[str, str]]) -> StoredSince:
        def col(k: int, dt: np.dtype[Any]) -> npt.NDArray[Any]:
            return np.frombuffer(b"".join(r[k] for r in taken), dtype=dt)

        sids, index = np.unique(col(2, _I64), return_inverse=True)
        return StoredSince(keys=[keys[sid] for sid in sids.tolist()], series=index.astype(np.int64),
                           ts_ms=col(3, _I64).astype(np.int64), value=col(4, _F64).astype(np.float64),
                           received_ms=col(5, _I64).astype(np.int64), mark=int(taken[-1][0]))

    def forget_below(self, mark: int) -> int:
        """Delete the batches with an id below ``mark`` (a durable snapshot holds them);
        returns how many. The batch at ``mark`` stays, so ids never go back and a mark
        taken later is above everything older."""
        with self._db.transaction("journal_forget") as conn:
            return int(conn.execute("DELETE FROM batches WHERE id < ?", (mark,)).rowcount)


def _columns(cls: type[Any]) -> list[tuple[str, str]]:
    """(field name, annotation string) of a dataclass, in declaration order."""
    return [(f.name, str(f.type)) for f in dataclasses.fields(cls)]


_ALARM_COLS = _columns(Alarm)
_EVENT_COLS = [c for c in _columns(AlarmEvent) if c[0] != "id"]


def _sql_type(annotation: str) -> str:
    if annotation.startswith("Level") or annotation.startswith("int"):
        return "INTEGER"
    if annotation.startswith("float"):
        return "REAL"
    return "TEXT"


def _encoder(annotation: str) -> Callable[[Any], Any] | None:
    """How one column is stored, chosen once per column (None: the value as it is; None
    values are stored as NULL): levels as integers, statuses as text, dicts as JSON."""
    if annotation.startswith("Level"):
        return int
    if annotation.startswith("AlarmStatus"):
        return str
    if annotation.startswith("dict"):
        return lambda v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return None


class _RowCodec:
    """How one table's records (Alarm or AlarmEvent) are stored: every column read in one C
    call, then only the columns with an encoder converted, chosen once per column (an alarm
    storm writes thousands of rows; a getattr and a test per column was most of its cost)."""

    def __init__(self, cols: Sequence[tuple[str, str]]) -> None:
        self._get = operator.attrgetter(*(n for n, _ in cols))
        self._enc = [(i, e) for i, (_, t) in enumerate(cols) if (e := _encoder(t)) is not None]

    def params(self, obj: Any) -> tuple[Any, ...]:
        vals = list(self._get(obj))
        for i, enc in self._enc:
            v = vals[i]
            if v is not None:
                vals[i] = enc(v)
        return tuple(vals)


def _decode(annotation: str, v: Any) -> Any:
    if v is None:
        return {} if annotation.startswith("dict") else None
    if annotation.startswith("Level"):
        return Level(v)
    if annotation.startswith("AlarmStatus"):
        return AlarmStatus(v)
    if annotation.startswith("dict"):
        return orjson.loads(v)
    return v


_ALARM_ROWS = _RowCodec(_ALARM_COLS)
_EVENT_ROWS = _RowCodec(_EVENT_COLS)


def _schema_sql(table: str, cols: list[tuple[str, str]], key: str) -> str:
    body = ",\n    ".join([key] + [f'"{n}" {_sql_type(a)}' for n, a in cols if n != "id"])
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {body}\n);\n"


_ALARMS_SCHEMA = (
    _schema_sql("alarms", _ALARM_COLS, "id INTEGER PRIMARY KEY")
    + _schema_sql("alarm_events", _EVENT_COLS, "id INTEGER PRIMARY KEY AUTOINCREMENT")
    + """
CREATE INDEX IF NOT EXISTS alarms_enterprise ON alarms (enterprise_id, id);
CREATE INDEX IF NOT EXISTS alarms_status ON alarms (status, id);
CREATE INDEX IF NOT EXISTS alarm_events_alarm ON alarm_events (alarm_id, id);
CREATE TABLE IF NOT EXISTS snapshots (name TEXT PRIMARY KEY, data BLOB NOT NULL);
"""
)


class SQLiteAlarmStore:
    """Alarms, alarm events and snapshots in ``alarms.sqlite3``.

    Columns mirror the fields of :class:`Alarm` and :class:`AlarmEvent` (levels as
    integers, ``extra`` as JSON); a field added to those records later is added to the
    table on open (``ALTER TABLE ADD COLUMN``), so older files keep working.
    """

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        self._db = _Db(path, _ALARMS_SCHEMA, synchronous, "sqlite")
        self._migrate("alarms", _ALARM_COLS)
        self._migrate("alarm_events", _EVENT_COLS)
        names = [n for n, _ in _ALARM_COLS]
        quoted = ", ".join(f'"{n}"' for n in names)
        updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names if n != "id")
        self._upsert = (f"INSERT INTO alarms ({quoted}) VALUES ({', '.join('?' * len(names))}) "
                        f"ON CONFLICT (id) DO UPDATE SET {updates}")
        ev_names = [n for n, _ in _EVENT_COLS]
        self._insert_event = (f"INSERT INTO alarm_events ({', '.join(f'{chr(34)}{n}{chr(34)}' for n in ev_names)}) "
                              f"VALUES ({', '.join('?' * len(ev_names))})")
        self._alarm_select = f"SELECT {quoted} FROM alarms"
        self._event_select = f"SELECT id, {', '.join(f'{chr(34)}{n}{chr(34)}' for n in ev_names)} FROM alarm_events"

    def _migrate(self, table: str, cols: list[tuple[str, str]]) -> None:
        have = {r[1] for r in self._db.writer.execute(f"PRAGMA table_info({table})")}
        for n, a in cols:
            if n not in have:
                self._db.writer.execute(f'ALTER TABLE {table} ADD COLUMN "{n}" {_sql_type(a)}')

    @staticmethod
    def _alarm_params(a: Alarm) -> tuple[Any, ...]:
        return _ALARM_ROWS.params(a)

    @staticmethod
    def _alarm_of(row: Sequence[Any]) -> Alarm:
        return Alarm(**{n: _decode(t, v) for (n, t), v in zip(_ALARM_COLS, row, strict=True)})

    @staticmethod
    def _event_of(row: Sequence[Any]) -> AlarmEvent:
        fields = {n: _decode(t, v) for (n, t), v in zip(_EVENT_COLS, row[1:], strict=True)}
        return AlarmEvent(id=row[0], **fields)

    def save_changes(self, changes: list[Change]) -> None:
        if not changes:
            return
        # two executemany calls instead of two statements per change (an alarm storm writes
        # thousands in one call). The events' ids are consecutive: AUTOINCREMENT rowids in one
        # transaction of the only writer, ending at last_insert_rowid()
        with self._db.transaction("save_changes") as conn:
            conn.executemany(self._upsert, [self._alarm_params(a) for a, _ in changes])
            conn.executemany(self._insert_event, [_EVENT_ROWS.params(e) for _, e in changes])
            last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        first = last - len(changes) + 1
        for k, (_, event) in enumerate(changes):  # only after the commit succeeded
            event.id = first + k

    def list_alarms(self, enterprise_id: str | None = None, status: AlarmStatus | None = None,
                    level: Level | None = None, limit: int = 1000, offset: int = 0) -> list[Alarm]:
        where: list[str] = []
        params: list[Any] = []
        if enterprise_id is not None:
            where.append("enterprise_id = ?")
            params.append(enterprise_id)
        if status is not None:
            where.append("status = ?")
            params.append(str(AlarmStatus(status)))
        if level is not None:
            where.append("level = ?")
            params.append(int(level))
        sql = self._alarm_select + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        params += [limit, offset]
        return [self._alarm_of(r) for r in self._db.query("list_alarms", sql, params)]

    def get_alarm(self, alarm_id: int) -> Alarm | None:
        rows = self._db.query("get_alarm", self._alarm_select + " WHERE id = ?", (alarm_id,))
        return self._alarm_of(rows[0]) if rows else None

    def alarm_events(self, alarm_id: int) -> list[AlarmEvent]:
        rows = self._db.query("alarm_events", self._event_select + " WHERE alarm_id = ? ORDER BY id", (alarm_id,))
        return [self._event_of(r) for r in rows]

    def load_open_alarms(self) -> list[Alarm]:
        rows = self._db.query("load_open_alarms", self._alarm_select + " WHERE status != ? ORDER BY id",
                              (str(AlarmStatus.CLOSED),))
        return [self._alarm_of(r) for r in rows]

    def max_alarm_id(self) -> int:
        rows = self._db.query("max_alarm_id", "SELECT coalesce(max(id), 0) FROM alarms")
        return int(rows[0][0])

    def save_snapshot(self, name: str, data: bytes) -> None:
        with self._db.transaction("save_snapshot") as conn:
            conn.execute("INSERT INTO snapshots (name, data) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET data = excluded.data", (name, data))

    def load_snapshot(self, name: str) -> bytes | None:
        rows = self._db.query("load_snapshot", "SELECT data FROM snapshots WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def close(self) -> None:
        self._db.close()


def open_sqlite(data_dir: Path, *, synchronous: Synchronous = "NORMAL") -> tuple[SQLiteReadingStore, SQLiteAlarmStore]:
    """Both SQLite stores under ``data_dir`` (``readings.sqlite3``, ``alarms.sqlite3``)."""
    return (SQLiteReadingStore(data_dir / "readings.sqlite3", synchronous=synchronous),
            SQLiteAlarmStore(data_dir / "alarms.sqlite3", synchronous=synchronous))


__all__ = ["ReplayJournal", "SQLiteAlarmStore", "SQLiteReadingStore", "open_sqlite"]
