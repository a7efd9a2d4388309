"""PGD (Madry et al., 2018) with the cross-entropy or the margin loss: under the honest protocol
100 steps of eps / 4 from a random start, 2 restarts, both losses by default (two cells, ``pgd``
and ``pgd-margin``); under ``mgnet-paper`` the official code's 10 steps of 1/255 (normalised
units) without random start, the cross-entropy only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from mgbench.attacks.attack import Attack, AttackOutput, AttackSpec, register_attack
from mgbench.attacks.gradient import LOSSES
from mgbench.attacks.kinds._gradient import gradient_hyperparameters, run_gradient
from mgbench.attacks.protocols import PAPER_STEP_SIZE, PAPER_STEPS

DEFAULT_STEPS = 100
DEFAULT_RESTARTS = 2
STEP_FRACTION = 0.25  # default step: eps / 4
DEFAULT_LOSSES = ("ce", "margin")


@register_attack
class PGD(Attack):
    name = "pgd"
    summary = "100 steps of eps/4, 2 restarts, cross-entropy and margin losses"
    family = "PGD"
    strength = 2
    column = 1
    in_all = True
    protocols = ("honest", "mgnet-paper")
    per_step = True

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        common = replace(asked, version=None, aa_attacks=())
        if asked.protocol == "mgnet-paper":
            return replace(common, variants=(), transfer_from=None, steps=asked.steps or PAPER_STEPS,
                           step_size=asked.step_size if asked.step_size is not None else PAPER_STEP_SIZE,
                           restarts=1, random_start=False, loss="ce")
        size = asked.step_size if asked.step_size is not None else STEP_FRACTION * asked.eps.value
        return replace(common, steps=asked.steps or DEFAULT_STEPS, step_size=size,
                       restarts=asked.restarts or DEFAULT_RESTARTS,
                       random_start=True if asked.random_start is None else asked.random_start)

    def stored_name(self, spec: AttackSpec) -> str:
        return self.name if spec.loss == "ce" else f"{self.name}-{spec.loss}"

    def owns(self, stored: str) -> int:
        return 2 if stored == self.name or stored in (f"{self.name}-{loss}" for loss in LOSSES) else 0

    def losses(self, protocol: str, requested: list[str] | None) -> list[str]:
        if requested is not None:
            return requested
        return list(DEFAULT_LOSSES) if protocol == "honest" else ["ce"]

    def hyperparameters(self, spec: AttackSpec) -> dict[str, Any]:
        return gradient_hyperparameters(spec)

    def run(self, spec: AttackSpec, aimed: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            seed: int) -> AttackOutput:
        return run_gradient(spec, aimed, model, x, y)
