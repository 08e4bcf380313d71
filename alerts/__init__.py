"""Alarm core: pure numpy state, detectors, rules and the alarm lifecycle. No I/O here."""
