"""Adaptive variants of the gradient attacks for MGNet-style models (stored as ``variant``).

- ``rescaler-off``: MGNet multiplies the localisation path's gradient by 0.02 in the backward
  pass (a "gradient rescaler"); left on during an attack it shrinks that path's gradient 50x.
  The variant attacks with the rescaler disabled through the model's own
  ``gradient_rescaler(enabled)`` context manager; the forward pass is unchanged, so the model
  under attack is the same function.
- ``all-glimpses``: the loss is the mean over the anytime steps of each step's loss, so early
  glimpses (and the glimpse locations they choose) are attacked too; success is still judged on
  the final prediction, and the iterate that first fooled it is kept.
- ``glimpse=T``: the loss is step ``T``'s (1-based) and success means step ``T``'s prediction is
  wrong: the cell's step-``T`` accuracy is then the robust accuracy of the anytime prediction
  after ``T`` glimpses under an attack aimed at it (an attack on the final logits only bounds it).
- ``seed=N``: the same attack with an independent random stream (its N-th reseeding): the
  verdict's ``seed`` check compares it with the unseeded run.
- ``transfer-from=MODEL`` (built from ``transfer_from``): craft on a source model, evaluate on
  the target (gradient-free for the target, so immune to its gradient masking).

Variants combine with ``+``, e.g. ``rescaler-off+all-glimpses``; ``all-glimpses`` and
``glimpse=T`` exclude each other.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator

import torch
import torch.nn as nn

from mgbench.attacks.gradient import LossFn, objective
from mgbench.errors import InputError
from mgbench.models import forward_steps, num_steps

VARIANTS = ("rescaler-off", "all-glimpses")
NUMBERED = ("glimpse", "seed")  # glimpse=T, seed=N
ADAPTIVE = ("rescaler-off", "all-glimpses")  # what the verdict's adaptive check compares with the default
DEFAULT = "default"
TRANSFER_PREFIX = "transfer-from="
_HELP = f"use default, {', '.join(VARIANTS)}, glimpse=T or seed=N (join with +)"


def _numbered(name: str) -> tuple[str, int] | None:
    """``glimpse=3`` -> ("glimpse", 3); None for names without a number."""
    head, sep, tail = name.partition("=")
    if not sep or head not in NUMBERED:
        return None
    if not tail.isdigit() or int(tail) < 1:
        raise InputError(f"attack variant {name!r}: {head} needs a whole number >= 1, e.g. {head}=2")
    return head, int(tail)


def numbered(variants: tuple[str, ...], what: str) -> int | None:
    """The number of the ``glimpse=T`` / ``seed=N`` token, or None."""
    for name in variants:
        parsed = _numbered(name)
        if parsed is not None and parsed[0] == what:
            return parsed[1]
    return None


def without_seed(variant: str) -> str:
    """A stored variant label without its ``seed=N`` token (the run it repeats)."""
    parts = [p for p in variant.split("+") if not p.startswith("seed=")]
    return "+".join(parts) or DEFAULT


def parse_variant(raw: Any) -> tuple[str, ...]:
    """``default``, one variant or several joined by ``+`` -> sorted tuple of variant names."""
    if raw is None:
        return ()
    if not isinstance(raw, str):
        raise InputError(f"variant {raw!r} must be a string: {_HELP}")
    text = raw.strip()
    if text in ("", DEFAULT):
        return ()
    if text.startswith(TRANSFER_PREFIX):
        raise InputError(f"variant {text!r}: name the source model with transfer_from / --transfer-from instead")
    names = [part.strip() for part in text.split("+")]
    unknown = [name for name in names if name not in VARIANTS and _numbered(name) is None]
    if unknown:
        raise InputError(f"unknown attack variant {unknown[0]!r}: {_HELP}")
    heads = [name.partition("=")[0] for name in names]
    twice = next((head for head in heads if heads.count(head) > 1), None)
    if twice is not None:
        raise InputError(f"attack variant {text!r} names {twice} twice: {_HELP}")
    if "all-glimpses" in names and "glimpse" in heads:
        raise InputError(f"attack variant {text!r}: all-glimpses and glimpse=T exclude each other")
    return tuple(sorted(set(names)))


def variant_label(variants: tuple[str, ...], transfer_from: str | None) -> str:
    """The stored ``variant``: ``default``, ``rescaler-off+all-glimpses``, ``transfer-from=X`` ..."""
    parts = ([f"{TRANSFER_PREFIX}{transfer_from}"] if transfer_from else []) + list(variants)
    return "+".join(parts) or DEFAULT


def loss_for(variants: tuple[str, ...], loss: str) -> LossFn:
    """The attack objective: ``loss`` (ce or margin) of the final logits or of every step's."""
    return objective(loss, "all" if "all-glimpses" in variants else "final")


class StepLogits(nn.Module):
    """``model`` read after ``step`` anytime steps: its forward returns step ``step``'s logits
    (the model runs only that many steps). Attacks on it aim at that step's prediction."""

    def __init__(self, model: nn.Module, step: int) -> None:
        super().__init__()
        self.model, self.step = model, step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_steps(self.model, x, steps=self.step).logits[self.step - 1]


def aimed_at(model: nn.Module, variants: tuple[str, ...]) -> nn.Module:
    """The module the attack's gradients come from: ``model``, or its step-T logits for ``glimpse=T``."""
    step = numbered(variants, "glimpse")
    return model if step is None else StepLogits(model, step).eval()


def check_glimpse(model: nn.Module, variants: tuple[str, ...], name: str) -> None:
    """``glimpse=T`` needs an anytime model with at least T steps."""
    step = numbered(variants, "glimpse")
    if step is not None and num_steps(model) < step:
        raise InputError(f"attack variant glimpse={step} needs a model with at least {step} anytime steps; "
                         f"{name} has {num_steps(model)}: drop the variant for this model")


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
