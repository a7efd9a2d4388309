"""Square (Andriushchenko et al., 2020), AutoAttack's gradient-free attack from the official code,
1,000 queries by default: the verdict's gradient-free probe, stored as ``autoattack-custom:square``
with the queries in ``steps``."""

from __future__ import annotations

from mgbench.attacks.attack import register_attack
from mgbench.attacks.kinds._autoattack_part import AutoAttackPart

SQUARE_QUERIES = 1000


@register_attack
class Square(AutoAttackPart):
    name = "square"
    summary = "gradient-free, 1,000 queries"
    family = "Square"
    strength = 3
    gradient_free = True
    seed_rank = 2
    parts = ("square",)
    square_queries = SQUARE_QUERIES
