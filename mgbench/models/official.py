"""Weights of the official MGNet code (github.com/siahuat0727/MGNet) in mgbench's MGNet.

The official checkpoints are PyTorch Lightning files: ``{"state_dict": {...}, ...}`` whose keys
are the ``LitModule``'s, i.e. the MGNet module's names under the prefix ``model.`` (its
attribute in ``litmodule.py``). The MGNet module (``mgnet.py``) names its parts ``backbone``
(a torchvision ResNet with ``fc = Identity``, so the same names as ours), ``feat_fusion.mha`` /
``feat_fusion.norm``, ``loc_network.fc``, ``global_fc.fc`` and ``glimpse_fc.fc`` (only when
trained with ``--alpha > 0``). :data:`KEY_MAP` maps those prefixes to ours, one to one.

Two kinds of official keys have no counterpart and are dropped by name:
- the Lightning metric states ``accs.<i>.correct`` / ``accs.<i>.total`` (outside ``model.``);
- ``loc_network.fc.*`` when converting into the one-step baseline, whose location the official
  code computes after its only step but never uses (ours has no localization layer).

Anything else that does not map is an error naming the keys: a silent partial load would make a
wrong model look like a converted one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mgbench.errors import InputError
from mgbench.models._builder import load_failure, load_state, load_weights_only
from mgbench.models._registry import get_entry
from mgbench.models.mgnet import MGNet

LIGHTNING_PREFIX = "model."

# (official prefix, mgbench prefix) under the MGNet module.
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("backbone.", "backbone."),
    ("feat_fusion.mha.", "fusion.attention."),
    ("feat_fusion.norm.", "fusion.norm."),
    ("loc_network.fc.", "localization."),
    ("global_fc.fc.", "global_fc."),
    ("glimpse_fc.fc.", "glimpse_fc."),
)
_LIGHTNING_METRIC_STATE = re.compile(r"accs\.\d+\.(correct|total)$")
_EXTRACT_HINT = (
    "save its weights alone where you trust the file: python -c \"import torch; "
    "torch.save(torch.load('CKPT', weights_only=False)['state_dict'], 'weights.pt')\" and convert weights.pt"
)


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def read_official(path: Path) -> dict[str, torch.Tensor]:
    """The official MGNet state_dict (``model.`` stripped) from a Lightning checkpoint or a bare
    state_dict, loaded with ``weights_only=True``."""
    if not path.is_file():
        raise InputError(f"official checkpoint {path} does not exist: pass the .ckpt file with --from-official")
    try:
        obj = load_weights_only(path)
    except Exception as exc:  # torch raises many types for a bad or unsafe file
        text = str(exc)
        unsafe = re.search(r"GLOBAL ([\w.]+)", text)
        if unsafe:
            raise InputError(
                f"{path} holds Python objects besides tensors ({unsafe.group(1)}), which weights_only "
                f"loading refuses: {_EXTRACT_HINT}"
            ) from exc
        raise InputError(
            f"{path} is not a loadable checkpoint ({load_failure(exc)}): pass an official MGNet .ckpt"
        ) from exc
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} holds no state_dict of tensors: pass an official MGNet .ckpt")
    # Keys outside the prefix stay as they are: Lightning's metric states are dropped by name
    # later, anything else is reported as unmatched.
    return {k[len(LIGHTNING_PREFIX):] if k.startswith(LIGHTNING_PREFIX) else k: v for k, v in state.items()}


def _map_key(key: str) -> str | None:
    for official, ours in KEY_MAP:
        if key.startswith(official):
            return ours + key[len(official):]
    return None


def to_mgbench(official: dict[str, torch.Tensor], model: MGNet) -> dict[str, torch.Tensor]:
    """Rename an official MGNet state_dict to ``model``'s keys; unmatched keys are an error."""
    out, unmatched = {}, []
    for key, value in official.items():
        if _LIGHTNING_METRIC_STATE.match(key):
            continue
        if key.startswith("loc_network.") and model.localization is None:
            continue
        ours = _map_key(key)
        if ours is None:
            unmatched.append(key)
        else:
            out[ours] = value
    if unmatched:
        raise InputError(
            f"official keys with no counterpart in MGNet: {_shown(unmatched)}: is this an MGNet checkpoint?"
        )
    return out


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_mgbench`: an mgbench MGNet state_dict under the official
    LitModule's names (``model.`` + official module names), e.g. to run it in the official code."""
    out = {}
    for key, value in state.items():
        for official, ours in KEY_MAP:
            if key.startswith(ours):
                out[LIGHTNING_PREFIX + official + key[len(ours):]] = value
                break
        else:
            raise InputError(f"mgbench key {key!r} has no official counterpart: pass an MGNet state_dict")
    return out


@dataclass
class Converted:
    """An mgbench MGNet holding official weights, and the arguments a zoo card needs to rebuild it."""

    model: MGNet
    architecture: str
    arguments: dict[str, Any]


def convert_official(checkpoint: Path, architecture: str) -> Converted:
    """Build ``architecture`` (an MGNet in the registry) with the weights of an official
    checkpoint. The number of classes is read from the checkpoint; a checkpoint trained without
    the auxiliary head (``--alpha 0``, no ``glimpse_fc``) gives a model with ``alpha = 0``."""
    entry = get_entry(architecture)
    if entry.family != "mgnet":
        raise InputError(f"--model {architecture} is not an MGNet architecture: use mgnet-r18, mgnet-r50 or a baseline")
    official = read_official(checkpoint)
    classes = official.get("global_fc.fc.weight")
    if classes is None:
        raise InputError(f"{checkpoint} has no global_fc.fc.weight: is this an MGNet checkpoint?")
    arguments: dict[str, Any] = {"num_classes": int(classes.shape[0])}
    model = entry.factory(**arguments)
    if model.glimpse_fc is not None and "glimpse_fc.fc.weight" not in official:
        arguments["alpha"] = 0.0
        model = entry.factory(**arguments)
    load_state(model, to_mgbench(official, model), f"official checkpoint {checkpoint}")
    return Converted(model, architecture, arguments)
