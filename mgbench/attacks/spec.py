"""What one attack condition is: :class:`AttackSpec` (validated, defaults resolved) and how a
suite's ``[[conditions]]`` table of ``type = "attack"`` becomes specs (one per combination).

Defaults (honest protocol; docs/attacks.md says why and what each costs): PGD 100 steps of
eps / 4, 2 random restarts, with the cross-entropy and with the margin loss (two cells, ``pgd``
and ``pgd-margin``); FGSM one step of eps from the clean point; ``apgd`` = APGD-CE + APGD-T of
the official AutoAttack code (stored as ``autoattack-custom:apgd-ce+apgd-t``); AutoAttack
``standard``. ``all`` = fgsm, pgd, apgd. The verdict's probes are attacks too: ``noise`` (10
random draws of the ball's size) and ``square`` (AutoAttack's gradient-free Square, 1,000
queries by default; stored as ``autoattack-custom:square`` with the queries in ``steps``). The
``mgnet-paper`` protocol defaults to the official code's 10 steps of 1/255 (normalised units), no
random start. Keys that do not apply to an attack (``steps`` for AutoAttack, ``version`` for
PGD) are ignored for it, so one table can sweep several attacks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from mgbench.attacks.autoattack import AA_ATTACKS, CascadeResult, check_attack_names, run_autoattack
from mgbench.attacks.eps import Eps, parse_eps_list, parse_number
from mgbench.attacks.gradient import LOSSES, NORMS, Budget, default_step_size, pgd
from mgbench.attacks.noise import DEFAULT_DRAWS, random_noise
from mgbench.attacks.protocols import PAPER_STEP_SIZE, PAPER_STEPS, PROTOCOLS, normalize_layer, paper_budget
from mgbench.attacks.variants import (
    aimed_at,
    attack_context,
    check_glimpse,
    loss_for,
    parse_variant,
    rescaler_switch,
    variant_label,
)
from mgbench.conditions import check_keys, condition_label
from mgbench.errors import InputError

ATTACKS = ("fgsm", "pgd", "apgd", "autoattack", "noise", "square")
ALL = ("fgsm", "pgd", "apgd")  # what ``attack = "all"`` (the default) runs
GRADIENT_FREE = ("noise", "square")
DEFAULT_STEPS = 100
DEFAULT_RESTARTS = 2
STEP_FRACTION = 0.25  # default PGD step: eps / 4
DEFAULT_LOSSES = ("ce", "margin")
APGD_ATTACKS = ("apgd-ce", "apgd-t")
SQUARE_QUERIES = 1000
TABLE_KEYS = (
    "type", "attack", "eps", "norm", "steps", "step_size", "restarts", "random_start", "protocol", "variant",
    "version", "aa_attacks", "transfer_from", "limit", "checks", "square_queries", "loss", "per_step",
)


@dataclass
class AttackOutput:
    x_adv: torch.Tensor
    cascade: CascadeResult | None = None


@dataclass(frozen=True)
class AttackSpec:
    """One fully resolved attack. ``step_size`` is in pixel units for ``honest`` and in
    normalised-tensor units for ``mgnet-paper`` (like ``eps``)."""

    attack: str
    norm: str
    eps: Eps
    protocol: str = "honest"
    variants: tuple[str, ...] = ()
    transfer_from: str | None = None
    steps: int | None = None
    step_size: float | None = None
    restarts: int | None = None
    random_start: bool | None = None
    version: str | None = None
    aa_attacks: tuple[str, ...] = ()
    loss: str = "ce"

    @property
    def name(self) -> str:
        """The stored ``attack``: fgsm, pgd, pgd-margin, noise, autoattack-standard,
        autoattack-custom:apgd-ce+apgd-t (``apgd``), autoattack-custom:square (``square``)."""
        if self.attack == "pgd" and self.loss != "ce":
            return f"pgd-{self.loss}"
        if self.attack != "autoattack":
            return self.attack
        suffix = ":" + "+".join(self.aa_attacks) if self.version == "custom" else ""
        return f"autoattack-{self.version}{suffix}"

    @property
    def variant(self) -> str:
        return variant_label(self.variants, self.transfer_from)

    @property
    def label(self) -> str:
        return condition_label(self.key())

    def key(self) -> dict[str, Any]:
        """The store's condition columns."""
        return {
            "threat": self.norm,
            "attack": self.name,
            "protocol": self.protocol,
            "variant": self.variant,
            "norm": self.norm,
            "eps": self.eps.value,
            "eps_str": self.eps.text,
            "steps": self.steps,
            "step_size": self.step_size,
            "restarts": self.restarts,
            "random_start": None if self.random_start is None else int(self.random_start),
        }

    @property
    def keep(self) -> str:
        """Transfer attacks and the paper's protocol keep the final iterate; white-box attacks
        keep the first iterate that fools the model."""
        return "last" if self.transfer_from or self.protocol == "mgnet-paper" else "first-success"

    def hyperparameters(self) -> dict[str, Any]:
        """Everything that determines the attack, for the stored detail."""
        out: dict[str, Any] = {**self.key(), "units": "pixels of [0, 1] images"}
        if self.protocol == "mgnet-paper":
            out["units"] = "normalised tensor (x - mean) / std; pixel budget = eps * std per channel"
            out["clip_to_unit_range"] = False
        else:
            out["clip_to_unit_range"] = True
        if self.attack == "autoattack":
            out.update(version=self.version, aa_attacks=list(self.aa_attacks) or None,
                       square_queries=self.steps,  # set only for Square alone (make_spec)
                       implementation="pyautoattack (official AutoAttack code), cascade driven by mgbench")
        elif self.attack == "noise":
            out.update(draws=self.steps, implementation="mgbench.attacks.noise")
        else:
            loss = "cross-entropy" if self.loss == "ce" else "margin max_{j!=y} z_j - z_y"
            out.update(
                loss=f"mean {loss} over all anytime steps" if "all-glimpses" in self.variants
                else f"{loss} of the final logits",
                keep=self.keep, implementation="mgbench.attacks.gradient",
            )
        return out

    def budget(self, model: nn.Module, device: torch.device) -> tuple[Budget, Budget | None, bool]:
        """(eps, step size, clip to [0, 1]) in pixel units; per-channel tensors for mgnet-paper."""
        if self.protocol == "mgnet-paper":
            assert self.step_size is not None  # the paper's protocol runs PGD and FGSM only, which have a step
            return paper_budget(model, self.eps.value, device), paper_budget(model, self.step_size, device), False
        return self.eps.value, self.step_size, True

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, source: nn.Module | None = None,
            seed: int = 0) -> AttackOutput:
        """Craft the adversarial batch (on ``source`` for a transfer attack)."""
        target = source if self.transfer_from else model
        if target is None:
            raise InputError(f"{self.label}: the transfer source model is not loaded")
        if self.attack == "noise":
            assert self.steps is not None
            return AttackOutput(random_noise(model, x, y, norm=self.norm, eps=self.eps.value, draws=self.steps))
        with attack_context(target, self.variants):
            aimed = aimed_at(target, self.variants)
            if self.attack == "autoattack":
                assert self.version is not None  # make_spec sets it
                cascade = run_autoattack(aimed, x, y, norm=self.norm, eps=self.eps.value, version=self.version,
                                         attacks=self.aa_attacks, seed=seed, square_queries=self.steps)
                return AttackOutput(cascade.x_adv, cascade)
            eps, step, clip = self.budget(model, x.device)
            assert self.steps is not None and self.restarts is not None and step is not None
            x_adv = pgd(aimed, x, y, norm=self.norm, eps=eps, steps=self.steps, step_size=step,
                        restarts=self.restarts, random_start=bool(self.random_start), clip=clip, keep=self.keep,
                        loss=loss_for(self.variants, self.loss))
        return AttackOutput(x_adv)


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
    """Validate one combination and resolve its defaults (``None`` = the protocol's default)."""
    if attack not in ATTACKS:
        raise InputError(f"unknown attack {attack!r}: use {', '.join(ATTACKS)} or all")
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
    # what error messages call it (an AutoAttack without a version is the standard one)
    base = AttackSpec(attack, norm, eps, protocol, variants, transfer_from, version=version or "standard",
                      aa_attacks=aa_attacks)
    if attack in GRADIENT_FREE and (variants or transfer_from):
        raise InputError(f"{base.label}: {attack} uses no gradient, so variants and transfer sources do not apply")
    if attack in ("apgd", "square", "noise") and protocol != "honest":
        raise InputError(f"{base.label}: {attack} runs under the honest protocol only")
    if attack == "noise":
        return AttackSpec(attack, norm, eps, protocol, steps=DEFAULT_DRAWS, restarts=1, random_start=True)
    if attack in ("apgd", "square"):
        if attack == "square":
            return make_spec("autoattack", norm, eps, version="custom", aa_attacks=("square",),
                             square_queries=square_queries or SQUARE_QUERIES)
        return make_spec("autoattack", norm, eps, variants=variants, transfer_from=transfer_from,
                         version="custom", aa_attacks=APGD_ATTACKS)
    if protocol == "mgnet-paper":
        problems = [
            (attack == "autoattack", "the paper ran no AutoAttack"),
            (loss != "ce", "the paper's attack uses the cross-entropy"),
            (norm != "linf", "the paper's attack is L-inf only"),
            (bool(variants or transfer_from), "the paper's attack has no variants"),
            (bool(random_start), "the paper's attack has no random start"),
            (restarts not in (None, 1), "the paper's attack has no restarts"),
        ]
        for failed, why in problems:
            if failed:
                raise InputError(f"{base.label}: {why}: use protocol honest for that")
    if attack == "autoattack":
        if transfer_from:
            raise InputError(f"{base.label}: transfer attacks use fgsm or pgd on the source, not autoattack")
        if "all-glimpses" in variants:
            raise InputError(f"{base.label}: AutoAttack uses its own losses; all-glimpses applies to fgsm and pgd")
        version = version or "standard"
        check_attack_names(version, aa_attacks)  # a list only for custom
        queries = square_queries if aa_attacks == ("square",) else None
        return AttackSpec(attack, norm, eps, protocol, variants, steps=queries, version=version,
                          aa_attacks=aa_attacks)
    if attack == "fgsm":
        return AttackSpec(attack, norm, eps, protocol, variants, transfer_from, steps=1, step_size=eps.value,
                          restarts=1, random_start=False)
    if protocol == "mgnet-paper":
        steps = steps or PAPER_STEPS
        size = step_size if step_size is not None else PAPER_STEP_SIZE
        return AttackSpec(attack, norm, eps, protocol, steps=steps, step_size=size, restarts=1,
                          random_start=False)
    steps = steps or DEFAULT_STEPS
    size = step_size if step_size is not None else STEP_FRACTION * eps.value
    return AttackSpec(attack, norm, eps, protocol, variants, transfer_from, steps=steps, step_size=size,
                      restarts=restarts or DEFAULT_RESTARTS,
                      random_start=True if random_start is None else random_start, loss=loss)


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
        return list(ALL), True
    return [str(name) for name in names], False


def _compatible(attack: str, protocol: str, variants: tuple[str, ...], transfer: str | None) -> bool:
    """Whether ``all`` (fgsm, pgd, apgd) should include ``attack`` for this combination."""
    if attack == "apgd":
        return protocol == "honest" and not transfer and "all-glimpses" not in variants
    return True


def _losses(attack: str, protocol: str, table: dict[str, Any]) -> list[str]:
    """The losses a table sweeps for ``attack``: PGD (honest) both by default, everything else
    the cross-entropy (FGSM, the paper's PGD) or its own (AutoAttack, noise)."""
    if attack != "pgd":
        return ["ce"]
    default = list(DEFAULT_LOSSES) if protocol == "honest" else ["ce"]
    return [str(v) for v in _names(table.get("loss"), "loss")] if table.get("loss") is not None else default


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
        rank = {"autoattack-standard": 0, "autoattack-custom:apgd-ce+apgd-t": 1}
        strongest = min(here, key=lambda s: (rank.get(s.name, 2 if s.attack == "autoattack" else 3), s.loss != "ce"),
                        default=None)
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
        if from_all and not _compatible(attack, protocol, variant, source):
            continue
        if optional and (attack in GRADIENT_FREE or protocol != "honest" or source):
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
                    if p.spec.attack in ("pgd", "autoattack") and p.spec.protocol == "honest" and p.spec.loss == "ce"
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
