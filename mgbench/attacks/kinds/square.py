"""Square (Andriushchenko et al., 2020), AutoAttack's gradient-free attack from the official code,
1,000 queries by default: the verdict's gradient-free probe, stored as ``autoattack-custom:square``
with the queries in ``steps``."""

from __future__ import annotations

from dataclasses import replace

from mgbench.attacks.attack import Attack, AttackSpec, get_attack, register_attack

SQUARE_QUERIES = 1000
STORED = "autoattack-custom:square"


@register_attack
class Square(Attack):
    name = "square"
    summary = "gradient-free, 1,000 queries"
    family = "Square"
    strength = 3
    column = 2
    autoattack_code = True
    gradient_free = True
    seed_rank = 2

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        alone = replace(asked, attack="autoattack", version="custom", aa_attacks=("square",))
        return get_attack("autoattack").resolve(alone, square_queries or SQUARE_QUERIES)

    def owns(self, stored: str) -> int:
        return 2 if stored == STORED else 0
