"""Storage backends for readings and alarms."""
