"""Prometheus metrics of the service (one registry per service instance).

Counters are incremented per batch or per message, never per reading, so they cost
nothing measurable on the hot path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """All metric families; ``render()`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingest_messages = Counter(
            "plantwatch_ingest_messages", "MQTT messages received", registry=r)
        self.ingest_readings = Counter(
            "plantwatch_ingest_readings", "Readings accepted (decoded and valid)", registry=r)
        self.ingest_rejected = Counter(
            "plantwatch_ingest_rejected", "Readings or messages rejected, by reason", ["reason"], registry=r)
        self.ingest_unregistered = Counter(
            "plantwatch_ingest_unregistered_readings", "Readings from sensors not in the registry", registry=r)
        self.ingest_out_of_service = Counter(
            "plantwatch_ingest_out_of_service_readings",
            "Readings from sensors out of service or removed (stored, not evaluated)", registry=r)
        self.alarms_raised = Counter(
            "plantwatch_alarms_raised", "Alarms raised, by level at raise time", ["level"], registry=r)
        self.alarm_events = Counter(
            "plantwatch_alarm_events", "Alarm lifecycle events, by type", ["type"], registry=r)
        self.alarm_backlog = Gauge(
            "plantwatch_alarm_backlog",
            "Engine transitions of an alarm storm waiting to be applied (in slices, most severe first)", registry=r)
        self.alarms_open = Gauge(
            "plantwatch_alarms_open", "Alarms not closed, by level", ["level"], registry=r)
        self.store_written = Counter(
            "plantwatch_store_readings_written", "Readings durably written to the store", registry=r)
        self.store_errors = Counter(
            "plantwatch_store_errors", "Store write failures", ["store"], registry=r)
        self.store_failed = Counter(
            "plantwatch_store_readings_failed",
            "Readings a failed store write left unstored (QoS 1 ones are redelivered by the broker)",
            registry=r)
        self.queue_depth = Gauge(
            "plantwatch_ingest_queue_depth", "Messages waiting between MQTT and decode", registry=r)
        self.buffer_bytes = Gauge(
            "plantwatch_store_buffer_bytes", "Bytes in the durable outage buffer", registry=r)
        self.batch_seconds = Histogram(
            "plantwatch_pipeline_batch_seconds", "Store time per write job (sum of its slices, s)", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.store_writer_queued = Gauge(
            "plantwatch_store_writer_queued_readings",
            "Readings handed to the SQLite writer process and not yet reported committed", registry=r)
        self.store_writer_restarts = Gauge(
            "plantwatch_store_writer_restarts",
            "Times the SQLite writer process died and a new one was started (its jobs were redelivered)",
            registry=r)
        self.mqtt_connected = Gauge(
            "plantwatch_mqtt_connected", "1 while the ingest MQTT client is connected", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
