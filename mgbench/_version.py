"""mgbench's version: a ground module, so that provenance reads it without importing the package's API."""

__version__ = "0.1.0"
