"""One identity for every result: cells and summaries of different run options, suites, image
subsets and code versions coexist in one store; a cached rerun computes nothing; a migrated old
store keeps its leaderboard numbers; corruption summaries cover one named set only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from support import clean_and_corruptions, write_suite

from mgbench import runner
from mgbench.conditions import Clean
from mgbench.corruptions.condition import OnTheFlyCorruption
from mgbench.corruptions.names import EXTRA
from mgbench.data import DataSpec
from mgbench.report.leaderboard import collect, summary_frame
from mgbench.runner import RunOptions, run_suite
from mgbench.store import SCHEMA_VERSION, Store
from mgbench.suites import Suite

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = "resnet-tiny.digits.s0"
DATA = Path(__file__).parent / "data"


def _suite(tmp_path: Path, name: str, body: str) -> Suite:
    return Suite.read(write_suite(tmp_path, name, body, models=[MODEL]))


def _run(suite: Suite, store: Path, limit: int = 20, **options) -> list[runner.CellOutcome]:
    return run_suite(suite, data=DataSpec(limit=limit), store=store,
                    options=RunOptions(device="cpu", batch_size=limit, **options))


def _summaries(frame: pd.DataFrame) -> pd.DataFrame:
    kinds = frame["condition_json"].map(lambda c: json.loads(c)["type"])
    return frame[kinds == "summary"]


def test_precisions_suites_subsets_and_versions_coexist(tmp_path: Path, store_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite(tmp_path, "a", clean_and_corruptions("fog", "1"))
    _run(suite, store_path)
    with Store(store_path) as store:
        fp32 = store.frame()
    _run(suite, store_path, precision="bf16")
    # Another suite asking for the same cells shares them (nothing computed) and overwrites no summary.
    other = _run(_suite(tmp_path, "b", clean_and_corruptions("fog", "1")), store_path)
    assert not any(o.computed for o in other if o.condition["type"] != "summary")
    _run(suite, store_path, limit=30)  # another image subset
    monkeypatch.setattr(Clean, "condition_version", Clean.condition_version + 1)
    bumped = _run(suite, store_path)  # a behaviour change of the clean condition recomputes it
    assert [o.computed for o in bumped if o.condition["type"] == "clean"] == [True]
    assert not any(o.computed for o in bumped if o.condition["type"] == "corruption")

    with Store(store_path) as store:
        frame = store.frame()
    clean = frame[(frame["threat"] == "clean") & (frame["metric"] == "top1") & frame["step"].isna()]
    # fp32 and bf16 on 20 images, fp32 on 30 images, the bumped version on 20 images: four cells
    assert len(clean) == 4
    assert sorted(clean["precision"]) == ["bf16", "fp32", "fp32", "fp32"]
    assert sorted(json.loads(c)["version"] for c in clean["condition_json"]) == [1, 1, 1, 2]
    # each precision keeps its own corruption summaries: the fp32 ones were not replaced by bf16's
    means = _summaries(frame)
    means = means[(means["corruption"] == "mean") & means["severity"].isna() & (means["metric"] == "mean_top1")]
    assert len(means) == 3  # fp32 and bf16 on 20 images, fp32 on 30 images
    assert sorted(means["precision"]) == ["bf16", "fp32", "fp32"]
    first = fp32[(fp32["corruption"] == "mean") & fp32["severity"].isna() & (fp32["metric"] == "mean_top1")]
    assert first["cell_key"].item() in set(means["cell_key"])
    # the leaderboard shows the bf16 run as an entry of its own, never mixed into fp32's
    assert sorted(e.model for e in collect(frame)) == [MODEL, f"{MODEL} [bf16]"]


def test_rerun_with_everything_cached_computes_nothing(tmp_path: Path, store_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite(tmp_path, "c", clean_and_corruptions("fog,contrast", "1-2"))
    _run(suite, store_path)

    def refuse(*args, **kwargs):
        raise AssertionError("a cached cell was computed again")

    monkeypatch.setattr(runner, "evaluate_condition", refuse)
    monkeypatch.setattr(runner.flops, "profile", refuse)
    again = _run(suite, store_path)
    assert not any(o.computed for o in again)  # nor a summary: their numbers did not change


def test_corruption_means_cover_one_named_set(tmp_path: Path, store_path: Path) -> None:
    """Two runs with different sets leave two labelled partial summaries, never a mix, and the
    leaderboard's mean is that of the complete named set only."""
    _run(_suite(tmp_path, "fog", clean_and_corruptions("fog", "1-2")), store_path)
    _run(_suite(tmp_path, "noise", clean_and_corruptions("gaussian_noise", "1-2")), store_path)
    with Store(store_path) as store:
        frame = store.frame()
    overall = _summaries(frame)
    overall = overall[(overall["corruption"] == "mean") & overall["severity"].isna()
                      & (overall["metric"] == "mean_top1")]
    assert len(overall) == 2
    cells = frame[(frame["threat"] == "corruption") & (frame["metric"] == "top1") & frame["step"].isna()]
    for row in overall.itertuples():
        detail = json.loads(row.detail)
        assert detail["partial"] is True and any("not a named set" in n for n in detail["notes"])
        mine = cells[cells["corruption"] == json.loads(row.condition_json)["corruptions"]]
        assert row.value == pytest.approx(mine["value"].mean())  # by hand: that set's two cells only
    entry = collect(frame)[0]
    assert entry.corruption_set.endswith("(partial)")

    # the 4 extra corruptions at severity 1: a complete named set, preferred over the partial ones
    _run(_suite(tmp_path, "extra", clean_and_corruptions("extra", "1")), store_path)
    with Store(store_path) as store:
        frame = store.frame()
    entry = collect(frame)[0]
    cells = frame[(frame["threat"] == "corruption") & (frame["metric"] == "top1") & frame["step"].isna()
                  & frame["corruption"].isin(EXTRA)]
    assert len(cells) == 4
    assert entry.corruption_set == "extra"
    assert entry.corruption_mean.value == pytest.approx(cells["value"].mean())


def test_mce_is_undefined_when_the_normaliser_lacks_cells(tmp_path: Path, store_path: Path) -> None:
    baseline = _suite(tmp_path, "base", clean_and_corruptions("fog", "1"))
    run_suite(baseline, models=["ltpa-tiny.digits.s0"], data=DataSpec(limit=20), store=store_path,
             options=RunOptions(device="cpu", batch_size=20))
    body = clean_and_corruptions("fog,contrast", "1") + 'mce_baseline = "ltpa-tiny.digits.s0"\n'
    _run(_suite(tmp_path, "mine", body), store_path)
    with Store(store_path) as store:
        frame = store.frame(model=MODEL)
    assert not frame["metric"].isin(["mce", "ce", "relative_mce"]).any()
    overall = frame[(frame["corruption"] == "mean") & frame["severity"].isna() & (frame["metric"] == "mean_top1")]
    notes = json.loads(overall["detail"].item())["notes"]
    assert any("mCE undefined" in n and "contrast s1" in n for n in notes), notes


def test_bumped_corruption_version_recomputes(tmp_path: Path, store_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite(tmp_path, "v", clean_and_corruptions("fog", "1"))
    _run(suite, store_path)
    monkeypatch.setattr(OnTheFlyCorruption, "condition_version", OnTheFlyCorruption.condition_version + 1)
    again = _run(suite, store_path)
    assert [o.computed for o in again if o.condition["type"] == "corruption"] == [True]
    assert not any(o.computed for o in again if o.condition["type"] == "clean")


def test_migrated_store_keeps_its_leaderboard(tmp_path: Path) -> None:
    """A schema-0 store (mgnet-tiny.digits.s0' cells of the reference results before schema 2, with
    the per-example details dropped) migrates in place; its leaderboard numbers are those the
    leaderboard code of that time printed (tests/data/store_v1_mgnet_leaderboard.csv)."""
    path = tmp_path / "old.sqlite"
    shutil.copyfile(DATA / "store_v1_mgnet.sqlite", path)
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        frame = store.frame()
        assert frame["condition_json"].notna().all() and frame["cell_group"].notna().all()
    new = summary_frame(collect(frame)).set_index("model")
    old = pd.read_csv(DATA / "store_v1_mgnet_leaderboard.csv").set_index("model")
    numeric = [c for c in old.columns if pd.api.types.is_float_dtype(old[c])]
    assert "worst-case linf 4/255" in numeric and "mce" in numeric
    for column in numeric:
        assert new.loc[old.index, column].astype(float).tolist() == pytest.approx(old[column].tolist(),
                                                                                  nan_ok=True), column
    assert new.loc[old.index, "reasons"].tolist() == old["reasons"].tolist()
    # reopening finds the migrated store: nothing to do, the same keys
    with Store(path) as store:
        assert store.frame()["cell_key"].tolist() == frame["cell_key"].tolist()


def test_a_migrated_cell_is_not_recomputed(tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell written before schema 2 gets the key the new code computes for the same cell; a
    migrated summary is replaced by its recomputation, not duplicated. Such cells were written by
    version 1 of every condition type: the corruption condition (version 2 since) is pinned to
    1 here, as the code of that time; with today's version the migrated cell is recomputed."""
    import sqlite3

    monkeypatch.setattr(OnTheFlyCorruption, "condition_version", 1)
    suite = _suite(tmp_path, "m", clean_and_corruptions("fog", "1"))
    _run(suite, store_path)
    with Store(store_path) as store:
        before = store.frame()
    # turn the store back into a schema-0 one: old keys, no canonical columns, old-style configs
    conn = sqlite3.connect(store_path)
    conn.execute("PRAGMA foreign_keys = OFF")
    for cell_key, config in conn.execute("SELECT cell_key, config FROM cells").fetchall():
        config = json.loads(config)
        config["condition"] = {k: v for k, v in config["condition"].items() if k not in ("type", "version", "of")}
        conn.execute("UPDATE cells SET config = ? WHERE cell_key = ?", (json.dumps(config), cell_key))
    for column in ("condition_json", "data_json", "model_json", "options_json", "cell_group", "precision"):
        conn.execute(f"ALTER TABLE cells DROP COLUMN {column}")
    conn.execute("UPDATE results SET cell_key = 'old-' || cell_key")
    conn.execute("UPDATE cells SET cell_key = 'old-' || cell_key")
    conn.execute("PRAGMA user_version = 0")
    conn.commit()
    conn.close()
    again = _run(suite, store_path)
    assert not any(o.computed for o in again if o.condition["type"] != "summary")
    with Store(store_path) as store:
        after = store.frame()
    assert set(after["cell_key"]) == set(before["cell_key"])  # the same keys: summaries of version 1 superseded
    assert len(after) == len(before)
    monkeypatch.undo()
    today = _run(suite, store_path)
    assert [o.computed for o in today if o.condition["type"] == "corruption"] == [True]


ATTACK = """
    [[conditions]]
    type = "attack"
    attack = "{attack}"
    norm = "linf"
    eps = "4/255"
    steps = 5
    loss = "ce"
    checks = false
"""


def test_two_suites_worst_case_includes_both(tmp_path: Path, store_path: Path) -> None:
    """The worst case at an eps covers every stored honest attack on the model, data and subset,
    whichever suite wrote it; it can never exceed an attack it covers."""
    _run(_suite(tmp_path, "fgsm-suite", ATTACK.format(attack="fgsm")), store_path)
    _run(_suite(tmp_path, "pgd-suite", ATTACK.format(attack="pgd")), store_path)
    with Store(store_path) as store:
        frame = store.frame(metric="top1")
    worst = frame[frame["attack"] == "worst-case"]
    assert len(worst) == 1  # one summary key for both suites
    attacks = frame[frame["attack"].isin(["fgsm", "pgd"])].set_index("attack")["value"]
    detail = json.loads(worst["detail"].item())
    assert len(detail["attacks"]) == 2 and {a.split()[0] for a in detail["attacks"]} == {"fgsm", "pgd"}
    assert worst["value"].item() <= attacks.min()
