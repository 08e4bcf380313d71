"""The running service: registry, stores, alarm engine and book, ingest pipeline, fan-out.

Everything that touches the engine or the alarm book runs on the event-loop thread,
so no locks are needed around the alarm state; blocking store reads used by the API
go through ``asyncio.to_thread`` on the store's read connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alerts.compile import ConfigError, compile_config
from alerts.engine import AlarmEngine
from alerts.lifecycle import AlarmBook, suppressed
from alerts.model import Alarm, Change
from alerts.risk import enterprise_colours
from alerts.transitions import Transitions
from ingest.batch import ReadingBatch
from ingest.pipeline import Pipeline
from ingest.store import SQLiteReadingStore, open_stores
from ingest.store.writer import ThreadWriter, WriterProcess
from plantwatch.backlog import Backlog, pair_key
from plantwatch.clock import Clock, wall_ms
from plantwatch.domain import ALARM_LEVELS, AlarmStatus, Level
from plantwatch.hub import EventHub
from plantwatch.metrics import Metrics
from plantwatch.registry import Enterprise, OutOfService, Registry, RegistryError, Sensor
from plantwatch.settings import Settings

log = logging.getLogger("plantwatch.service")

ENGINE_SNAPSHOT = "engine"
GATEWAY_LOG = "gateway_log"
"""Gateway status messages since the last engine snapshot (JSON), replayed after a crash."""
REPLAY_MARK = "service.replay_mark"
"""Key in the engine snapshot: the reading store's replay mark when it was taken."""
REPLAY_SOURCE = "service.replay_source"
"""Key in the engine snapshot: the file the mark counts chunks of (UTF-8 bytes); a snapshot
restored over another store (the backend was switched) replays nothing."""
BUFFER_SOURCE, BUFFER_RULE = "store", "buffer_near_full"
RISK_WINDOW_MS = 24 * 3600 * 1000
MAX_OUT_OF_SERVICE_MS = 7 * 24 * 3600 * 1000
"""Longest maintenance hold (ms): a sensor out of service longer than a week is removed or back."""
R_OOS, R_REMOVED = "out_of_service", "removed"
STORM_SLICE = 500
"""Engine transitions the alarm book applies per event-loop turn. More at once (an alarm storm:
a region's uplink cut, 100k deadman alarms in one tick, ~70 us each: ~40 ms a slice) wait in a backlog, most
severe first, and are applied a slice per turn, so ingest, the API and WebSocket clients keep
running meanwhile (docs/lifecycle.md)."""


class SensorStateError(ValueError):
    """The action does not fit the sensor's service state (e.g. maintenance of a removed sensor)."""


def _text(name: str, value: str) -> str:
    """``value`` stripped; ``ValueError`` naming ``name`` if nothing is left."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: required non-empty text")
    return value.strip()


REGISTRY_SNAPSHOT = "registry"


def load_registry(settings: Settings, saved: bytes | None = None, seed: Registry | None = None) -> Registry:
    """The registry the service runs with.

    ``saved`` (the registry the service last ran with, rows included) comes first, so every
    sensor keeps the row its detector state was saved under; then ``seed`` (a registry handed
    in by the caller) and the ``settings.config`` file (``[[enterprise]]``/``[[sensor]]``
    tables) are applied on top: what they name takes their definition, new sensors get new
    rows, and an enterprise already saved keeps its production status (a suspension order
    set over the API outlives a restart and a config file that predates it).
    """
    reg = Registry() if saved is None else Registry.from_json(
        saved, where=f"registry saved in {settings.data_dir / 'alarms.sqlite3'}")
    if seed is not None and (seed.sensors or seed.enterprises):
        reg.load(seed.to_mapping(), where="registry", keep_status=saved is not None)
    if settings.config is not None:
        reg.load(Registry.read_toml(settings.config), where=str(settings.config), keep_status=saved is not None)
    return reg


class Service:
    """Composition root. ``start()`` launches the pipeline and the ticker; ``stop()`` ends them."""

    def __init__(self, settings: Settings, *, clock: Clock = wall_ms, registry: Registry | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        self.registry = registry if registry is not None else Registry()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.readings, self.alarms = open_stores(settings, self.registry, metrics=self.metrics)
        self.registry.replace_with(load_registry(settings, self.alarms.load_snapshot(REGISTRY_SNAPSHOT),
                                                 self.registry))
        self._save_registry()
        self.engine = AlarmEngine(self.registry.sensors, self.registry.enterprises)
        self._engine_version = self.registry.version
        self._legacy_blob = False
        replay_mark = self._restore_engine()
        self.book = AlarmBook(
            sensor_of=self._sensor_of,
            rule_names=self.engine.rule_names,
            next_id=self.alarms.max_alarm_id() + 1,
            threshold_of=self.engine.threshold_of,
        )
        self.book.load(self.alarms.load_open_alarms())
        self.hub = EventHub()
        writer: WriterProcess | ThreadWriter | None = None
        if settings.store_writer == "process":  # off the event loop: a child process, or a thread for InfluxDB
            if isinstance(self.readings, SQLiteReadingStore):
                writer = WriterProcess(self.readings.path, synchronous=self.readings.synchronous)
            else:
                writer = ThreadWriter(self.readings)
        self._writer = writer
        self.pipeline = Pipeline(settings, self.registry, self.readings, self, self.metrics, clock, writer=writer)
        self._tasks: list[asyncio.Task[None]] = []
        self.started_ms = clock()
        self._last_compact_ms = self.started_ms
        # gateway statuses since the last engine snapshot; those replayed below stay logged
        # until a snapshot holds them (start() takes one), so a second crash replays them again
        self._gw_log: list[list[Any]] = self._load_gateway_log()
        self._snap_task: asyncio.Task[None] | None = None
        # engine transitions not yet applied to the book (an alarm storm), each with its ``now``
        self._backlog = Backlog()
        self._drain_task: asyncio.Task[None] | None = None
        self._catch_up(replay_mark, self._gw_log)
        self._hold_end: int | None = None  # earliest end of a maintenance hold (ms)
        self._reconcile_holds()
        self._refresh_hold_end()
        self._refresh_open_gauge()

    # -- restart -------------------------------------------------------------------------
    def _restore_engine(self) -> int | None:
        """Load the saved engine snapshot; returns its reading-store replay mark (None: no
        snapshot, or one taken without a mark)."""
        path = self.engine_snapshot_path
        source: Any = path if path.exists() else None
        if source is None:  # data directories from before the snapshot file kept it in alarms.sqlite3
            blob = self.alarms.load_snapshot(ENGINE_SNAPSHOT)
            if not blob:
                return None
            source = io.BytesIO(blob)
            self._legacy_blob = True  # emptied once engine.npz is written
        try:
            with np.load(source, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            mark = arrays.pop(REPLAY_MARK, None)
            mark_source = arrays.pop(REPLAY_SOURCE, None)
            self.engine.restore(arrays)
        except Exception:  # a corrupt snapshot must not keep the service down
            log.exception("alarm engine snapshot unreadable; starting with fresh detector state")
            return None
        log.info("alarm engine state restored from snapshot (%s)", path if source is path else "alarms.sqlite3")
        if mark is None or int(mark[0]) < 0:
            return None
        here = str(getattr(self.readings, "replay_source", ""))
        if mark_source is not None and bytes(mark_source).decode() != here:  # snapshots before the key: SQLite's
            log.warning("engine snapshot's replay mark counts chunks of %r, the store now is %r: nothing replayed",
                        bytes(mark_source).decode(), here)
            return None
        return int(mark[0])

    def _load_gateway_log(self) -> list[list[Any]]:
        raw = self.alarms.load_snapshot(GATEWAY_LOG)
        try:
            events = json.loads(raw) if raw else []
            return [[str(e), str(d), bool(o), int(ts), int(rx)] for e, d, o, ts, rx in events]
        except (ValueError, TypeError):
            log.exception("gateway status log unreadable; gateway states are those of the engine snapshot")
            return []

    def _catch_up(self, mark: int | None, gw_events: list[list[Any]]) -> None:
        """Bring the restored engine up to the moment the service stopped: feed it the
        readings stored after the snapshot (and the gateway statuses received since), in
        the order they were committed. A kill -9 then loses no detector state: delay-on
        timers, ring buffers, profiles and gateway states continue as if never stopped.
        Their alarm changes were saved when they first happened; the book absorbs the
        repeats: it is given only each (sensor, rule)'s final transition, the net change (the
        whole sequence again would walk an alarm already at red down through orange and back)."""
        after = getattr(self.readings, "readings_after", None)
        pending = deque(sorted(gw_events, key=lambda ev: ev[4]))  # by receive time
        n = 0
        t0 = time.perf_counter()
        seen: list[Transitions] = []

        def statuses_until(received_ms: int) -> None:
            while pending and pending[0][4] <= received_ms:
                e, d, online, ts, _rx = pending.popleft()
                seen.append(self.engine.gateway_status(e, d, online, ts))

        failed = 0
        if mark is not None and after is not None:
            try:
                for part in after(mark):
                    try:
                        rows = np.array(self.registry.rows_for(*zip(*part.keys, strict=True)), np.int32)[part.series]
                        statuses_until(int(part.received_ms[0]))
                        seen.append(self.engine.replay(rows, part.ts_ms, part.value, int(part.received_ms.max())))
                        n += len(part)
                    except Exception:  # as live: a batch the engine cannot evaluate must not keep the service down
                        failed += len(part)
                        log.exception("catch-up: %d stored readings could not be replayed; skipped", len(part))
            except Exception:  # the store could not be read: start with the snapshot's state
                log.exception("catch-up: reading the store after the snapshot failed; the rest is not replayed")
        try:
            statuses_until(np.iinfo(np.int64).max)
            self._apply_now(Transitions.concat(seen).last_per_pair(), self.clock())  # here, inside this try
        except Exception:
            log.exception("catch-up: applying the replayed changes failed")
        if n or gw_events or failed:
            log.info("alarm engine caught up with %d readings stored and %d gateway statuses received after its "
                     "snapshot (%.2f s; %d readings skipped)", n, len(gw_events), time.perf_counter() - t0, failed)

    # -- registry ------------------------------------------------------------------------
    def _sensor_of(self, row: int) -> Sensor | None:
        return self.registry.sensors[row] if 0 <= row < len(self.registry.sensors) else None

    def _save_registry(self) -> None:
        self.alarms.save_snapshot(REGISTRY_SNAPSHOT, self.registry.to_json())

    def register_enterprises(self, raws: list[dict[str, Any]]) -> list[Enterprise]:
        """Add or replace enterprises (all validated first) and save the registry."""
        out = self.registry.add_enterprises(raws)
        self._save_registry()
        return out

    def update_enterprise(self, enterprise_id: str, patch: dict[str, Any]) -> Enterprise:
        """Change fields of a registered enterprise (``KeyError`` if unknown) and save the registry."""
        e = self.registry.enterprises[enterprise_id]
        # a null name/region/status keeps the old value; a null capacity clears it
        raw = {"id": e.id, "name": e.name, "region": e.region, "production_status": str(e.production_status),
               "capacity_kw": e.capacity_kw,
               **{k: v for k, v in patch.items() if v is not None or k == "capacity_kw"}}
        (updated,) = self.registry.add_enterprises([raw], where="body")
        self._save_registry()
        return updated

    def register_sensors(self, raws: list[dict[str, Any]]) -> list[Sensor]:
        """Add or replace sensors, all validated first, including their rule parameters as the
        alarm engine compiles them (so a bad ``params`` entry is a 422 now, never a failure
        in the hot path); then save the registry."""
        ents = self.registry.enterprises

        def check(i: int, s: Sensor) -> None:
            try:
                compile_config([s], ents)
            except ConfigError as exc:
                key = exc.where.removeprefix(f"sensor {s.enterprise_id}/{s.id} ")
                raise RegistryError(f"body[{i}].{key}", exc.message) from None

        removed = {s.key for s in self.registry.held() if s.out_of_service is not None and s.out_of_service.removed}
        out = self.registry.add_sensors(raws, check=check)
        self._save_registry()
        back = [s for s in out if s.key in removed and s.out_of_service is None]
        if back:  # reinstated: their deadman and flatline timers start now, not at the removal
            self._sync_engine()
            self.engine.resume(np.array([s.row for s in back], np.int32), self.clock())
            self._restore_point()  # a crash must not replay what they sent while removed
            log.info("reinstated %d removed sensors by registering them again", len(back))
        return out

    # -- sensors out of service (maintenance, removal) -------------------------------------
    def _sensor(self, enterprise_id: str, sensor_id: str) -> Sensor:
        s = self.registry.sensor(enterprise_id, sensor_id)
        if s is None:
            raise KeyError(f"sensor {enterprise_id}/{sensor_id} is not registered")
        return s

    def take_out_of_service(self, enterprise_id: str, sensor_id: str, by: str, reason: str,
                            until_ms: int) -> Sensor:
        """Maintenance (calibration, replacement) until ``until_ms``: the sensor's readings are
        stored but not evaluated, its levels and timers are frozen, and a blue
        ``out_of_service`` alarm stays open until it is back (by :meth:`return_to_service` or
        at ``until_ms``), so the monitoring centre sees who took it out, why and until when.
        A second call moves the end. ``KeyError`` if not registered, ``SensorStateError`` if
        removed, ``ValueError`` for a bad ``until_ms``."""
        now = self.clock()
        s = self._sensor(enterprise_id, sensor_id)
        by, reason = _text("by", by), _text("reason", reason)
        if s.out_of_service is not None and s.out_of_service.removed:
            raise SensorStateError(f"sensor {enterprise_id}/{sensor_id} was removed; register it again to reinstate it")
        if not now < until_ms <= now + MAX_OUT_OF_SERVICE_MS:
            raise ValueError(f"duration: the hold must end in the future and at most "
                             f"{MAX_OUT_OF_SERVICE_MS // 3_600_000} h ahead, got {until_ms - now} ms from now")
        self._flush_backlog()  # the sensor's pending alarm changes happened before the hold
        since = s.out_of_service.since_ms if s.out_of_service is not None else now
        s = self.registry.set_out_of_service(enterprise_id, sensor_id, OutOfService(since, until_ms, by, reason))
        self._save_registry()
        self._sync_engine()
        self.engine.set_out_of_service(np.array([s.row], np.int32), True)
        changes = self.book.apply_sensor(s, R_OOS, Level.BLUE, now, now)
        a = self.book.open_for(enterprise_id, sensor_id, R_OOS)
        if a is not None:
            until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until_ms / 1000))
            changes.append(self.book.add_note(a.id, by, f"out of service until {until}: {reason}", now))
        self.publish(changes)
        self._refresh_hold_end()
        self._restore_point()
        log.info("sensor %s/%s out of service until %d by %s: %s", enterprise_id, sensor_id, until_ms, by, reason)
        return s

    def return_to_service(self, enterprise_id: str, sensor_id: str, by: str, comment: str) -> Sensor:
        """End maintenance now: readings are evaluated again, deadman and flatline timers start
        afresh, the ``out_of_service`` alarm clears (with ``comment`` as a note).
        ``SensorStateError`` if the sensor is in service or removed."""
        s = self._sensor(enterprise_id, sensor_id)
        by, comment = _text("by", by), _text("comment", comment)
        if s.out_of_service is None or s.out_of_service.removed:
            state = "in service" if s.out_of_service is None else "removed (register it again to reinstate it)"
            raise SensorStateError(f"sensor {enterprise_id}/{sensor_id} is {state}")
        (s,) = self._end_holds([s], self.clock(), by, comment)
        return s

    def _end_holds(self, sensors: list[Sensor], now: int, by: str, comment: str) -> list[Sensor]:
        """Back in service at ``now``: one registry save and one recompile for all of them."""
        self._flush_backlog()
        out = [self.registry.set_out_of_service(s.enterprise_id, s.id, None) for s in sensors]
        self._save_registry()
        self._sync_engine()
        rows = np.array([s.row for s in out], np.int32)
        self.engine.set_out_of_service(rows, False)
        self.engine.resume(rows, now)
        changes = []
        for s in out:
            a = self.book.open_for(s.enterprise_id, s.id, R_OOS)
            if a is not None:
                changes.append(self.book.add_note(a.id, by, f"back in service: {comment}", now))
            changes += self.book.apply_sensor(s, R_OOS, Level.NONE, now, now)
            log.info("sensor %s/%s back in service (%s: %s)", s.enterprise_id, s.id, by, comment)
        self.publish(changes)
        self._refresh_hold_end()
        self._restore_point()
        return out

    def _restore_point(self) -> None:
        """An engine snapshot right after a hold changed, so that a crash never replays stored
        readings across the change (calibration gas evaluated after all, or a removed sensor's
        levels back). The copy is taken now; it is written off the event loop after any write
        in progress (synchronously when there is no loop). A crash within the write itself can
        still replay across the change: docs/lifecycle.md."""
        snap, n = self._capture_engine()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                self._write_captured(snap, n)
            except Exception:  # the change itself stands; only its restore point is missing
                log.exception("engine snapshot after a hold change failed; the previous restore point stays")
            return
        self._snap_task = loop.create_task(
            self._write_in_background(snap, n, after=self._snap_task, what="engine snapshot after a hold change"),
            name="snapshot")

    def remove_sensor(self, enterprise_id: str, sensor_id: str, by: str, reason: str) -> Sensor:
        """Decommission: the sensor keeps its row (and stored readings) but is no longer
        evaluated or expected to report; every level it holds drops, so its alarms clear, and
        a ``removed`` alarm (blue, cleared) records who removed it and why until staff close
        it. Registering it again reinstates it. ``SensorStateError`` if already removed."""
        now = self.clock()
        s = self._sensor(enterprise_id, sensor_id)
        by, reason = _text("by", by), _text("reason", reason)
        if s.out_of_service is not None and s.out_of_service.removed:
            raise SensorStateError(f"sensor {enterprise_id}/{sensor_id} is already removed")
        self._flush_backlog()  # the sensor's pending alarm changes happened before the removal
        s = self.registry.set_out_of_service(enterprise_id, sensor_id, OutOfService(now, None, by, reason))
        self._save_registry()
        self._sync_engine()
        self.engine.set_out_of_service(np.array([s.row], np.int32), True)
        tr = self.engine.clear_rows(np.array([s.row], np.int32), now)
        changes = self.book.apply(tr, now) if len(tr) else []
        changes += self.book.apply_sensor(s, R_OOS, Level.NONE, now, now)
        changes += self.book.apply_sensor(s, R_REMOVED, Level.BLUE, now, now)
        a = self.book.open_for(enterprise_id, sensor_id, R_REMOVED)
        if a is not None:
            changes.append(self.book.add_note(a.id, by, f"removed from service: {reason}", now))
        changes += self.book.apply_sensor(s, R_REMOVED, Level.NONE, now, now)
        self.publish(changes)
        self._refresh_hold_end()
        self._restore_point()
        log.info("sensor %s/%s removed by %s: %s", enterprise_id, sensor_id, by, reason)
        return s

    def _expire_holds(self, now: int) -> None:
        """Maintenance holds whose end has come: back in service."""
        if self._hold_end is None or now < self._hold_end:
            return
        due = [s for s in self.registry.held()
               if s.out_of_service is not None and s.out_of_service.until_ms is not None
               and s.out_of_service.until_ms <= now]
        if due:
            self._end_holds(due, now, "system", "maintenance period ended")
        self._refresh_hold_end()

    def _refresh_hold_end(self) -> None:
        ends = [s.out_of_service.until_ms for s in self.registry.held()
                if s.out_of_service is not None and s.out_of_service.until_ms is not None]
        self._hold_end = min(ends) if ends else None

    def _reconcile_holds(self) -> None:
        """At start: the ``out_of_service`` alarms agree with the registry, and removed sensors
        hold no level (a crash between saving one and the other leaves them apart)."""
        self._flush_backlog()
        now = self.clock()
        changes: list[Change] = []
        gone = np.array([s.row for s in self.registry.held()
                         if s.out_of_service is not None and s.out_of_service.removed], np.int32)
        if len(gone) and self.engine.levels()[gone].any():
            tr = self.engine.clear_rows(gone, now)
            changes += self.book.apply(tr, now) if len(tr) else []
        held = {s.key for s in self.registry.held() if s.out_of_service is not None and not s.out_of_service.removed}
        for key in held:
            s = self.registry.sensor(*key)
            if s is not None:
                changes += self.book.apply_sensor(s, R_OOS, Level.BLUE, now, now)
        for a in self.book.open_alarms():
            if a.rule == R_OOS and (a.enterprise_id, a.sensor_id) not in held and a.status is not AlarmStatus.CLEARED:
                s = self.registry.sensor(a.enterprise_id, a.sensor_id)
                if s is not None:
                    changes += self.book.apply_sensor(s, R_OOS, Level.NONE, now, now)
        self.publish(changes)

    def _sync_engine(self) -> None:
        if self.registry.version != self._engine_version:
            self.engine.sync(self.registry.sensors, self.registry.enterprises)
            self._engine_version = self.registry.version

    # -- AlarmSink (called by the pipeline on the event-loop thread) ---------------------
    def on_readings(self, batch: ReadingBatch, now_ms: int) -> None:
        self._sync_engine()
        known = batch.row >= 0
        if not known.any():
            return
        held = self.engine.out_of_service_readings
        if known.all():
            tr = self.engine.evaluate(batch.row, batch.ts_ms, batch.value, now_ms)
        else:
            tr = self.engine.evaluate(batch.row[known], batch.ts_ms[known], batch.value[known], now_ms)
        if self.engine.out_of_service_readings != held:
            self.metrics.ingest_out_of_service.inc(self.engine.out_of_service_readings - held)
        self._apply(tr, now_ms)

    def on_gateway_status(self, enterprise_id: str, device_id: str, online: bool, ts_ms: int) -> None:
        self._sync_engine()
        now = self.clock()
        self._apply(self.engine.gateway_status(enterprise_id, device_id, online, ts_ms), now)
        # kept (durably) until the next engine snapshot holds it: a crash before then replays it
        self._gw_log.append([enterprise_id, device_id, online, ts_ms, now])
        self.alarms.save_snapshot(GATEWAY_LOG, json.dumps(self._gw_log).encode())

    # -- alarm changes ---------------------------------------------------------------------
    def _apply(self, tr: Transitions, now_ms: int) -> None:
        """Hand engine transitions to the book: at once, or, for a storm larger than
        :data:`STORM_SLICE` (and anything after it, in order), through the backlog: the most
        severe slice now, the rest a slice per event-loop turn. Without a running loop
        (tools, tests): all at once."""
        if not len(tr):
            return
        if not self._backlog and len(tr) <= STORM_SLICE:
            self.publish(self.book.apply(tr, now_ms))
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._apply_now(tr, now_ms)
            return
        self._backlog.add(tr.most_severe_first() if len(tr) > STORM_SLICE else tr, now_ms)
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = loop.create_task(self._drain(), name="alarm-backlog")
        self._apply_slice()

    def _apply_now(self, tr: Transitions, now_ms: int) -> None:
        """The backlog, then ``tr``, all in this step (start-up catch-up, no event loop)."""
        self._flush_backlog()
        if len(tr):
            self.publish(self.book.apply(tr, now_ms))

    def _apply_slice(self) -> None:
        """Apply up to :data:`STORM_SLICE` backlogged transitions, oldest first."""
        for part, now in self._backlog.take(STORM_SLICE):
            self.metrics.alarm_backlog.set(len(self._backlog))
            self.publish(self.book.apply(part, now))
        if not self._backlog:
            self._refresh_open_gauge()

    def _flush_backlog(self) -> None:
        """Apply the whole backlog now: before a hold change or an engine snapshot (a
        restore point must not hold engine levels whose alarms the book has not seen)."""
        while self._backlog:
            self._apply_slice()

    def _settle(self, alarm_id: int) -> None:
        """Before a staff action on an alarm: apply its own waiting transitions first (a close
        must not overtake the reactivation that would have refused it, nor leave that
        reactivation to raise a second alarm)."""
        if not self._backlog:
            return
        a = self.book.get(alarm_id)
        if a is None:
            return
        row, rule = int(a.extra.get("row", -1)), int(a.extra.get("rule_index", -1))
        if row < 0 or rule < 0:
            return
        try:
            for part, now in self._backlog.take_pair(row, rule):
                self.publish(self.book.apply(part, now))
        except Exception:  # as in the drain: logged, the action goes on (those changes are lost)
            log.exception("alarm backlog: applying alarm %d's waiting changes failed", alarm_id)
        finally:
            self.metrics.alarm_backlog.set(len(self._backlog))

    def _waiting(self) -> Callable[[Alarm], bool] | None:
        """For the book's timers while a backlog waits: whether an alarm's engine changes are
        still in it (its timers then wait for them). Computed on first use in a tick."""
        if not self._backlog:
            return None
        pending: set[int] | None = None

        def waiting(a: Alarm) -> bool:
            nonlocal pending
            row, rule = int(a.extra.get("row", -1)), int(a.extra.get("rule_index", -1))
            if row < 0 or rule < 0:
                return False
            if pending is None:
                pending = self._backlog.pending_keys()
            return pair_key(row, rule) in pending

        return waiting

    async def _drain(self) -> None:
        while self._backlog:
            await asyncio.sleep(0)  # one turn of the loop for everything else
            try:
                self._apply_slice()
            except Exception:  # as any apply: logged, the service goes on (that slice's changes are lost)
                log.exception("alarm backlog: applying a slice failed")

    def publish(self, changes: list[Change]) -> None:
        """Persist, count and fan out alarm changes (in that order: stored before pushed)."""
        if not changes:
            return
        self.alarms.save_changes(changes)
        events: Counter[str] = Counter()
        raised: Counter[Level] = Counter()
        hub = self.hub
        for alarm, event in changes:
            events[event.type] += 1
            if event.type == "raised":
                raised[alarm.level] += 1
            # a shelved alarm's changes are stored and streamed marked notify=false (nobody is
            # paged); its shelving and unshelving themselves are news
            notify = not suppressed(alarm) or event.type in ("shelved", "unshelved")
            if hub.wanted(alarm.enterprise_id, alarm.level, notify):  # the wire form only if someone reads it
                hub.publish({"event": event.to_json(), "alarm": alarm.to_json(), "notify": notify},
                            alarm.enterprise_id, alarm.level, notify)
        for typ, k in events.items():  # counted per call, not per change (a storm has 100k changes)
            self.metrics.alarm_events.labels(typ).inc(k)
        for lv, k in raised.items():
            self.metrics.alarms_raised.labels(lv.label).inc(k)
        if not self._backlog:  # a storm in slices counts once, at its end (the count walks every open alarm)
            self._refresh_open_gauge()

    def _refresh_open_gauge(self) -> None:
        counts = self.book.open_counts()
        for lv in ALARM_LEVELS:
            self.metrics.alarms_open.labels(lv.label).set(counts.get(lv, 0))

    def tick(self, now_ms: int | None = None) -> None:
        """Run wall-clock timers once (deadman, delays, escalation, shelving expiry)."""
        now = self.clock() if now_ms is None else now_ms
        if self._tasks:  # ingest is running: our own MQTT session's state goes to the deadman
            up = self.pipeline.connected
            if up != self.engine.ingest_up:
                self.engine.ingest_status(up, now)
                if not up:
                    log.warning("MQTT session down: deadman alarms paused until it is back "
                                "(sensors' silence is ours)")
        self._expire_holds(now)
        self._sync_engine()
        self._apply(self.engine.tick(now), now)
        self.publish(self.book.tick(now, self._waiting()) + self._check_buffer(now))

    def _check_buffer(self, now_ms: int) -> list[Change]:
        """System alarm ``store/buffer_near_full``: orange at the spool's near-full mark, red at
        95 % (the next batches will be refused and stay unacked at the broker); clears when drained."""
        used = self.readings.buffer_bytes
        pct = 100.0 * used / self.settings.buffer_max_bytes
        level = Level.RED if pct >= 95.0 else Level.ORANGE if self.readings.buffer_near_full else Level.NONE
        return self.book.apply_system(BUFFER_SOURCE, BUFFER_RULE, level, round(pct, 1), now_ms, now_ms)

    async def maybe_compact(self, now_ms: int) -> int:
        """Every ``compact_interval_s``: merge the SQLite store's chunks of closed hours (in a
        worker thread, off the event loop). Returns the number of chunk rows removed."""
        compact = getattr(self.readings, "compact", None)
        if compact is None or now_ms - self._last_compact_ms < self.settings.compact_interval_s * 1000:
            return 0
        self._last_compact_ms = now_ms
        removed: int = await asyncio.to_thread(compact, now_ms - 3_600_000)
        if removed:
            log.info("store compaction merged %d chunk rows", removed)
        return removed

    # -- staff actions -------------------------------------------------------------------
    def _staff(self, alarm_id: int, act: Callable[[int], Change]) -> Alarm:
        """One staff action on an alarm: its own waiting engine changes first (:meth:`_settle`),
        then ``act(now_ms)``, stored and pushed."""
        self._settle(alarm_id)
        change = act(self.clock())
        self.publish([change])
        return change[0]

    def acknowledge(self, alarm_id: int, by: str, comment: str) -> Alarm:
        return self._staff(alarm_id, lambda now: self.book.acknowledge(alarm_id, by, comment, now))

    def close_alarm(self, alarm_id: int, by: str, comment: str) -> Alarm:
        return self._staff(alarm_id, lambda now: self.book.close(alarm_id, by, comment, now))

    def add_note(self, alarm_id: int, by: str, comment: str) -> Alarm:
        return self._staff(alarm_id, lambda now: self.book.add_note(alarm_id, by, comment, now))

    def shelve(self, alarm_id: int, by: str, reason: str, until_ms: int) -> Alarm:
        return self._staff(alarm_id, lambda now: self.book.shelve(alarm_id, by, reason, until_ms, now))

    def unshelve(self, alarm_id: int, by: str, comment: str) -> Alarm:
        return self._staff(alarm_id, lambda now: self.book.unshelve(alarm_id, by, comment, now))

    def recent_alarms(self) -> list[Alarm]:
        """Alarms raised in the last 24 h, from the store (blocking: call in a thread)."""
        since = self.clock() - RISK_WINDOW_MS
        out = []
        for a in self.alarms.list_alarms(limit=100_000):
            if a.raised_at < since:
                break  # newest first
            out.append(a)
        return out

    def enterprise_risks(self, recent: list[Alarm]) -> dict[str, Level]:
        """Risk colour per enterprise from open alarms plus ``recent`` ones (DOMAIN.md rule)."""
        now = self.clock()
        by_id = {a.id: a for a in recent}
        by_id.update({a.id: a for a in self.book.open_alarms()})  # the book is the truth for open alarms
        colours = enterprise_colours(by_id.values(), now)
        return {eid: colours.get(eid, Level.BLUE) for eid in self.registry.enterprises}

    def open_alarm(self, alarm_id: int) -> Alarm | None:
        a = self.book.get(alarm_id)
        return a if a is not None and a.status != AlarmStatus.CLOSED else None

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def engine_snapshot_path(self) -> Path:
        """``engine.npz`` in the data directory: the alarm engine's last restore point."""
        return self.settings.data_dir / "engine.npz"

    def _capture_engine(self) -> tuple[dict[str, np.ndarray[Any, Any]], int]:
        """Copy the engine state with the reading store's replay mark (on the event loop). The
        mark is read first: a reading is evaluated before it is handed to the store, so every
        chunk at or below the mark is already in the state, and a restart replays only the
        chunks above it. Also returns how many logged gateway statuses the copy holds."""
        self._flush_backlog()  # the book first: a restore point's levels all have their alarms
        mark_of = getattr(self.readings, "replay_mark", None)
        mark = int(mark_of()) if mark_of is not None else -1
        snap = self.engine.snapshot()
        snap[REPLAY_MARK] = np.array([mark], np.int64)
        snap[REPLAY_SOURCE] = np.frombuffer(str(getattr(self.readings, "replay_source", "")).encode(), np.uint8)
        return snap, len(self._gw_log)

    def _persist(self, snap: dict[str, np.ndarray[Any, Any]]) -> None:
        """Write a captured state (any thread); then a store that keeps readings only for the
        replay (InfluxDB's journal) may drop those the new snapshot holds."""
        self._write_engine(snap)
        forget = getattr(self.readings, "forget_replayed", None)
        if forget is not None:
            try:
                forget(int(snap[REPLAY_MARK][0]))
            except Exception:  # the journal keeps them a while longer; the next snapshot retries
                log.exception("replay journal: dropping readings held by the snapshot failed")

    def _write_engine(self, snap: dict[str, np.ndarray[Any, Any]]) -> None:
        """Write a captured state to ``engine.npz`` atomically and durably (any thread): a
        temporary file, fsync, rename, fsync of the directory. A crash mid-write leaves the
        previous file."""
        path = self.engine_snapshot_path
        tmp = path.with_name(path.name + ".tmp")
        try:
            with tmp.open("wb") as f:
                np.savez(f, allow_pickle=False, **snap)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. a full disk: do not leave a partial file behind
            raise
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _drop_logged(self, n: int) -> None:
        """After a snapshot was written: forget the first ``n`` logged gateway statuses (it holds
        them), and empty the engine state an older version kept in ``alarms.sqlite3``."""
        if self._legacy_blob:
            self.alarms.save_snapshot(ENGINE_SNAPSHOT, b"")
            self._legacy_blob = False
        if n:
            self._gw_log = self._gw_log[n:]
            self.alarms.save_snapshot(GATEWAY_LOG, json.dumps(self._gw_log).encode())

    def snapshot_engine(self) -> None:
        """Save the engine's restore point now (start, stop, tests); the ticker captures on
        the loop and writes in a worker thread (:meth:`_periodic_snapshot`)."""
        self._write_captured(*self._capture_engine())

    def _write_captured(self, snap: dict[str, np.ndarray[Any, Any]], n: int) -> None:
        """Write a state :meth:`_capture_engine` copied, then forget what it holds of the
        gateway log (on the event loop's thread, or with no loop: the log is appended there)."""
        self._persist(snap)
        self._drop_logged(n)

    async def snapshot_engine_async(self) -> None:
        """Copy the state on the event loop, write it in a worker thread. At 100k sensors with
        the anomaly scorer the state is ~220 MB: the copy takes 0.06-0.4 s, the write several
        times that, which must not stall ingest and alarms."""
        await self._write_async(*self._capture_engine())

    async def _write_async(self, snap: dict[str, np.ndarray[Any, Any]], n: int) -> None:
        await asyncio.to_thread(self._persist, snap)
        self._drop_logged(n)  # on the event loop: the gateway log is appended there

    async def _write_in_background(self, snap: dict[str, np.ndarray[Any, Any]], n: int, *,
                                   after: asyncio.Task[None] | None = None, what: str = "engine snapshot") -> None:
        """:meth:`_write_async` as a task: after the write ``after`` still in progress, failures
        logged (the previous restore point stays)."""
        if after is not None and not after.done():
            with contextlib.suppress(Exception):
                await after
        try:
            await self._write_async(snap, n)
        except Exception:
            log.exception("%s failed; the previous restore point stays", what)

    def _periodic_snapshot(self, deferred: int, limit: int) -> int | None:
        """The ticker's restore point: captured now and written in a worker thread, or put off
        while a storm's backlog drains (a capture applies the rest of it at once), for at most
        ``limit`` ticks (a steady flood may never let the backlog empty). Returns None when
        taken, else the ticks it has been put off."""
        if self._backlog and deferred < limit:
            return deferred + 1
        try:
            snap, n = self._capture_engine()  # in this turn: a storm arriving before the write runs is not swept in
        except Exception:  # the next interval tries again; the previous restore point stays
            log.exception("engine snapshot: capturing the state failed; the previous restore point stays")
            return None
        self._snap_task = asyncio.create_task(self._write_in_background(snap, n), name="snapshot")
        return None

    async def _ticker(self) -> None:
        interval = self.settings.tick_interval_ms / 1000.0
        snap_every = max(1, round(self.settings.snapshot_interval_s * 1000 / self.settings.tick_interval_ms))
        n = 0
        owed: int | None = None  # ticks the due restore point has been put off (None: none due)
        while True:
            await asyncio.sleep(interval)
            try:
                self.tick()
                n += 1
                if n % snap_every == 0 and owed is None:
                    owed = 0
                if owed is not None and (self._snap_task is None or self._snap_task.done()):
                    owed = self._periodic_snapshot(owed, snap_every)
                await self.maybe_compact(self.clock())
            except Exception:
                log.exception("ticker iteration failed; continuing")

    async def start(self) -> None:
        self.snapshot_engine()  # a restore point (with its replay mark) before the first reading
        # no session yet: the deadman waits for the first connection (a restart to fix a broker
        # outage must not charge the outage to every sensor; the pause is not in snapshots)
        self.engine.ingest_status(False, self.clock())
        self._tasks = [
            asyncio.create_task(self.pipeline.run(), name="pipeline"),
            asyncio.create_task(self._ticker(), name="ticker"),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._drain_task is not None:  # the final snapshot below applies what is left
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._drain_task
            self._drain_task = None
        try:  # the rest of a storm: stored and pushed to the subscribers still connected
            self._flush_backlog()
        except Exception:
            log.exception("alarm backlog: applying the rest at stop failed")
        self.hub.close()
        try:
            if self._snap_task is not None:
                await asyncio.shield(self._snap_task)  # a write in progress finishes before the final one
                self._snap_task = None
            self.snapshot_engine()
        finally:
            try:
                self.pipeline.close()  # the writer process commits what it was handed
            finally:
                try:
                    self.alarms.close()  # first: with InfluxDB it sends its queued alarm-event copies
                finally:
                    self.readings.close()

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.pipeline.connected else "degraded",
            "mqtt_connected": self.pipeline.connected,
            "sensors": len(self.registry),
            "enterprises": len(self.registry.enterprises),
            "open_alarms": len(self.book),
            "alarm_backlog": len(self._backlog),
            "uptime_s": (self.clock() - self.started_ms) / 1000.0,
            **({"store_writer": {"pid": w.pid, "ready": w.ready, "restarts": w.restarts,
                                 "queued_readings": w.inflight}}
               if (w := self._writer) is not None else {}),
        }
