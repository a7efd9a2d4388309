"""Gradient-masking verdicts: models built to mask gradients are flagged, a healthy one is not;
the check logic on synthetic per-example results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from attack_support import ONE, write_factory

from mgbench.attacks.checks import ModelFacts, StoredAttack, converged_check, verdict_checks
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.verdict import _worst_case_summaries, read_attacks
from mgbench.data import DataSpec
from mgbench.runner import RunOptions, run_suite
from mgbench.store import Store
from mgbench.suites import Suite

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.kernels]
LIMIT = 64


@pytest.fixture(scope="module")
def factories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("models")
    return {kind: write_factory(folder, kind) for kind in ("healthy", "quantised", "softmax", "noisy", "scaled")}


def sweep(model: str, store: Path, table: dict | None = None) -> pd.DataFrame:
    table = table or {"type": "attack", "attack": ["fgsm", "pgd"], "eps": ["2/255", "8/255"], "steps": 10,
                      "restarts": 1, "square_queries": 200}
    suite = Suite("attack-test", "", "digits", [], [table], Path("<test>"))
    run_suite(suite, models=[model], data=DataSpec("digits", limit=LIMIT), store=store,
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
    attacks = top1[top1["attack"] != "worst-case"]
    assert {"noise", "autoattack-custom:square", "pgd-margin"} <= set(attacks["attack"])  # the probes are cells
    assert set(attacks["variant"]) == {"default", "seed=1"}  # no rescaler to switch off on this model
    for row in attacks.itertuples():  # the attack's own check pass agrees with the runner's fresh one
        assert own[row.cell_key] == pytest.approx(row.value)
    for eps, group in attacks.groupby("eps"):
        worst = top1[(top1["attack"] == "worst-case") & (top1["eps"] == eps)]
        if eps < 0.5:
            assert worst["value"].item() <= group["value"].min() + 1e-12
        else:  # the chance-level probe is not a headline number
            assert worst.empty
    assert {c for c, passed in checks.items() if passed is None} == {"transfer", "adaptive", "converged"}
    assert checks["seed"] and checks["noise"] and checks["autoattack-flags"]


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


def test_short_cross_entropy_pgd_on_saturated_logits_is_caught_by_apgd(factories: dict[str, str],
                                                                         tmp_path: Path) -> None:
    """Logits x 1e4: the cross-entropy's gradient underflows to exactly zero, so a short CE-PGD
    leaves the model looking robust; APGD-T's scale-invariant targeted DLR loss breaks it, and the
    `converged` check (APGD vs PGD, per example) flags the PGD number. The healthy model under the
    default PGD (100 steps, 2 restarts) passes at 16/255, where both attacks break every example.

    Both outcomes lie far from the check's margin (3 unique breaks of 64) on every CPU kernel path:
    at 8/255 the healthy CNN left APGD 1-3 unique breaks depending on the kernels (AVX-512 3:
    failed; AVX2 1; scalar 2), so that eps measured the kernels, not the check. Measured with
    ATEN_CPU_CAPABILITY=avx512/avx2/default: scaled 45/64 vs 1/64 correct, healthy 0 vs 0."""
    short = {"type": "attack", "attack": ["pgd", "apgd"], "eps": "8/255", "steps": 5, "restarts": 1, **ONE}
    default = {"type": "attack", "attack": ["pgd", "apgd"], "eps": "16/255", **ONE}
    outcome = {}
    for kind, table in (("scaled", short), ("healthy", default)):
        cells = read_attacks(sweep(factories[kind], tmp_path / f"{kind}.sqlite", table))
        by_name = {c.attack: c.examples for c in cells}
        pgd, apgd = by_name["pgd"], by_name["autoattack-custom:apgd-ce+apgd-t"]
        check = converged_check(cells)
        outcome[kind] = (pgd.n_correct, apgd.n_correct, check.passed, check.detail.get("broken_only_by_a"))
    pgd_correct, apgd_correct, passed, unique = outcome["scaled"]
    assert pgd_correct >= apgd_correct + 20 and passed is False and unique >= 20, outcome
    pgd_correct, apgd_correct, passed, unique = outcome["healthy"]
    assert passed is True and unique == 0 and pgd_correct <= 1, outcome


# ----------------------------------------------------------------------------- synthetic results

def cell(attack: str, eps: float, correct: list[int], variant: str = "default", warnings: dict | None = None,
         steps: int | None = 10, ids: np.ndarray | None = None, random_start: bool = True) -> StoredAttack:
    bits = np.array(correct, dtype=bool)
    ids = np.arange(len(bits)) if ids is None else ids
    return StoredAttack(attack, "honest", variant, "linf", eps, f"{round(eps * 255)}/255", steps,
                        None if steps is None else eps / 4, 1, random_start,
                        ExampleSet.from_ids(ids, bits), warnings or {})


def facts(n: int) -> ModelFacts:
    return ModelFacts(False, False, ExampleSet.from_ids(np.arange(n), np.ones(n, dtype=bool)), 0, n, 10)


def failed_checks(cells: list[StoredAttack], n: int) -> set[str]:
    checks = verdict_checks(cells, facts(n))
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
    assert failed_checks(flagged, n) == {"autoattack-flags", "converged"}
    assert failed_checks(healthy + [cell("pgd", 2 / 255, ones, variant="all-glimpses")], n) == set()
    # APGD breaks 10 examples PGD left correct: PGD has not converged (AutoAttack vs PGD).
    apgd = cell("autoattack-custom:apgd-ce+apgd-t", 2 / 255, [1] * 30 + [0] * 70, steps=None)
    assert failed_checks(healthy + [apgd], n) == {"converged"}
    # ... and so does a PGD with 5x the steps; 2x is no convergence probe.
    assert failed_checks(healthy + [cell("pgd", 2 / 255, [1] * 30 + [0] * 70, steps=50)], n) == {"converged"}
    assert failed_checks(healthy + [cell("pgd", 2 / 255, [1] * 30 + [0] * 70, steps=20)], n) == set()
    # A second seed of an attack breaks 10 more: the first run's randomness decided too much.
    assert failed_checks(healthy + [cell("pgd", 2 / 255, [1] * 30 + [0] * 70, variant="seed=1")], n) == {"seed"}
    assert failed_checks(healthy + [cell("pgd", 2 / 255, [1] * 39 + [0] * 61, variant="seed=1")], n) == set()
    # Square and noise at each eps against every white-box attack there.
    square = cell("autoattack-custom:square", 8 / 255, zeros, steps=1000)
    assert failed_checks(healthy + [square], n) == set()
    square = cell("autoattack-custom:square", 2 / 255, [1] * 25 + [0] * 75, steps=1000)
    assert failed_checks(healthy + [square], n) == {"square"}
    assert failed_checks(healthy + [cell("noise", 2 / 255, [1] * 25 + [0] * 75, steps=10)], n) == {"noise"}
    # Chance level: PGD at L-inf 1/2 without random start leaving 30% correct (chance 10%).
    chance = cell("pgd", 0.5, [1] * 30 + [0] * 70, steps=20, random_start=False)
    assert failed_checks(healthy + [chance], n) == {"chance-level"}
    assert failed_checks(healthy + [cell("pgd", 0.5, [1] * 5 + [0] * 95, steps=20, random_start=False)], n) == set()


def test_the_worst_case_is_the_exact_intersection_of_the_covered_attacks() -> None:
    """Per-example sets built by hand: the worst case is the examples every covered attack left
    correct; an attack on fewer examples (a limit subset) is listed as excluded, never mixed in,
    so the worst case cannot exceed any attack it covers."""
    ids = np.arange(10)
    a = cell("pgd", 4 / 255, [1, 1, 1, 1, 1, 1, 0, 0, 0, 0])           # correct {0..5}
    b = cell("fgsm", 4 / 255, [0, 1, 1, 1, 0, 0, 0, 1, 1, 0])          # correct {1, 2, 3, 7, 8}
    c = cell("autoattack-standard", 4 / 255, [1, 1, 0, 1, 1, 1, 1, 1, 1, 1], steps=None)  # correct all but 2
    small = cell("noise", 4 / 255, [0, 0, 0], ids=np.array([1, 2, 3]))   # 3 examples only, all broken
    other_eps = cell("pgd", 8 / 255, [0] * 10)
    [summary, _] = _worst_case_summaries("linf", [a, b, c, small, other_eps])
    row = summary.rows[0]
    # {0..5} & {1, 2, 3, 7, 8} & (all but 2) = {1, 3}: 2 of 10, counted by hand.
    assert (row.n, row.value) == (10, 0.2)
    worst = ExampleSet.from_detail(row.detail["examples"])
    assert list(np.flatnonzero(worst.correct)) == [1, 3] and list(np.flatnonzero(worst.members)) == list(ids)
    assert row.detail["attacks"] == [a.label, b.label, c.label] and row.detail["excluded"] == [small.label]
    assert summary.key["eps"] == 4 / 255 and summary.key["attack"] == "worst-case"
    for covered in (a, b, c):
        assert row.value <= covered.examples.n_correct / covered.examples.n


def test_anytime_worst_case_per_step_intersects_each_steps_correctness() -> None:
    """Two attacks on a 2-step model: the default one (final logits) and one aimed at step 1
    (glimpse=1). Step t's worst case is the examples every attack left correct at step t,
    counted by hand."""
    def sets(*correct: list[int]) -> list[ExampleSet]:
        return [ExampleSet.from_ids(np.arange(10), np.array(c, dtype=bool)) for c in correct]

    final_a, final_b = [1] * 6 + [0] * 4, [1] * 10
    a = cell("pgd", 4 / 255, final_a)
    a.step_examples = sets([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], final_a)          # step 1: {0, 1, 2, 3}
    b = cell("pgd", 4 / 255, final_b, variant="glimpse=1")
    b.step_examples = sets([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], final_b)          # step 1: {2, 3, 4}
    [summary] = _worst_case_summaries("linf", [a, b])
    by_step = {row.step: (row.value, row.n) for row in summary.rows}
    assert by_step == {None: (0.6, 10), 1: (0.2, 10), 2: (0.6, 10)}  # {0..5}; {2, 3}; {0..5}
