"""APGD-CE + APGD-T: the first two attacks of AutoAttack standard (official code, 100 iterations
each, APGD-T over 9 target classes), run as AutoAttack custom and stored as
``autoattack-custom:apgd-ce+apgd-t``: the strongest attack of ``attack = "all"``."""

from __future__ import annotations

from dataclasses import replace

from mgbench.attacks.attack import Attack, AttackSpec, get_attack, register_attack

APGD_ATTACKS = ("apgd-ce", "apgd-t")
STORED = "autoattack-custom:" + "+".join(APGD_ATTACKS)


@register_attack
class APGD(Attack):
    name = "apgd"
    summary = "APGD-CE + APGD-T, AutoAttack's gradient attacks"
    family = "APGD-CE+T"
    strength = 1
    column = 2
    autoattack_code = True
    in_all = True
    seed_rank = 1

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        custom = replace(asked, attack="autoattack", version="custom", aa_attacks=APGD_ATTACKS)
        return get_attack("autoattack").resolve(custom, None)

    def owns(self, stored: str) -> int:
        return 2 if stored == STORED else 0

    def joins_all(self, protocol: str, variants: tuple[str, ...], transfer: str | None) -> bool:
        return protocol == "honest" and not transfer and "all-glimpses" not in variants
