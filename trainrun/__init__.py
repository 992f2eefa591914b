"""trainrun: a config-driven training runner for Keras."""

__version__ = "0.1.0"
