"""AutoAttack through ``pyautoattack`` (the official attack code: APGD, FAB, Square).

Versions: ``standard`` (apgd-ce, apgd-t, fab-t, square: RobustBench's protocol), ``rand``
(apgd-ce and apgd-dlr with 20 EOT samples per gradient, for randomised models) and ``custom``
(a chosen list of apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square).

AutoAttack is a *cascade*: each attack runs only on the examples that every earlier attack left
correctly classified, so the result is the per-example worst case over its attacks. We drive
pyautoattack's own ``run_standard_evaluation`` once per attack of the version's list, on the
examples still robust; that is the same cascade, and it gives the robust accuracy after every
attack (the cascade's dictionary, which pyautoattack only logs) and the per-example flags.

pyautoattack's ``checks`` (randomised model, probability outputs, zero gradients, Square beating
the white-box attacks, dynamic defences, number of classes) report through the ``auto-attack``
logger; their warnings are captured and stored with the results.

Targeted attacks (apgd-t, fab-t) try the 9 most likely wrong classes in ``standard``, so they
need at least 10 classes (the embedded digits have exactly 10). With fewer classes we use all
``K - 1`` wrong classes and record it; the targeted DLR loss of apgd-t needs at least 4 classes
and apgd-dlr at least 3 (their losses read the 3rd/4th largest logit).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn as nn
from pyautoattack import AutoAttack
from pyautoattack import checks as aa_checks

from mgbench import progress
from mgbench.attacks.gradient import frozen
from mgbench.errors import InputError

AA_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
AA_VERSIONS = ("standard", "rand", "custom")
_AA_NORMS = {"linf": "Linf", "l2": "L2"}
LOGGER = "auto-attack"


@dataclass
class CascadeResult:
    """``robust[stage]``: per-example correctness after ``stage`` (``clean`` first, then each
    attack of the cascade in order); ``warnings``: distinct messages of pyautoattack's checks
    with how often each was logged; ``settings[attack]``: what pyautoattack ran each attack that
    had examples left with (:func:`attack_settings`)."""

    x_adv: torch.Tensor
    robust: dict[str, torch.Tensor]
    warnings: dict[str, int]
    target_classes: int | None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages[message] = self.messages.get(message, 0) + 1


@contextmanager
def captured_warnings(name: str = LOGGER) -> Iterator[dict[str, int]]:
    """Collect the WARNING records of a logger (message -> count) for the duration."""
    logger = logging.getLogger(name)
    handler = _Collect()
    level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def check_attack_names(version: str, attacks: tuple[str, ...]) -> None:
    """Validate a version and (for ``custom``) its attack list, before anything runs."""
    if version not in AA_VERSIONS:
        raise InputError(f"unknown AutoAttack version {version!r}: use one of {', '.join(AA_VERSIONS)}")
    if version != "custom" and attacks:
        raise InputError(f"AutoAttack {version} has a fixed list of attacks: use version custom to choose them")
    if version == "custom":
        if not attacks:
            raise InputError(f"AutoAttack custom needs its attacks: name some of {', '.join(AA_ATTACKS)}")
        unknown = [a for a in attacks if a not in AA_ATTACKS]
        if unknown:
            raise InputError(f"unknown AutoAttack attack {unknown[0]!r}: use some of {', '.join(AA_ATTACKS)}")


def _target_classes(aa: AutoAttack, order: list[str], num_classes: int) -> int | None:
    """Fit the targeted attacks to the number of classes (see the module docstring)."""
    for attack, needed, loss in (("apgd-t", 4, "targeted DLR"), ("apgd-dlr", 3, "DLR")):
        if attack in order and num_classes < needed:
            raise InputError(
                f"AutoAttack's {attack} ({loss} loss) needs at least {needed} classes, the model has "
                f"{num_classes}: use version custom with apgd-ce,fab,square"
            )
    if "apgd-t" not in order and "fab-t" not in order:
        return None
    targets = min(aa.apgd_targeted.n_target_classes, aa.fab.n_target_classes, num_classes - 1)
    aa.apgd_targeted.n_target_classes = targets
    aa.fab.n_target_classes = targets
    return targets


def attack_settings(aa: AutoAttack, attack: str) -> dict[str, Any]:
    """The settings ``aa`` runs ``attack`` with, read off pyautoattack's attack objects after the
    attack ran. Why record them: ``custom`` keeps the constructor's defaults, which ``standard``
    overrides, so the same attack name runs differently: APGD-CE has 5 restarts in ``custom``
    (mgbench's ``apgd``, APGD-CE+T) and 1 in ``standard``; untargeted FAB has 5 in ``custom``."""
    if attack in ("apgd-ce", "apgd-dlr", "apgd-t"):
        apgd = aa.apgd_targeted if attack == "apgd-t" else aa.apgd
        out: dict[str, Any] = {"n_restarts": apgd.n_restarts, "n_iter": apgd.n_iter, "eot_iter": apgd.eot_iter}
        return {**out, "n_target_classes": apgd.n_target_classes} if attack == "apgd-t" else out
    if attack in ("fab", "fab-t"):
        out = {"n_restarts": aa.fab.n_restarts, "n_iter": aa.fab.n_iter}
        return {**out, "n_target_classes": aa.fab.n_target_classes} if attack == "fab-t" else out
    return {"n_queries": aa.square.n_queries, "p_init": aa.square.p_init}


def run_autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str,
    eps: float,
    version: str,
    attacks: tuple[str, ...] = (),
    seed: int,
    square_queries: int | None = None,
) -> CascadeResult:
    """The AutoAttack cascade on one batch (``square_queries`` overrides Square's 5,000
    queries; mgbench's own checks use it, the stored ``autoattack`` conditions never do)."""
    check_attack_names(version, attacks)
    x, y = x.detach(), y.detach()
    with torch.no_grad():
        logits = model(x)
    clean, num_classes = logits.argmax(dim=1) == y, int(logits.shape[-1])
    aa = AutoAttack(model, norm=_AA_NORMS[norm], eps=eps, version=version,
                    attacks=list(attacks) if version == "custom" else None, seed=seed, device=x.device)
    order = list(aa.attacks_to_run)
    targets = _target_classes(aa, order, num_classes)
    if square_queries is not None:
        aa.square.n_queries = square_queries
    robust = clean.clone()
    stages = {"clean": clean.clone()}
    settings: dict[str, dict[str, Any]] = {}
    x_adv = x.clone()
    # pyautoattack's dynamic-defence check counts calls in a module-level dict it never resets,
    # so one flagged model would flag every later one in the process: start each run at zero.
    for name in aa_checks.funcs:
        aa_checks.funcs[name] = 0
    with captured_warnings() as messages, frozen(model), progress.task("autoattack stage", len(order)) as bar:
        for stage, attack in enumerate(order):
            idx = robust.nonzero().squeeze(1)
            bar.update(completed=stage, status=f"{attack}: {idx.numel()} of {len(y)} still robust")
            if idx.numel():
                aa.attacks_to_run = [attack]
                adv, predicted = aa.run_standard_evaluation(x[idx], y[idx], batch_size=idx.numel())
                broken = predicted.to(y.device) != y[idx]
                x_adv[idx[broken]] = adv[broken].to(x_adv.device)
                robust[idx[broken]] = False
                settings[attack] = attack_settings(aa, attack)
            stages[attack] = robust.clone()
    return CascadeResult(x_adv, stages, dict(messages), targets, settings)
