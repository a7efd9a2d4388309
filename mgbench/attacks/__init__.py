"""Adversarial attacks: FGSM, PGD (L-inf, L2), AutoAttack, MGNet's adaptive variants and the
MGNet paper's protocol, the ``attack`` condition type and its gradient-masking verdicts.

Importing this package registers the ``attack`` condition type and its summary (imported by
:mod:`mgbench.conditions`). User-facing documentation: ``docs/attacks.md``.
"""

from mgbench.attacks import condition, verdict  # noqa: F401  (register the condition type and summary)
from mgbench.attacks.bounds import AttackBoundsError, check_ball
from mgbench.attacks.eps import Eps, parse_eps, parse_eps_list
from mgbench.attacks.gradient import all_steps_ce, fgsm, final_ce, pgd
from mgbench.attacks.spec import AttackSpec, make_spec, specs_from_table

__all__ = [
    "AttackBoundsError", "AttackSpec", "Eps", "all_steps_ce", "check_ball", "fgsm", "final_ce", "make_spec",
    "parse_eps", "parse_eps_list", "pgd", "specs_from_table",
]
