"""What the gradient attacks run by :func:`mgbench.attacks.gradient.pgd` (FGSM, PGD) share."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from mgbench.attacks.attack import AttackOutput, AttackSpec
from mgbench.attacks.gradient import pgd
from mgbench.attacks.variants import loss_for


def gradient_hyperparameters(spec: AttackSpec) -> dict[str, Any]:
    """The stored detail of an attack run by :func:`mgbench.attacks.gradient.pgd`."""
    loss = "cross-entropy" if spec.loss == "ce" else "margin max_{j!=y} z_j - z_y"
    return {"loss": f"mean {loss} over all anytime steps" if "all-glimpses" in spec.variants
            else f"{loss} of the final logits", "keep": spec.keep, "implementation": "mgbench.attacks.gradient"}


def run_gradient(spec: AttackSpec, aimed: nn.Module, model: nn.Module, x: torch.Tensor,
                 y: torch.Tensor) -> AttackOutput:
    """FGSM and PGD: :func:`mgbench.attacks.gradient.pgd` with the spec's budget and loss."""
    eps, step, clip = spec.budget(model, x.device)
    assert spec.steps is not None and spec.restarts is not None and step is not None
    return AttackOutput(pgd(aimed, x, y, norm=spec.norm, eps=eps, steps=spec.steps, step_size=step,
                            restarts=spec.restarts, random_start=bool(spec.random_start), clip=clip, keep=spec.keep,
                            loss=loss_for(spec.variants, spec.loss)))
