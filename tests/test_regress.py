"""The regression guard: passes on an unchanged model, fails on lost accuracy and on added compute."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from mgbench.models import zoo_dir
from mgbench.report.regress import compare, failed, margin

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)

SUITE = """
name = "regression"
dataset = "digits"
models = ["resnet-tiny.digits.s0", "mgnet-tiny.digits.s0"]
limit = 300

[[conditions]]
type = "clean"

[[conditions]]
type = "corruption"
corruptions = ["fog"]
severities = [2]
backend = "torch"
scaling = "resample224"
"""


def test_margin_and_statuses_by_hand() -> None:
    # p0 = 0.9, p1 = 0.87, n = 1000 each: 1.96 * sqrt(2 * 0.09 / 1000) = 0.026296...
    assert margin(0.9, 1000, 0.9, 1000) == pytest.approx(1.96 * math.sqrt(0.18 / 1000))
    base = pd.DataFrame([
        ["m", "d", "clean", "top1", -1, 0.90, 1000],
        ["m", "d", "fog s3", "top1", -1, 0.90, 1000],
        ["m", "d", "compute", "gmacs", -1, 1.000, None],
        ["m", "d", "compute", "gmacs", 1, 0.500, None],
        ["m", "d", "gone", "top1", -1, 0.5, 100],
    ], columns=["model", "dataset", "condition", "metric", "step", "value", "n"])
    fresh = base.iloc[:4].copy()
    fresh["value"] = [0.88, 0.87, 1.009, 0.5051]  # -0.02 ok, -0.03 drop, +0.9% ok, +1.02% rise
    fresh.loc[len(fresh)] = ["m", "d", "added", "top1", -1, 0.5, 100]
    result = compare(base, fresh).set_index("condition")
    assert result.loc["clean", "status"] == "ok"
    assert result.loc["fog s3", "status"] == "accuracy-drop"
    statuses = result[result["metric"] == "gmacs"].set_index("step")["status"]
    assert statuses[-1] == "ok" and statuses[1] == "compute-rise"
    assert result.loc["gone", "status"] == "missing" and result.loc["added", "status"] == "new"
    assert failed(compare(base.iloc[:1], fresh.iloc[:1])) is False
    assert failed(result.reset_index())


@pytest.fixture
def guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli):
    """A small regression suite and a private copy of the zoo the test may damage."""
    suites, zoo = tmp_path / "suites", tmp_path / "zoo"
    suites.mkdir()
    (suites / "regression.toml").write_text(SUITE)
    shutil.copytree(zoo_dir(), zoo)
    monkeypatch.setenv("MGBENCH_SUITES", str(suites))
    monkeypatch.setenv("MGBENCH_ZOO", str(zoo))
    baseline = tmp_path / "baseline.csv"
    code, out, err = run_cli("regress", "--baseline", str(baseline), "--update")
    assert code == 0 and "baseline rewritten" in out, err
    return zoo, baseline


def _rewrite_card(zoo: Path, card: str, state: dict[str, torch.Tensor] | None = None, extra_argument: str = "") -> None:
    toml = zoo / f"{card}.toml"
    text = toml.read_text()
    if state is not None:
        torch.save(state, zoo / f"{card}.pt")
        old = text.split('sha256 = "')[1].split('"')[0]
        text = text.replace(old, hashlib.sha256((zoo / f"{card}.pt").read_bytes()).hexdigest())
    if extra_argument:
        text = text.replace("[arguments]\n", f"[arguments]\n{extra_argument}\n")
    toml.write_text(text)


@pytest.mark.slow
def test_guard_passes_then_catches_a_degraded_model_and_more_compute(guard, run_cli) -> None:
    zoo, baseline = guard
    table = pd.read_csv(baseline)
    assert set(table["condition"]) == {"clean", "fog s2", "compute"} and (table[table.metric == "top1"].n == 300).all()

    code, out, _ = run_cli("regress", "--baseline", str(baseline))
    assert code == 0 and "passed" in out

    state = torch.load(zoo / "resnet-tiny.digits.s0.pt", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    noisy = {k: v + 0.5 * v.std() * torch.randn(v.shape, generator=generator) if v.dim() > 1 else v
             for k, v in state.items()}  # noise on the conv and linear weights only
    _rewrite_card(zoo, "resnet-tiny.digits.s0", state=noisy)
    code, out, _ = run_cli("regress", "--baseline", str(baseline))
    assert code == 1 and "FAILED" in out and "accuracy-drop" in out

    _rewrite_card(zoo, "resnet-tiny.digits.s0", state=state)
    _rewrite_card(zoo, "mgnet-tiny.digits.s0", extra_argument="glimpses = 5")
    code, out, _ = run_cli("regress", "--baseline", str(baseline))
    assert code == 1 and "compute-rise" in out and "accuracy-drop" not in out


def test_missing_or_malformed_baseline_is_one_line(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli("regress", "--baseline", str(tmp_path / "none.csv"))
    assert code == 2 and "no baseline table" in err and "--update" in err
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    code, _, err = run_cli("regress", "--baseline", str(tmp_path / "bad.csv"))
    assert code == 2 and "not a regression baseline" in err
