"""mgbench: a robustness benchmark suite for image classifiers built around MGNet."""

__version__ = "0.1.0"

# Before any submodule imports torchvision: make it importable beside a CPU-only torch.
from mgbench import compat  # noqa: E402,F401
