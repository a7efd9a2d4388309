"""Gradient-masking verdicts: models built to mask gradients are flagged, a healthy one is not;
the check logic on synthetic per-example results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from attack_support import one_thread, write_factory  # noqa: F401

from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.verdict import ModelFacts, StoredAttack, _verdict_checks
from mgbench.data import DataSpec
from mgbench.runner import RunOptions, evaluate
from mgbench.store import Store
from mgbench.suites import Suite

pytestmark = pytest.mark.usefixtures("one_thread")
LIMIT = 64


@pytest.fixture(scope="module")
def factories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("models")
    return {kind: write_factory(folder, kind) for kind in ("healthy", "quantised", "softmax", "noisy")}


def sweep(model: str, store: Path) -> pd.DataFrame:
    table = {"type": "attack", "attack": ["fgsm", "pgd"], "eps": ["2/255", "8/255"], "steps": 10,
             "square_queries": 200}
    suite = Suite("attack-test", "", "digits", [], [table], Path("<test>"))
    evaluate(suite, models=[model], data=DataSpec("digits", limit=LIMIT), store=store,
             options=RunOptions(device="cpu", batch_size=64))
    with Store(store) as results:
        return results.frame()


def verdict(frame: pd.DataFrame) -> tuple[float, dict[str, bool | None], list[str]]:
    row = frame[frame["metric"] == "unreliable"].iloc[0]
    detail = json.loads(row["detail"])
    return row["value"], detail["checks"], detail["reasons"]


def test_a_healthy_model_is_not_flagged_and_the_worst_case_is_stored(factories: dict[str, str],
                                                                       tmp_path: Path) -> None:
    frame = sweep(factories["healthy"], tmp_path / "r.sqlite")
    unreliable, checks, reasons = verdict(frame)
    assert unreliable == 0 and reasons == [], reasons
    assert checks["chance-level"] and checks["zero-gradients"] and checks["square"] and checks["pgd-vs-fgsm"]
    top1 = frame[(frame["metric"] == "top1") & frame["step"].isna()]
    own = frame[frame["metric"] == "per_example"].set_index("cell_key")["value"]
    attacks = top1[top1["attack"].isin(["fgsm", "pgd"])]
    for row in attacks.itertuples():  # the attack's own check pass agrees with the runner's fresh one
        assert own[row.cell_key] == pytest.approx(row.value)
    for eps, group in attacks.groupby("eps"):
        worst = top1[(top1["attack"] == "worst-case") & (top1["eps"] == eps)]["value"].item()
        assert worst <= group["value"].min() + 1e-12
    assert {c for c, passed in checks.items() if passed is None} == {"transfer", "adaptive", "autoattack-flags"}


@pytest.mark.slow
@pytest.mark.parametrize("kind, expected", [
    ("quantised", {"zero-gradients", "chance-level", "square"}),
    ("softmax", {"logits", "zero-gradients"}),
    ("noisy", {"randomised"}),
])
def test_gradient_masking_models_are_flagged(kind: str, expected: set[str], factories: dict[str, str],
                                             tmp_path: Path) -> None:
    unreliable, checks, reasons = verdict(sweep(factories[kind], tmp_path / "r.sqlite"))
    failed = {name for name, passed in checks.items() if passed is False}
    assert unreliable == 1 and expected <= failed, (failed, reasons)
    assert len(reasons) == len(failed)


# ----------------------------------------------------------------------------- synthetic results

def cell(attack: str, eps: float, correct: list[int], variant: str = "default", warnings: dict | None = None,
         steps: int | None = 10) -> StoredAttack:
    bits = np.array(correct, dtype=bool)
    return StoredAttack(attack, "honest", variant, "linf", eps, f"{round(eps * 255)}/255", steps,
                        None if steps is None else eps / 4, 1, True,
                        ExampleSet.from_ids(np.arange(len(bits)), bits), warnings or {})


def facts(n: int) -> ModelFacts:
    return ModelFacts(False, False, ExampleSet.from_ids(np.arange(n), np.ones(n, dtype=bool)), 0, n)


def failed_checks(cells: list[StoredAttack], n: int) -> set[str]:
    checks = _verdict_checks(cells, facts(n), None, None, None, None, 10)
    return {c.name for c in checks if c.passed is False}


def test_synthetic_sweeps_trigger_exactly_their_checks() -> None:
    n = 100
    ones, zeros = [1] * n, [0] * n
    half = [1] * 50 + [0] * 50
    healthy = [cell("fgsm", 2 / 255, half), cell("pgd", 2 / 255, [1] * 40 + [0] * 60),
               cell("fgsm", 8 / 255, [1] * 10 + [0] * 90), cell("pgd", 8 / 255, zeros)]
    assert failed_checks(healthy, n) == set()
    # PGD at 8/255 leaves 20 examples correct that it broke at 2/255: not monotone in eps.
    rising = healthy[:3] + [cell("pgd", 8 / 255, [0] * 40 + [1] * 20 + [0] * 40)]
    assert failed_checks(rising, n) == {"monotone-eps", "pgd-vs-fgsm"}
    # FGSM breaks 10 examples PGD misses.
    weak_pgd = [cell("fgsm", 2 / 255, [0] * 10 + [1] * 30 + [0] * 60), cell("pgd", 2 / 255, [1] * 40 + [0] * 60)]
    assert failed_checks(weak_pgd, n) == {"pgd-vs-fgsm"}
    # A transfer attack breaks examples every white-box attack missed.
    transfer = cell("pgd", 2 / 255, [0] * 20 + [1] * 20 + [0] * 60, variant="transfer-from=resnet")
    assert failed_checks(healthy + [transfer], n) == {"transfer"}
    # An adaptive variant breaks examples the default attacks missed; it is white-box, so it
    # also covers what the transfer attack found.
    adaptive = cell("pgd", 2 / 255, [0] * 30 + [1] * 10 + [0] * 60, variant="rescaler-off")
    assert failed_checks(healthy + [adaptive], n) == {"adaptive"}
    assert failed_checks(healthy + [transfer, adaptive], n) == {"adaptive"}
    # Two examples of a hundred are within the margin.
    noise = healthy + [cell("pgd", 2 / 255, [0] * 2 + [1] * 38 + [0] * 60, variant="transfer-from=resnet")]
    assert failed_checks(noise, n) == set()
    flagged = healthy + [cell("autoattack-standard", 2 / 255, zeros, steps=None,
                              warnings={"there are 3 points with zero gradient!": 1})]
    assert failed_checks(flagged, n) == {"autoattack-flags"}
    assert failed_checks(healthy + [cell("pgd", 2 / 255, ones, variant="all-glimpses")], n) == set()
