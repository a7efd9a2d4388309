"""The shape shared by attacks that are a fixed part of AutoAttack (APGD-CE+T, Square alone): each
resolves to AutoAttack ``custom`` with its parts. Kept out of ``autoattack.py`` so that importing a
part does not register AutoAttack ahead of it (the registry keeps ``MODULES`` order)."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from mgbench.attacks.attack import Attack, AttackSpec, get_attack


class AutoAttackPart(Attack):
    """An attack that is a fixed part of AutoAttack: AutoAttack ``custom`` with ``parts``, stored as
    ``autoattack-custom:<parts>`` and owned (ahead of AutoAttack's prefix) by the part's name.
    ``square_queries`` is the part's default Square budget, when it runs Square alone."""

    autoattack_code = True
    column = 2
    parts: ClassVar[tuple[str, ...]] = ()
    square_queries: ClassVar[int | None] = None

    @property
    def stored(self) -> str:
        return "autoattack-custom:" + "+".join(self.parts)

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        custom = replace(asked, attack="autoattack", version="custom", aa_attacks=self.parts)
        return get_attack("autoattack").resolve(custom, square_queries or self.square_queries)

    def owns(self, stored: str) -> int:
        return 2 if stored == self.stored else 0
