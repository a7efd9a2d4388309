"""Make ``import torchvision`` work beside a CPU-only torch.

Applied once, on `import mgbench`, before any submodule imports torchvision.

The torchvision wheel on the package registry is a CUDA build. Its compiled extension
(``torchvision/_C``) cannot load next to a CPU torch, and ``import torchvision`` then dies
while registering fake kernels for ``torchvision::nms``/``qnms``: those two registrations are
the only ones not guarded by "were the compiled ops loaded?". Declaring the two op schemas
(without any kernel) lets the pure-Python parts (models, transforms, datasets) import; calling
``torchvision.ops.nms`` would still fail, and mgbench never does. Where the compiled ops load
(a matching torch/torchvision pair, e.g. on a GPU machine) this module does nothing.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None


def _compiled_ops_load() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to fix
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = package_dir / f"_C{suffix}"
        if candidate.exists():
            try:
                torch.ops.load_library(str(candidate))
            except OSError:
                return False
            return True
    return False


def ensure_torchvision() -> None:
    """Declare the op schemas torchvision's import needs when its compiled ops cannot load."""
    global _library
    if _library is not None or _compiled_ops_load():
        return
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)


ensure_torchvision()


# ----------------------------------------------------------------------------- robustbench

# The ``autoattack`` submodules robustbench 1.1.1 imports (robustbench/eval.py).
_AUTOATTACK_SUBMODULES = ("state",)


def ensure_autoattack_alias() -> bool:
    """Make ``import autoattack`` resolve to pyautoattack, so that ``import robustbench`` works.

    robustbench 1.1.1 declares the PyPI package ``pyautoattack`` but imports the original
    repository's module name: ``from autoattack import AutoAttack`` and ``from autoattack.state
    import EvaluationState``. pyautoattack 0.2.0 ships the same modules under its own name. This
    registers ``pyautoattack`` (and ``pyautoattack.state``) under the ``autoattack`` names in
    ``sys.modules``, only when no real ``autoattack`` package is installed (that one, e.g. a git
    install of fra31/auto-attack, is then used untouched). Called by
    :func:`mgbench.models.robustbench.import_robustbench` before robustbench is imported, never
    on ``import mgbench``. Returns whether the alias is in place (False: a real ``autoattack``
    exists, or pyautoattack is missing).
    """
    import importlib
    import sys

    current = sys.modules.get("autoattack")
    if current is not None:
        return getattr(current, "__name__", "") == "pyautoattack"
    if importlib.util.find_spec("autoattack") is not None:
        return False  # a real autoattack package: leave it alone
    try:
        package = importlib.import_module("pyautoattack")
    except ImportError:
        return False
    sys.modules["autoattack"] = package
    for name in _AUTOATTACK_SUBMODULES:
        sys.modules[f"autoattack.{name}"] = importlib.import_module(f"pyautoattack.{name}")
    return True
