"""How an attack is asked for: :func:`make_spec` checks what every attack shares (norm,
protocol, eps bounds, step counts) and lets the registered attack (:mod:`mgbench.attacks.attack`,
one module each under ``kinds/``) resolve its defaults; :func:`plan_table` turns a suite's
``[[conditions]]`` table of ``type = "attack"`` into specs (one per combination), the ``per_step``
attacks and the verdict's probes.

Each attack's defaults are in its module (docs/attacks.md says why and what each costs). ``all``
is every attack registered with ``in_all`` (fgsm, pgd, apgd). The verdict's probes are attacks
too: ``noise`` and ``square``. Keys that do not apply to an attack (``steps`` for AutoAttack,
``version`` for PGD) are ignored for it, so one table can sweep several attacks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import torch.nn as nn

from mgbench.attacks.attack import (
    AttackOutput,
    AttackSpec,
    all_attacks,
    describe,
    get_attack,
)
from mgbench.attacks.autoattack import AA_ATTACKS
from mgbench.attacks.eps import Eps, parse_eps_list, parse_number
from mgbench.attacks.gradient import LOSSES, NORMS, default_step_size
from mgbench.attacks.kinds.square import SQUARE_QUERIES
from mgbench.attacks.protocols import PROTOCOLS, normalize_layer
from mgbench.attacks.variants import check_glimpse, parse_variant, rescaler_switch
from mgbench.conditions import check_keys
from mgbench.errors import InputError

__all__ = ["AttackOutput", "AttackSpec", "Planned", "check_attack_target", "make_spec", "plan_table",
           "specs_from_table"]

TABLE_KEYS = (
    "type", "attack", "eps", "norm", "steps", "step_size", "restarts", "random_start", "protocol", "variant",
    "version", "aa_attacks", "transfer_from", "limit", "checks", "square_queries", "loss", "per_step",
)


# The L2 diameter of the largest images mgbench evaluates (3 x 224 x 224 in [0, 1]): an L2 budget
# above it allows any image on any of its datasets.
L2_DIAMETER = math.sqrt(3 * 224 * 224)


def check_attack_target(spec: AttackSpec, model: nn.Module, name: str) -> None:
    """Raise :class:`InputError` when ``spec`` cannot attack ``model`` (the model the gradients
    come from: the source of a transfer attack): ``rescaler-off`` needs MGNet's
    ``gradient_rescaler``, ``mgnet-paper`` needs a ``Normalize`` layer to read the std from."""
    if "rescaler-off" in spec.variants:
        rescaler_switch(model, name)
    check_glimpse(model, spec.variants, name)
    if spec.protocol == "mgnet-paper":
        normalize_layer(model, name)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a positive whole number, not {value!r}")
    return value


def make_spec(
    attack: str,
    norm: str,
    eps: Eps,
    *,
    protocol: str = "honest",
    variants: tuple[str, ...] = (),
    transfer_from: str | None = None,
    steps: int | None = None,
    step_size: float | None = None,
    restarts: int | None = None,
    random_start: bool | None = None,
    version: str | None = None,
    aa_attacks: tuple[str, ...] = (),
    loss: str = "ce",
    square_queries: int | None = None,
) -> AttackSpec:
    """Validate one combination and let its attack resolve the defaults (``None``: the attack's
    and protocol's default)."""
    kind = get_attack(attack)
    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}: use {' or '.join(LOSSES)}")
    if norm not in NORMS:
        raise InputError(f"unknown norm {norm!r}: use linf or l2")
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}: use {' or '.join(PROTOCOLS)}")
    if steps is not None:
        steps = _positive_int(steps, "steps")
    if restarts is not None:
        restarts = _positive_int(restarts, "restarts")
    if random_start is not None and not isinstance(random_start, bool):
        raise InputError(f"random_start must be true or false, not {random_start!r}")
    if norm == "linf" and protocol == "honest" and eps.value > 1:
        raise InputError(f"L-inf eps {eps.text} is above 1, which allows any image: use eps <= 1")
    if norm == "l2" and protocol == "honest" and eps.value > L2_DIAMETER:
        raise InputError(f"L2 eps {eps.text} is above {L2_DIAMETER:.0f}, the L2 distance between the farthest two "
                         "3 x 224 x 224 images in [0, 1] (the largest mgbench evaluates), which allows any image: "
                         "use a smaller eps")
    asked = AttackSpec(attack, norm, eps, protocol, variants, transfer_from, steps, step_size, restarts, random_start,
                       version, aa_attacks, loss)
    if kind.gradient_free and (variants or transfer_from):
        raise InputError(f"{asked.label}: {attack} uses no gradient, so variants and transfer sources do not apply")
    if protocol not in kind.protocols:
        raise InputError(kind.refuse_protocol(asked))
    if protocol == "mgnet-paper":
        problems = [
            (loss != "ce", "the paper's attack uses the cross-entropy"),
            (norm != "linf", "the paper's attack is L-inf only"),
            (bool(variants or transfer_from), "the paper's attack has no variants"),
            (bool(random_start), "the paper's attack has no random start"),
            (restarts not in (None, 1), "the paper's attack has no restarts"),
        ]
        for failed, why in problems:
            if failed:
                raise InputError(f"{asked.label}: {why}: use protocol honest for that")
    return kind.resolve(asked, square_queries)


def _names(value: Any, what: str) -> list[Any]:
    """A table value as a list: a list stays, a string splits at commas, a scalar is one item."""
    if value is None:
        return [None]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise InputError(f"attack table: {what} is empty")
    return items


def _attack_names(value: Any) -> tuple[list[str], bool]:
    """(names, expanded from ``all``)."""
    names = _names(value if value is not None else "all", "attack")
    if "all" in names:
        return list(all_attacks()), True
    return [str(name) for name in names], False


def _losses(attack: str, protocol: str, table: dict[str, Any]) -> list[str]:
    """The losses a table sweeps for ``attack`` (its own choice: PGD both by default)."""
    requested = [str(v) for v in _names(table.get("loss"), "loss")] if table.get("loss") is not None else None
    return get_attack(attack).losses(protocol, requested)


@dataclass(frozen=True)
class Planned:
    """One attack a table asks for. ``optional``: it runs only on models it applies to (the
    default ``rescaler-off`` run on models with a gradient rescaler, ``per_step`` attacks on
    anytime models with more steps); an explicitly requested attack that cannot run is an error.
    ``probe``: added by ``checks`` for the verdict."""

    spec: AttackSpec
    optional: bool = False
    probe: bool = False


MAX_PER_STEP = 8  # per_step adds glimpse=1..7 (each runs only on models with more steps)
CHANCE_EPS = "1/2"  # the chance-level probe: L-inf 0.5 moves every image to mid-grey
CHANCE_STEPS = 20


def _table_variants(table: dict[str, Any]) -> list[tuple[tuple[str, ...], bool]]:
    """(variants, optional): the table's, or by default the model as it is and, where the model
    has one, with its gradient rescaler off (MGNet: either can be the stronger attack)."""
    if table.get("variant") is None:
        return [((), False), (("rescaler-off",), True)]
    return [(parse_variant(v), False) for v in _names(table.get("variant"), "variant")]


def _with(spec: AttackSpec, *extra: str) -> AttackSpec:
    return replace(spec, variants=tuple(sorted(set(spec.variants) | set(extra))))


def _seed_rank(spec: AttackSpec) -> int:
    """Which attack the seed probe reseeds: AutoAttack standard, else APGD, else another AutoAttack,
    else PGD (each attack's ``rank_of`` its stored name)."""
    found = describe(spec.name).attack
    return found.rank_of(spec.name) if found is not None else 3


def _probes(planned: list[Planned], table: dict[str, Any]) -> list[Planned]:
    """The verdict's probe attacks (``checks = true``), at every honest eps of the table: random
    noise, Square, and a second independent seed of the strongest attack there (AutoAttack
    standard, else APGD, else PGD); once per table the chance-level PGD at L-inf 1/2 (20 steps,
    no random start, so noise alone cannot succeed)."""
    queries = table.get("square_queries") or SQUARE_QUERIES
    honest = [p.spec for p in planned if p.spec.protocol == "honest" and not p.spec.transfer_from]
    out: list[Planned] = []
    for norm, eps in dict.fromkeys((s.norm, s.eps) for s in honest):
        out += [Planned(make_spec("noise", norm, eps), probe=True),
                Planned(make_spec("square", norm, eps, square_queries=queries), probe=True)]
        here = [s for s in honest if s.norm == norm and s.eps == eps and not s.variants and s.attack != "fgsm"]
        strongest = min(here, key=lambda s: (_seed_rank(s), s.loss != "ce"), default=None)
        if strongest is not None:
            out.append(Planned(_with(strongest, "seed=1"), probe=True))
    if honest:
        large = parse_eps_list(CHANCE_EPS)[0]
        step = default_step_size(large.value, CHANCE_STEPS)
        out.append(Planned(make_spec("pgd", "linf", large, steps=CHANCE_STEPS, step_size=step,
                                     restarts=1, random_start=False), probe=True))
    return out


def plan_table(table: dict[str, Any]) -> list[Planned]:
    """Every combination of the table's lists (attack x norm x eps x protocol x variant x
    transfer source x steps x restarts x loss), validated, then the ``per_step`` attacks and the
    verdict's probes; duplicates (same stored key) dropped, the first kept."""
    check_keys("attack", table)
    if table.get("eps") is None:
        raise InputError("attack table: eps is missing: add eps = \"4/255\" (or a list)")
    for flag in ("checks", "per_step"):
        if not isinstance(table.get(flag, True), bool):
            raise InputError(f"attack table: {flag} must be true or false, not {table[flag]!r}")
    attacks, from_all = _attack_names(table.get("attack"))
    eps_values = parse_eps_list(table["eps"])
    norms = _names(table.get("norm", "linf"), "norm")
    protocols = _names(table.get("protocol", "honest"), "protocol")
    variants = _table_variants(table)
    sources = _names(table.get("transfer_from"), "transfer_from")
    steps_list = _names(table.get("steps"), "steps")
    restarts_list = _names(table.get("restarts"), "restarts")
    step_size = table.get("step_size")
    step = parse_number(step_size, "step_size").value if step_size is not None else None
    aa_attacks = tuple(_names(table.get("aa_attacks"), "aa_attacks")) if table.get("aa_attacks") else ()
    unknown_aa = [a for a in aa_attacks if a not in AA_ATTACKS]
    if unknown_aa:
        raise InputError(f"unknown AutoAttack attack {unknown_aa[0]!r}: use some of {', '.join(AA_ATTACKS)}")
    planned: list[Planned] = []
    for attack, norm, eps, protocol, (variant, optional), source, steps, restarts in itertools.product(
        attacks, norms, eps_values, protocols, variants, sources, steps_list, restarts_list
    ):
        if from_all and not get_attack(attack).joins_all(protocol, variant, source):
            continue
        if optional and (get_attack(attack).gradient_free or protocol != "honest" or source):
            continue  # the default rescaler-off run: white-box gradient attacks of the honest protocol only
        for loss in _losses(attack, protocol, table):
            spec = make_spec(
                attack, norm, eps, protocol=protocol, variants=variant, transfer_from=source or None, steps=steps,
                step_size=step, restarts=restarts, random_start=table.get("random_start"),
                version=table.get("version"), aa_attacks=aa_attacks, loss=loss,
                square_queries=table.get("square_queries"),
            )
            planned.append(Planned(spec, optional))
    if table.get("per_step"):
        planned += [Planned(_with(p.spec, f"glimpse={t}"), True) for p in list(planned)
                    for t in range(1, MAX_PER_STEP)
                    if p.spec.kind.per_step and p.spec.protocol == "honest" and p.spec.loss == "ce"
                    and not p.spec.transfer_from and "all-glimpses" not in p.spec.variants]
    if table.get("checks", True):
        planned += _probes(planned, table)
    unique: dict[str, Planned] = {}
    for item in planned:
        unique.setdefault(str(sorted(item.spec.key().items())), item)
    return list(unique.values())


def specs_from_table(table: dict[str, Any]) -> list[AttackSpec]:
    """The attack specs of :func:`plan_table`."""
    return [item.spec for item in plan_table(table)]
