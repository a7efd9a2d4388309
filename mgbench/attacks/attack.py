"""The attack registry: every attack the suite runs is an :class:`Attack` in a module of its own
(:mod:`mgbench.attacks.kinds`), registered once with :func:`register_attack`.

An attack owns everything that differs between attacks: its name (``fgsm``, ``pgd``, ...), its
defaults and checks (:meth:`Attack.resolve`: a validated :class:`AttackSpec`), the name its cells
are stored under (``pgd-margin``, ``autoattack-custom:apgd-ce+apgd-t``), how it runs, the
hyperparameters a cell records, and what the checks and reports read from a stored name
(:func:`describe`: the attack, its family on the leaderboard, its rank). Everything attacks
share (norms, protocols, eps bounds, variants, the ``[[conditions]]`` table's combinations) is in
:mod:`mgbench.attacks.spec`. Adding an attack is a module under ``kinds/`` and one import line in
``kinds/__init__.py``; ``tests/test_attack_registry.py`` holds every registered attack to the
same contract (as timm's tests hold every model).

The registry (a :class:`mgbench.registry.Registry` in registration order) finds the kinds
lazily: a lookup imports the ``kinds`` package first (once; its modules register themselves), as
the condition types' plugins are found.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from mgbench.attacks.autoattack import CascadeResult
from mgbench.attacks.eps import Eps
from mgbench.attacks.gradient import Budget
from mgbench.attacks.protocols import paper_budget
from mgbench.attacks.variants import aimed_at, attack_context, variant_label
from mgbench.conditions import condition_label
from mgbench.errors import InputError
from mgbench.registry import Registry

KINDS = "mgbench.attacks.kinds"


@dataclass
class AttackOutput:
    x_adv: torch.Tensor
    cascade: CascadeResult | None = None


@dataclass(frozen=True)
class AttackSpec:
    """One attack: as asked for (hyperparameters None where the attack's default applies), or
    resolved by its :meth:`Attack.resolve` (every default filled in; what runs and is stored).
    ``attack`` names its registered :class:`Attack`. ``step_size`` is in pixel units for
    ``honest`` and in normalised-tensor units for ``mgnet-paper`` (like ``eps``)."""

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
    def kind(self) -> "Attack":
        return get_attack(self.attack)

    @property
    def name(self) -> str:
        """The stored ``attack`` (its kind's :meth:`Attack.stored_name`)."""
        return self.kind.stored_name(self)

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
        return {**out, **self.kind.hyperparameters(self)}

    def budget(self, model: nn.Module, device: torch.device) -> tuple[Budget, Budget | None, bool]:
        """(eps, step size, clip to [0, 1]) in pixel units; per-channel tensors for mgnet-paper."""
        if self.protocol == "mgnet-paper":
            assert self.step_size is not None  # the paper's protocol runs PGD and FGSM only, which have a step
            return paper_budget(model, self.eps.value, device), paper_budget(model, self.step_size, device), False
        return self.eps.value, self.step_size, True

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, source: nn.Module | None = None,
            seed: int = 0) -> AttackOutput:
        """Craft the adversarial batch (on ``source`` for a transfer attack), with the variants'
        context (rescaler off, the glimpse aimed at) around the model the gradients come from."""
        target = source if self.transfer_from else model
        if target is None:
            raise InputError(f"{self.label}: the transfer source model is not loaded")
        if not self.kind.needs_grad:
            return self.kind.run(self, model, model, x, y, seed)
        with attack_context(target, self.variants):
            return self.kind.run(self, aimed_at(target, self.variants), model, x, y, seed)


class Attack:
    """One registered attack. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]  # what tables and --attack call it
    summary: ClassVar[str]  # one line for --help and the docs
    family: ClassVar[str]  # the leaderboard's name for its cells
    strength: ClassVar[int]  # families strongest first (0) on the leaderboard
    column: ClassVar[int] = 5  # where its cells go in tables: FGSM, PGD, AutoAttack, others
    in_all: ClassVar[bool] = False  # one of ``attack = "all"``
    needs_grad: ClassVar[bool] = True  # False: runs without gradients, outside the variants' context
    gradient_free: ClassVar[bool] = False  # variants and transfer sources do not apply
    protocols: ClassVar[tuple[str, ...]] = ("honest",)  # the protocols it runs under
    per_step: ClassVar[bool] = False  # ``per_step`` tables aim it at each glimpse
    autoattack_code: ClassVar[bool] = False  # runs the official AutoAttack code (pyautoattack)
    seed_rank: ClassVar[int] = 3  # which attack the verdict's seed probe reseeds: the lowest

    def resolve(self, asked: AttackSpec, square_queries: int | None) -> AttackSpec:
        """The validated attack with its defaults. ``asked`` is what the table or command line
        said (what every attack shares already checked by :func:`mgbench.attacks.spec.make_spec`),
        and names the attack in errors; ``square_queries``: the Square probe's budget."""
        raise NotImplementedError

    def refuse_protocol(self, asked: AttackSpec) -> str:
        """The error for a protocol this attack does not run under."""
        return f"{asked.label}: {self.name} runs under the honest protocol only"

    def stored_name(self, spec: AttackSpec) -> str:
        return self.name

    def owns(self, stored: str) -> int:
        """Whether cells stored under ``stored`` are this attack's: 0 no, 1 by a pattern (every
        ``autoattack-*``), 2 by its exact name; the most specific owner describes the name."""
        return 2 if stored == self.name else 0

    def family_of(self, stored: str) -> str:
        return self.family

    def strength_of(self, stored: str) -> int:
        return self.strength

    def rank_of(self, stored: str) -> int:
        """The seed probe's rank of a stored cell of this attack (lowest: reseeded)."""
        return self.seed_rank

    def losses(self, protocol: str, requested: list[str] | None) -> list[str]:
        """The losses a table sweeps for this attack (``requested``: the table's ``loss``)."""
        return ["ce"]

    def joins_all(self, protocol: str, variants: tuple[str, ...], transfer: str | None) -> bool:
        """Whether ``attack = "all"`` includes it for this combination."""
        return True

    def hyperparameters(self, spec: AttackSpec) -> dict[str, Any]:
        """The stored detail's attack-specific fields."""
        return {}

    def run(self, spec: AttackSpec, aimed: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            seed: int) -> AttackOutput:
        """Craft the adversarial batch: gradients from ``aimed`` (the target or transfer source,
        aimed at the variant's glimpse), budgets read from ``model``."""
        raise NotImplementedError


_ATTACKS: Registry[Attack] = Registry("attack", ordered=True)


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: register one instance of an :class:`Attack` under its ``name``."""
    _ATTACKS.add(cls.name, cls())
    return cls


def attack_names() -> tuple[str, ...]:
    """The registered attacks, in registration order (``kinds.MODULES``)."""
    importlib.import_module(KINDS)  # once: its modules register every attack
    return tuple(_ATTACKS.names())


def all_attacks() -> tuple[str, ...]:
    """What ``attack = "all"`` runs."""
    return tuple(name for name in attack_names() if get_attack(name).in_all)


def get_attack(name: str) -> Attack:
    known = attack_names()
    if name not in known:
        raise InputError(f"unknown attack {name!r}: use {', '.join(known)} or all")
    return _ATTACKS.get(name)


@dataclass(frozen=True)
class StoredName:
    """What a stored ``attack`` says, for the checks and reports: the attack that wrote it (None
    for names no attack owns, e.g. the summary's ``worst-case``), its family and ranks."""

    stored: str
    attack: Attack | None

    @property
    def kind(self) -> str | None:
        return None if self.attack is None else self.attack.name

    @property
    def family(self) -> str:
        return self.stored if self.attack is None else self.attack.family_of(self.stored)

    @property
    def strength(self) -> int:
        return len(attack_names()) + 1 if self.attack is None else self.attack.strength_of(self.stored)

    @property
    def column(self) -> int:
        return 5 if self.attack is None else self.attack.column


def describe(stored: str) -> StoredName:
    """The attack behind a stored ``attack`` name (its most specific owner)."""
    owner = max((get_attack(name) for name in attack_names()), key=lambda attack: attack.owns(stored))
    return StoredName(stored, owner if owner.owns(stored) else None)
