"""The AutoAttack cascade's bookkeeping (``mgbench.attacks.autoattack``) around a scripted
stand-in for pyautoattack: which examples each stage attacks, the per-stage robust flags, the
images kept, the warnings captured, the targeted attacks fitted to the number of classes and
the settings handed over. ``test_attack_autoattack.py`` runs the real library (slower) and
checks the staged cascade equals the library's own."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn as nn
from pyautoattack import checks as aa_checks

from mgbench import progress
from mgbench.attacks import autoattack
from mgbench.attacks.autoattack import captured_warnings, check_attack_names, run_autoattack
from mgbench.errors import InputError

LISTS = {"standard": ["apgd-ce", "apgd-t", "fab-t", "square"], "rand": ["apgd-ce", "apgd-dlr"]}


class Table(nn.Module):
    """Image i (every pixel = i) is classified as ``predicted[i]``; one parameter, to see it frozen."""

    def __init__(self, predicted: list[int], classes: int = 10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.predicted, self.classes = predicted, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.flatten(1)[:, 0].round().long().clamp(0, len(self.predicted) - 1)
        return nn.functional.one_hot(torch.tensor(self.predicted)[rows], self.classes).float() + self.weight


class Scripted:
    """Stands in for pyautoattack's AutoAttack: each attack breaks the images named in ``breaks``
    (by pixel value), returns them + 0.5 and logs one warning."""

    breaks: dict[str, set[int]] = {}
    made: list["Scripted"] = []
    fab_targets = apgd_targets = 9

    def __init__(self, model: nn.Module, *, norm: str, eps: float, version: str, attacks: list[str] | None,
                 seed: int, device: torch.device) -> None:
        self.model, self.calls, self.device = model, [], device
        self.settings = {"norm": norm, "eps": eps, "version": version, "attacks": attacks, "seed": seed}
        self.attacks_to_run = list(LISTS.get(version, attacks or []))
        self.apgd = SimpleNamespace(n_restarts=5, n_iter=100, eot_iter=1)  # pyautoattack's attributes
        self.apgd_targeted = SimpleNamespace(n_target_classes=self.apgd_targets, n_restarts=1, n_iter=100, eot_iter=1)
        self.fab = SimpleNamespace(n_target_classes=self.fab_targets, n_restarts=1, n_iter=100)
        self.square = SimpleNamespace(n_queries=5000, p_init=0.8)
        Scripted.made.append(self)

    def run_standard_evaluation(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, Any]:
        (attack,) = self.attacks_to_run
        frozen = not any(p.requires_grad for p in self.model.parameters())
        self.calls.append((attack, x.flatten(1)[:, 0].tolist(), batch_size, frozen))
        logging.getLogger("auto-attack").warning(f"{attack} ran")
        hit = torch.tensor([int(v) in self.breaks.get(attack, set()) for v in x.flatten(1)[:, 0].tolist()])
        return x + 0.5, torch.where(hit, (y + 1) % 10, y)


class Recorder(progress.Reporter):
    """What a progress display would show: (description, total, completed, status) per event."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, int, str]] = []

    def opened(self, task: progress.Task) -> None:
        self.seen.append((task.description, task.total, task.completed, task.status))

    def updated(self, task: progress.Task) -> None:
        self.opened(task)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[Scripted]:
    monkeypatch.setattr(autoattack, "AutoAttack", Scripted)
    monkeypatch.setattr(Scripted, "made", [])
    monkeypatch.setattr(Scripted, "breaks", {})
    return Scripted


def images(n: int) -> torch.Tensor:
    return torch.arange(float(n)).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()


def test_each_stage_attacks_only_what_every_earlier_stage_left_robust(scripted: type[Scripted]) -> None:
    scripted.breaks = {"apgd-ce": {1, 3}, "apgd-t": {3, 4}, "fab-t": {0}}
    x, y = images(6), torch.tensor([0, 1, 2, 0, 1, 2])
    model = Table([0, 1, 0, 0, 1, 2])  # image 2 is misclassified before any attack
    aa_checks.funcs.update({name: 5 for name in aa_checks.funcs})
    with progress.reporting(Recorder()) as shown:
        result = run_autoattack(model, x, y, norm="linf", eps=0.25, version="standard", seed=11)
    (made,) = scripted.made
    assert made.device == x.device
    assert shown.seen == [("autoattack stage", 4, 0, "")] + [
        ("autoattack stage", 4, stage, f"{attack}: {left} of 6 still robust")
        for stage, (attack, left) in enumerate([("apgd-ce", 5), ("apgd-t", 3), ("fab-t", 2), ("square", 1)])]
    assert made.settings == {"norm": "Linf", "eps": 0.25, "version": "standard", "attacks": None, "seed": 11}
    # images attacked per stage: all correct ones (not 2); then without 1 and 3; then without 4; then without 0
    assert made.calls == [("apgd-ce", [0, 1, 3, 4, 5], 5, True), ("apgd-t", [0, 4, 5], 3, True),
                          ("fab-t", [0, 5], 2, True), ("square", [5], 1, True)]
    assert {stage: flags.tolist() for stage, flags in result.robust.items()} == {
        "clean": [True, True, False, True, True, True],
        "apgd-ce": [True, False, False, False, True, True],
        "apgd-t": [True, False, False, False, False, True],
        "fab-t": [False, False, False, False, False, True],
        "square": [False, False, False, False, False, True]}
    moved = (result.x_adv - x).flatten(1)[:, 0].tolist()
    assert moved == [0.5, 0.5, 0.0, 0.5, 0.5, 0.0]  # the broken images are the attack's, the rest the clean ones
    assert result.warnings == {"apgd-ce ran": 1, "apgd-t ran": 1, "fab-t ran": 1, "square ran": 1}
    assert result.target_classes == 9 and (made.apgd_targeted.n_target_classes, made.fab.n_target_classes) == (9, 9)
    assert made.square.n_queries == 5000
    assert result.settings == {"apgd-ce": {"n_restarts": 5, "n_iter": 100, "eot_iter": 1},
                               "apgd-t": {"n_restarts": 1, "n_iter": 100, "eot_iter": 1, "n_target_classes": 9},
                               "fab-t": {"n_restarts": 1, "n_iter": 100, "n_target_classes": 9},
                               "square": {"n_queries": 5000, "p_init": 0.8}}
    assert set(aa_checks.funcs.values()) == {0}  # the dynamic-defence counters start at zero
    assert model.weight.requires_grad


def test_once_nothing_is_robust_the_later_stages_do_not_run(scripted: type[Scripted]) -> None:
    scripted.breaks = {"apgd-ce": {0, 1}}
    result = run_autoattack(Table([0, 1]), images(2), torch.tensor([0, 1]), norm="l2", eps=0.5, version="custom",
                            attacks=("apgd-ce", "square"), square_queries=300, seed=0)
    (made,) = scripted.made
    assert made.settings["attacks"] == ["apgd-ce", "square"] and made.settings["norm"] == "L2"
    assert [call[0] for call in made.calls] == ["apgd-ce"] and made.square.n_queries == 300
    assert result.robust["square"].tolist() == [False, False] and result.target_classes is None
    assert result.warnings == {"apgd-ce ran": 1}
    assert list(result.settings) == ["apgd-ce"]  # settings only of the attacks that ran


@pytest.mark.parametrize("version, attacks, classes, targets", [
    ("custom", ("apgd-t",), 4, 3), ("custom", ("fab-t",), 5, 4), ("standard", (), 12, 9), ("custom", ("fab",), 2, None),
])
def test_targeted_attacks_try_at_most_the_wrong_classes_there_are(scripted: type[Scripted], version: str,
                                                                   attacks: tuple[str, ...], classes: int,
                                                                   targets: int | None) -> None:
    result = run_autoattack(Table([1], classes), images(1), torch.tensor([0]), norm="linf", eps=0.1,
                            version=version, attacks=attacks, seed=0)
    (made,) = scripted.made
    assert result.target_classes == targets
    assert (made.apgd_targeted.n_target_classes, made.fab.n_target_classes) == (targets or 9, targets or 9)


def test_the_fewest_targets_of_either_targeted_attack_are_used_by_both(scripted: type[Scripted],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for apgd, fab in ((9, 7), (6, 9)):
        monkeypatch.setattr(Scripted, "fab_targets", fab)
        monkeypatch.setattr(Scripted, "apgd_targets", apgd)
        result = run_autoattack(Table([1]), images(1), torch.tensor([0]), norm="linf", eps=0.1, version="standard",
                                seed=0)
        made = scripted.made[-1]
        assert result.target_classes == made.apgd_targeted.n_target_classes == made.fab.n_target_classes == min(apgd,
                                                                                                                 fab)


@pytest.mark.parametrize("version, attacks, classes, message", [
    ("custom", ("apgd-t",), 3, "AutoAttack's apgd-t (targeted DLR loss) needs at least 4 classes, the model has 3: "
                               "use version custom with apgd-ce,fab,square"),
    ("rand", (), 2, "AutoAttack's apgd-dlr (DLR loss) needs at least 3 classes, the model has 2: use version custom "
                    "with apgd-ce,fab,square"),
])
def test_too_few_classes_for_a_dlr_loss_is_named(scripted: type[Scripted], version: str, attacks: tuple[str, ...],
                                                  classes: int, message: str) -> None:
    with pytest.raises(InputError) as error:
        run_autoattack(Table([1], classes), images(1), torch.tensor([0]), norm="linf", eps=0.1, version=version,
                       attacks=attacks, seed=0)
    assert str(error.value) == message
    run_autoattack(Table([1], classes + 1), images(1), torch.tensor([0]), norm="linf", eps=0.1, version=version,
                   attacks=attacks, seed=0)


@pytest.mark.parametrize("version, attacks, message", [
    ("fast", (), "unknown AutoAttack version 'fast': use one of standard, rand, custom"),
    ("standard", ("square",), "AutoAttack standard has a fixed list of attacks: use version custom to choose them"),
    ("custom", (), "AutoAttack custom needs its attacks: name some of apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square"),
    ("custom", ("apgd-ce", "cw"), "unknown AutoAttack attack 'cw': use some of apgd-ce, apgd-dlr, apgd-t, fab, fab-t, "
                                  "square"),
])
def test_bad_versions_and_attack_lists_are_named(version: str, attacks: tuple[str, ...], message: str) -> None:
    with pytest.raises(InputError) as error:
        check_attack_names(version, attacks)
    assert str(error.value) == message
    check_attack_names("custom", ("apgd-ce", "square"))
    check_attack_names("rand", ())


def test_captured_warnings_count_messages_and_leave_the_logger_as_it_was() -> None:
    logger = logging.getLogger("mgbench-test-capture")
    logger.setLevel(logging.ERROR)
    with captured_warnings("mgbench-test-capture") as messages:
        logger.warning("a")
        logger.warning("a")
        logger.error("b")
        logger.info("not a warning")
    assert messages == {"a": 2, "b": 1}
    assert logger.level == logging.ERROR and logger.handlers == []
    logger.warning("after")
    assert messages == {"a": 2, "b": 1}
    logger.setLevel(logging.DEBUG)
    with captured_warnings("mgbench-test-capture") as messages:
        logger.info("chatter")
        logger.warning("c")
    assert messages == {"c": 1} and logger.level == logging.DEBUG
