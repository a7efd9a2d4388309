"""APGD-CE + APGD-T: the two APGD attacks of AutoAttack standard (official code, 100 iterations
each, APGD-T over 9 target classes), run as AutoAttack custom and stored as
``autoattack-custom:apgd-ce+apgd-t``: the strongest attack of ``attack = "all"``. As custom, its
APGD-CE keeps pyautoattack's default of 5 restarts (standard sets 1); the cells record it."""

from __future__ import annotations

from mgbench.attacks.attack import register_attack
from mgbench.attacks.kinds._autoattack_part import AutoAttackPart


@register_attack
class APGD(AutoAttackPart):
    name = "apgd"
    summary = "APGD-CE + APGD-T, AutoAttack's gradient attacks"
    family = "APGD-CE+T"
    strength = 1
    in_all = True
    seed_rank = 1
    parts = ("apgd-ce", "apgd-t")

    def joins_all(self, protocol: str, variants: tuple[str, ...], transfer: str | None) -> bool:
        return protocol == "honest" and not transfer and "all-glimpses" not in variants
