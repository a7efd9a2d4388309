"""AutoAttack (Croce and Hein, 2020) from the official code (pyautoattack): ``standard``
(APGD-CE, APGD-T, FAB-T, Square 5,000 queries: RobustBench's protocol), ``rand`` (EOT) or
``custom`` with a list of its attacks; stored as ``autoattack-<version>[:attacks]``. mgbench
drives the cascade (:mod:`mgbench.attacks.autoattack`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from mgbench.attacks.attack import Attack, AttackOutput, AttackSpec, register_attack
from mgbench.attacks.autoattack import check_attack_names, run_autoattack
from mgbench.errors import InputError

STANDARD = "autoattack-standard"


@register_attack
class AutoAttack(Attack):
    name = "autoattack"
    summary = "the official code, --version standard, rand or custom"
    family = "AutoAttack"
    strength = 0
    column = 2
    autoattack_code = True
    per_step = True
    seed_rank = 0

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        if asked.transfer_from:
            raise InputError(f"{asked.label}: transfer attacks use fgsm or pgd on the source, not autoattack")
        if "all-glimpses" in asked.variants:
            raise InputError(f"{asked.label}: AutoAttack uses its own losses; all-glimpses applies to fgsm and pgd")
        version = asked.version or "standard"
        check_attack_names(version, asked.aa_attacks)  # a list only for custom
        queries = square_queries if asked.aa_attacks == ("square",) else None
        return replace(asked, attack=self.name, steps=queries, step_size=None, restarts=None, random_start=None,
                       version=version, loss="ce")

    def refuse_protocol(self, asked: AttackSpec) -> str:
        return f"{asked.label}: the paper ran no AutoAttack: use protocol honest for that"

    def stored_name(self, spec: AttackSpec) -> str:
        version = spec.version or "standard"  # as asked for, without a version: the standard one
        suffix = ":" + "+".join(spec.aa_attacks) if version == "custom" else ""
        return f"{self.name}-{version}{suffix}"

    def owns(self, stored: str) -> int:
        return 1 if stored.startswith(f"{self.name}-") else 0

    def family_of(self, stored: str) -> str:
        return self.family if stored == STANDARD else stored

    def strength_of(self, stored: str) -> int:
        return self.strength if stored == STANDARD else 6  # other versions: after every named family

    def rank_of(self, stored: str) -> int:
        return self.seed_rank if stored == STANDARD else 2

    def hyperparameters(self, spec: AttackSpec) -> dict[str, Any]:
        return {"version": spec.version, "aa_attacks": list(spec.aa_attacks) or None,
                "square_queries": spec.steps,  # set only for Square alone (resolve)
                "implementation": "pyautoattack (official AutoAttack code), cascade driven by mgbench"}

    def run(self, spec: AttackSpec, aimed: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            seed: int) -> AttackOutput:
        assert spec.version is not None  # resolve sets it
        cascade = run_autoattack(aimed, x, y, norm=spec.norm, eps=spec.eps.value, version=spec.version,
                                 attacks=spec.aa_attacks, seed=seed, square_queries=spec.steps)
        return AttackOutput(cascade.x_adv, cascade)
