"""Ingest: MQTT source -> decode -> columnar numpy batch -> store and alerts."""
