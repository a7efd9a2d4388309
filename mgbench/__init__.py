"""mgbench: a robustness benchmark suite for image classifiers built around MGNet."""

__version__ = "0.1.0"
