"""The one interface for models that predict after every step (MGNet's glimpses).

A model with several anytime predictions sets an int attribute ``num_steps`` and implements
``forward_steps(x, steps=None) -> StepOutputs``; its ``forward(x)`` returns the final logits, so
every attack and metric treats it like any other classifier. Evaluators call
:func:`forward_steps` below and never look at a class name: a plain classifier is a one-step
model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class StepOutputs:
    """Per-step outputs. ``logits``: [T, B, K]. ``boxes``: [T, B, 4] glimpse boxes as
    (x0, y0, x1, y1) fractions of the image, or None. ``maps``: attention maps (e.g. LTPA's
    [B, H, W] per level), or None."""

    logits: torch.Tensor
    boxes: torch.Tensor | None = None
    maps: list[torch.Tensor] | None = None


def num_steps(model: nn.Module) -> int:
    return int(getattr(model, "num_steps", 1))


def forward_steps(model: nn.Module, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
    """Per-step outputs of any model; ``steps`` truncates an anytime model after that many steps."""
    method = getattr(model, "forward_steps", None)
    if method is None:
        return StepOutputs(model(x).unsqueeze(0))
    return method(x, steps=steps)
