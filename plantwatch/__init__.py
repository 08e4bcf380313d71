"""plantwatch: shared domain types, settings, registry, service wiring and the CLI."""

__all__ = ["__version__"]
__version__ = "0.1.0"
