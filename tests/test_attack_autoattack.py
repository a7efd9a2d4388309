"""AutoAttack through pyautoattack: the staged cascade equals the library's own, per-attack
results, captured check warnings, fewer classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from attack_support import ONE, Quantised, SoftmaxOutput, digits, trained_cnn
from pyautoattack import AutoAttack

from mgbench.attacks import check_ball
from mgbench.attacks.autoattack import _target_classes, attack_settings, run_autoattack
from mgbench.conditions import expand
from mgbench.errors import InputError

# kernels: compares floats across implementations; .ci/run repeats it on a second CPU kernel path.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.kernels]
EPS = 4 / 255


class FirstClasses(nn.Module):
    """The trained CNN restricted to its first ``k`` classes."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, : self.k]


def test_staged_cascade_equals_the_library_cascade() -> None:
    x, y = digits("test", 32)
    model = trained_cnn()
    attacks = ["apgd-ce", "apgd-dlr", "square"]
    library = AutoAttack(model, attacks=attacks, version="custom", eps=EPS, seed=0)
    library.square.n_queries = 100
    _, y_library = library.run_standard_evaluation(x, y, batch_size=len(y))
    ours = run_autoattack(model, x, y, norm="linf", eps=EPS, version="custom", attacks=tuple(attacks), seed=0,
                          square_queries=100)
    assert list(ours.robust) == ["clean", *attacks]
    assert torch.equal(ours.robust["square"], y_library == y)
    flags = [ours.robust[stage] for stage in ours.robust]
    assert all(bool((later <= earlier).all()) for earlier, later in zip(flags, flags[1:])), "a cascade only breaks"
    assert int(ours.robust["apgd-ce"].sum()) < int(ours.robust["clean"].sum())
    check_ball(ours.x_adv, x, norm="linf", eps=EPS)
    with torch.no_grad():
        assert torch.equal(model(ours.x_adv).argmax(dim=1) == y, ours.robust["square"])
    assert ours.target_classes is None and ours.warnings == {}


def test_the_checks_warnings_are_captured() -> None:
    x, y = digits("test", 16)
    probabilities = run_autoattack(SoftmaxOutput(trained_cnn()).eval(), x, y, norm="linf", eps=EPS, seed=0,
                                   version="custom", attacks=("apgd-ce",))
    assert any("probability distribution" in message for message in probabilities.warnings)
    # pyautoattack looks for zero gradients only with its DLR losses
    flat = run_autoattack(Quantised(trained_cnn()).eval(), x, y, norm="linf", eps=EPS, seed=0, version="custom",
                          attacks=("apgd-dlr",))
    assert any("zero gradient" in message for message in flat.warnings)


def test_fewer_classes_use_fewer_targets_and_too_few_is_a_clear_error() -> None:
    model = trained_cnn()
    five = FirstClasses(model, 5).eval()
    aa = AutoAttack(five, eps=EPS, version="standard")
    assert _target_classes(aa, list(aa.attacks_to_run), 5) == 4
    assert aa.apgd_targeted.n_target_classes == 4 and aa.fab.n_target_classes == 4
    x, y = digits("test", 200)
    keep = y < 5
    x, y = x[keep][:8], y[keep][:8]
    result = run_autoattack(five, x, y, norm="linf", eps=EPS, version="custom", attacks=("apgd-t",), seed=0)
    assert result.target_classes == 4 and not result.warnings
    with pytest.raises(InputError, match="apgd-t .* needs at least 4 classes, the model has 3"):
        run_autoattack(FirstClasses(model, 3).eval(), x[:2], y[:2].clamp(max=2), norm="linf", eps=EPS,
                       version="standard", seed=0)


def test_the_condition_stores_the_cascade_and_its_checks() -> None:
    x, y = digits("test", 32)
    model = trained_cnn()
    [condition] = expand({"type": "attack", "attack": "autoattack", "version": "custom", **ONE,
                          "aa_attacks": "apgd-ce,apgd-dlr", "eps": "4/255"})
    assert condition.key["attack"] == "autoattack-custom:apgd-ce+apgd-dlr" and condition.key["steps"] is None
    torch.manual_seed(0)
    first = condition.apply(model, x[:20], y[:20], torch.arange(20))
    second = condition.apply(model, x[20:], y[20:], torch.arange(20, 32))
    rows = {row.metric: row for row in condition.extra_rows()}
    with torch.no_grad():
        robust = int((model(torch.cat([first, second])).argmax(dim=1) == y).sum())
    assert rows["autoattack:apgd-dlr"].value == pytest.approx(robust / 32)
    assert rows["per_example"].value == pytest.approx(robust / 32) and rows["per_example"].n == 32
    assert rows["autoattack:clean"].value >= rows["autoattack:apgd-ce"].value >= rows["autoattack:apgd-dlr"].value
    assert rows["autoattack:apgd-ce"].ci_low <= rows["autoattack:apgd-ce"].value <= rows["autoattack:apgd-ce"].ci_high
    assert rows["autoattack_checks"].detail["warnings"] == {}
    # custom keeps pyautoattack's constructor defaults: 5 restarts of APGD (standard runs 1)
    assert rows["autoattack:apgd-ce"].detail["settings"] == {"n_restarts": 5, "n_iter": 100, "eot_iter": 1}
    assert "settings" not in rows["autoattack:clean"].detail
    hyper = rows["perturbation"].detail["hyperparameters"]
    assert hyper["version"] == "custom" and rows["perturbation"].detail["versions"]["pyautoattack"] == "0.2.0"
    assert rows["perturbation"].value <= 4 / 255 + 1e-6


def test_the_recorded_settings_are_what_each_version_runs() -> None:
    """APGD-CE+T (mgbench's apgd: AutoAttack custom) and AutoAttack standard share attack names
    but not settings; the stored cascade rows say which ran."""
    model = trained_cnn()
    standard = AutoAttack(model, eps=EPS, version="standard")
    custom = AutoAttack(model, eps=EPS, version="custom", attacks=["apgd-ce", "apgd-t"])
    assert attack_settings(standard, "apgd-ce") == {"n_restarts": 1, "n_iter": 100, "eot_iter": 1}
    assert attack_settings(custom, "apgd-ce") == {"n_restarts": 5, "n_iter": 100, "eot_iter": 1}
    for aa in (standard, custom):
        assert attack_settings(aa, "apgd-t") == {"n_restarts": 1, "n_iter": 100, "eot_iter": 1, "n_target_classes": 9}
    assert attack_settings(standard, "fab-t") == {"n_restarts": 1, "n_iter": 100, "n_target_classes": 9}
    assert attack_settings(standard, "square") == {"n_queries": 5000, "p_init": 0.8}
