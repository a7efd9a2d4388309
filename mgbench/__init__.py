"""mgbench: a robustness benchmark suite for image classifiers built around MGNet.

The API at the top level, as timm has it::

    mgbench.list_models("mgnet*")           # zoo cards and registered architectures
    mgbench.create_model("mgnet-tiny.digits.s0")  # an nn.Module (card: trained weights)
    mgbench.evaluate("clean", ["mgnet-tiny.digits.s0"], limit=200)  # tidy rows of the suite's cells

These names load their modules on first use (``mgbench/api.py``), so ``import mgbench`` stays cheap.
"""

from typing import Any

# Before any submodule imports torchvision: make it importable beside a CPU-only torch.
from mgbench import compat  # noqa: E402,F401
from mgbench._version import __version__

__all__ = ["__version__", "create_model", "evaluate", "list_models"]


def __getattr__(name: str) -> Any:
    if name in ("create_model", "evaluate", "list_models"):
        from mgbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'mgbench' has no attribute {name!r}")
