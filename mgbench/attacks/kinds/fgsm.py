"""FGSM: one signed-gradient step of eps from the clean point (Goodfellow et al., 2015)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from mgbench.attacks.attack import Attack, AttackOutput, AttackSpec, register_attack
from mgbench.attacks.kinds._gradient import gradient_hyperparameters, run_gradient


@register_attack
class FGSM(Attack):
    name = "fgsm"
    summary = "one step of eps"
    family = "FGSM"
    strength = 4
    column = 0
    in_all = True
    protocols = ("honest", "mgnet-paper")

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        return replace(asked, version=None, aa_attacks=(), steps=1, step_size=asked.eps.value, restarts=1,
                       random_start=False, loss="ce")

    def hyperparameters(self, spec: AttackSpec) -> dict[str, Any]:
        return gradient_hyperparameters(spec)

    def run(self, spec: AttackSpec, aimed: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            seed: int) -> AttackOutput:
        return run_gradient(spec, aimed, model, x, y)
