"""Adaptive variants of the gradient attacks for MGNet-style models (stored as ``variant``).

- ``rescaler-off``: MGNet multiplies the localisation path's gradient by 0.02 in the backward
  pass (a "gradient rescaler"); left on during an attack it shrinks that path's gradient 50x.
  The variant attacks with the rescaler disabled through the model's own
  ``gradient_rescaler(enabled)`` context manager; the forward pass is unchanged, so the model
  under attack is the same function.
- ``all-glimpses``: the loss is the mean over the anytime steps of each step's cross-entropy,
  so early glimpses (and the glimpse locations they choose) are attacked too.
- ``transfer-from=MODEL`` (built from ``transfer_from``): craft on a source model, evaluate on
  the target (gradient-free for the target, so immune to its gradient masking).

Variants combine with ``+``, e.g. ``rescaler-off+all-glimpses``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator

import torch.nn as nn

from mgbench.attacks.gradient import LossFn, all_steps_ce, final_ce
from mgbench.errors import InputError

VARIANTS = ("rescaler-off", "all-glimpses")
DEFAULT = "default"
TRANSFER_PREFIX = "transfer-from="


def parse_variant(raw: Any) -> tuple[str, ...]:
    """``default``, one variant or several joined by ``+`` -> sorted tuple of variant names."""
    if raw is None:
        return ()
    if not isinstance(raw, str):
        raise InputError(f"variant {raw!r} must be a string: use default, {', '.join(VARIANTS)} (join with +)")
    text = raw.strip()
    if text in ("", DEFAULT):
        return ()
    if text.startswith(TRANSFER_PREFIX):
        raise InputError(f"variant {text!r}: name the source model with transfer_from / --transfer-from instead")
    names = [part.strip() for part in text.split("+")]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise InputError(f"unknown attack variant {unknown[0]!r}: use default, {', '.join(VARIANTS)} (join with +)")
    return tuple(sorted(set(names)))


def variant_label(variants: tuple[str, ...], transfer_from: str | None) -> str:
    """The stored ``variant``: ``default``, ``rescaler-off+all-glimpses``, ``transfer-from=X`` ..."""
    parts = ([f"{TRANSFER_PREFIX}{transfer_from}"] if transfer_from else []) + list(variants)
    return "+".join(parts) or DEFAULT


def loss_for(variants: tuple[str, ...]) -> LossFn:
    return all_steps_ce if "all-glimpses" in variants else final_ce


def rescaler_switch(model: nn.Module, name: str | None = None) -> Callable[[bool], ContextManager[None]]:
    """The model's ``gradient_rescaler(enabled)`` context manager, or a one-line InputError."""
    switch = getattr(model, "gradient_rescaler", None)
    if not callable(switch):
        raise InputError(
            f"attack variant rescaler-off needs a model with a gradient_rescaler(enabled) context manager "
            f"(MGNet); {name or type(model).__name__} has none: drop the variant for this model"
        )
    return switch


@contextmanager
def _rescaler_off(model: nn.Module) -> Iterator[None]:
    with rescaler_switch(model)(False):
        yield


def attack_context(model: nn.Module, variants: tuple[str, ...]) -> ContextManager[None]:
    """The context the attack runs in (the rescaler disabled for ``rescaler-off``)."""
    return _rescaler_off(model) if "rescaler-off" in variants else nullcontext()
