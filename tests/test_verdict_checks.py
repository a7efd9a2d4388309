"""The verdict's probes seen failing on models built to fail them (``verdict_models``), and the
``randomised`` check's EOT branch seen both ways, through the public ``evaluate`` and the stored
verdict cell.

Expected outcomes come from how each model is built, not from a run: a reversed gradient cannot
be followed by a gradient attack but noise does not care; a gradient that is zero on the uint8
grid stops PGD without a random start at the clean point, while the probe's random restarts leave
the grid; a randomised model passes only when AutoAttack ``rand`` (EOT) was run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from attack_support import one_thread  # noqa: F401
from verdict_models import write_factory

from mgbench.data import DataSpec
from mgbench.runner import RunOptions, evaluate
from mgbench.store import Store
from mgbench.suites import Suite

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("verdict-models")
    return {kind: write_factory(folder, kind) for kind in ("reversed", "grid-masked", "noisy-wrong")}


def sweep(model: str, store: Path, limit: int, **table: Any) -> pd.DataFrame:
    suite = Suite("verdict-test", "", "digits", [], [{"type": "attack", "square_queries": 50, **table}],
                  Path("<test>"))
    evaluate(suite, models=[model], data=DataSpec("digits", limit=limit), store=store,
             options=RunOptions(device="cpu", batch_size=64))
    with Store(store) as results:
        return results.frame()


def checks(frame: pd.DataFrame) -> dict[str, tuple[bool | None, str]]:
    """check name -> (passed, reason), and the verdict's own list must agree."""
    rows = frame[frame["metric"].str.startswith("check:")]
    out = {row.metric[len("check:"):]: (json.loads(row.detail)["passed"], json.loads(row.detail)["reason"])
           for row in rows.itertuples()}
    verdict = json.loads(frame[frame["metric"] == "unreliable"]["detail"].item())
    assert verdict["checks"] == {name: passed for name, (passed, _) in out.items()}
    return out


def test_noise_beating_a_reversed_gradient_fails_the_noise_check(models: dict[str, str], tmp_path: Path) -> None:
    frame = sweep(models["reversed"], tmp_path / "r.sqlite", 64, attack=["fgsm", "pgd"], eps="48/255", steps=5)
    result = checks(frame)
    assert result["noise"][0] is False, result["noise"]
    assert "random noise beats the white-box attacks" in result["noise"][1]
    assert frame[frame["metric"] == "unreliable"]["value"].item() == 1


def test_a_stuck_pgd_fails_the_converged_check(models: dict[str, str], tmp_path: Path) -> None:
    frame = sweep(models["grid-masked"], tmp_path / "r.sqlite", 64, attack="pgd", eps="8/255", steps=1,
                  random_start=False)
    result = checks(frame)
    assert result["converged"][0] is False, result["converged"]
    assert "has not converged" in result["converged"][1]


def test_a_randomised_model_passes_only_with_eot(models: dict[str, str], tmp_path: Path) -> None:
    without = checks(sweep(models["noisy-wrong"], tmp_path / "a.sqlite", 16, attack="fgsm", eps="8/255"))
    assert without["randomised"][0] is False and "evaluate with AutoAttack version rand" in without["randomised"][1]
    with_eot = checks(sweep(models["noisy-wrong"], tmp_path / "b.sqlite", 16, attack=["fgsm", "autoattack"],
                            version="rand", eps="8/255"))
    assert with_eot["randomised"][0] is True and "evaluated with AutoAttack rand (EOT)" in with_eot["randomised"][1]
