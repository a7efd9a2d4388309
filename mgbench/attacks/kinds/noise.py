"""Random noise: 10 draws of the ball's size per example (the verdict's sanity probe: a model
that noise fools more often than the gradient attacks masks its gradients)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from mgbench.attacks.attack import Attack, AttackOutput, AttackSpec, register_attack
from mgbench.attacks.noise import DEFAULT_DRAWS, random_noise


@register_attack
class Noise(Attack):
    name = "noise"
    summary = "random noise of the ball's size, 10 draws"
    family = "noise"
    strength = 5
    needs_grad = False
    gradient_free = True

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        return replace(asked, version=None, aa_attacks=(), steps=DEFAULT_DRAWS, step_size=None, restarts=1,
                       random_start=True, loss="ce")

    def hyperparameters(self, spec: AttackSpec) -> dict[str, Any]:
        return {"draws": spec.steps, "implementation": "mgbench.attacks.noise"}

    def run(self, spec: AttackSpec, aimed: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            seed: int) -> AttackOutput:
        assert spec.steps is not None
        return AttackOutput(random_noise(model, x, y, norm=spec.norm, eps=spec.eps.value, draws=spec.steps))
