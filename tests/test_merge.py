"""`mgbench results merge`: stores of separate jobs become one; identical cells once,
conflicting copies reported, summaries recomputed from every merged cell."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from support import clean_and_corruptions, one_line_error, snapshot, write_suite

from mgbench.data import DataSpec
from mgbench.runner import CellOutcome, RunOptions, run_suite
from mgbench.store import Store
from mgbench.suites import Suite

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.kernels]


def _shard(tmp_path: Path, store: Path, models: list[str]) -> list[CellOutcome]:
    suite = write_suite(tmp_path, "shard", clean_and_corruptions("fog", "1"), models=[])
    return run_suite(Suite.read(suite), models=models, data=DataSpec(limit=20), store=store,
                    options=RunOptions(device="cpu", batch_size=20))


def test_merge_shards(tmp_path: Path, run_cli) -> None:
    a, b, merged = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "merged.sqlite"
    _shard(tmp_path, a, ["resnet-tiny.digits.s0"])
    _shard(tmp_path, b, ["resnet-tiny.digits.s0", "ltpa-tiny.digits.s0"])  # resnet's cells twice
    # a job whose clean cell of ltpa disagrees with b's, and whose fog summary of ltpa too
    c = tmp_path / "c.sqlite"
    _shard(tmp_path, c, ["ltpa-tiny.digits.s0"])
    conn = sqlite3.connect(c)
    conn.execute("UPDATE results SET value = value / 2 WHERE threat = 'clean' AND metric = 'top1'")
    conn.execute("UPDATE results SET value = value / 2 WHERE corruption = 'mean' AND severity IS NULL")
    conn.commit()
    conn.close()
    with Store(b) as store:
        cells_b = store.counts()[0]
    before = snapshot(a, b, c)

    code, out, err = run_cli("results", "merge", str(a), str(b), str(c), "--into", str(merged))
    assert code == 0, err
    assert snapshot(a, b, c) == before  # sources only read
    conflicts = [line for line in err.splitlines() if line.startswith("conflict:")]
    assert len(conflicts) == 1 and "ltpa-tiny.digits.s0" in conflicts[0] and "clean" in conflicts[0]
    assert "summary dropped" not in err and "1 conflict(s)" in out
    with Store(merged) as store:
        frame = store.frame()
    # b holds every cell: all of them once
    assert frame["cell_key"].nunique() == cells_b
    assert not frame.duplicated(["cell_key", "metric", "step"]).any()
    clean = frame[(frame["threat"] == "clean") & (frame["metric"] == "top1") & frame["step"].isna()]
    with Store(b) as store:
        original = store.frame()
    assert sorted(clean["value"]) == sorted(original[(original["threat"] == "clean") & (original["metric"] == "top1")
                                                     & original["step"].isna()]["value"])  # the first copy kept
    # c's summary disagreed with b's: recomputed from the merged cells, it is b's again (the cells agree)
    means = ["model", "corruption", "metric", "value"]
    merged_means = frame[frame["corruption"] == "mean"][means].sort_values(means).reset_index(drop=True)
    b_means = original[original["corruption"] == "mean"][means].sort_values(means).reset_index(drop=True)
    pd.testing.assert_frame_equal(merged_means, b_means)

    # a rerun of the suite on the merged store computes no cell and changes no summary
    outcomes = _shard(tmp_path, merged, ["resnet-tiny.digits.s0", "ltpa-tiny.digits.s0"])
    assert not any(o.computed for o in outcomes)
    with Store(merged) as store:
        assert store.counts()[0] == cells_b


ATTACK = {"type": "attack", "norm": "linf", "eps": "8/255", "steps": 5, "loss": "ce", "square_queries": 20}


def _attack(store: Path, attack: str) -> None:
    suite = Suite("attack-shard", "", "digits", [], [{**ATTACK, "attack": attack}], Path("<test>"))
    run_suite(suite, models=["resnet-tiny.digits.s0"], data=DataSpec(limit=32), store=store,
             options=RunOptions(device="cpu", batch_size=32))


def _summary_rows(store: Path) -> pd.DataFrame:
    with Store(store) as results:
        frame = results.frame()
    kinds = frame["condition_json"].map(lambda c: json.loads(c)["type"])
    rows = frame[kinds == "summary"][["cell_key", "attack", "eps", "metric", "step", "value", "n", "detail"]]
    return rows.sort_values(["cell_key", "metric", "step"], na_position="first").reset_index(drop=True)


def test_merge_recomputes_worst_cases_and_verdicts(tmp_path: Path, run_cli) -> None:
    """Two jobs attack one model with different attacks: each stored a worst case and a verdict
    of its own half. The merge recomputes both from every merged cell, exactly as one job that
    ran both attacks on one store computes them."""
    fgsm, pgd, both = tmp_path / "fgsm.sqlite", tmp_path / "pgd.sqlite", tmp_path / "both.sqlite"
    _attack(fgsm, "fgsm")
    _attack(pgd, "pgd")
    _attack(both, "fgsm")
    _attack(both, "pgd")
    merged = tmp_path / "merged.sqlite"
    code, out, err = run_cli("results", "merge", str(fgsm), str(pgd), "--into", str(merged))
    assert code == 0, err
    assert "summary dropped" not in err and "0 conflict(s)" in out
    expected, got = _summary_rows(both), _summary_rows(merged)
    assert (expected["metric"] == "unreliable").sum() == 1  # a verdict, recomputed from the stored facts
    worst = got[(got["attack"] == "worst-case") & got["step"].isna()]
    assert {a.split()[0] for a in json.loads(worst["detail"].item())["attacks"]} >= {"fgsm", "pgd"}
    pd.testing.assert_frame_equal(got, expected)


def test_merge_refuses_bad_sources(tmp_path: Path, run_cli) -> None:
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    code, _, err = run_cli("results", "merge", str(foreign), "--into", str(tmp_path / "m.sqlite"))
    one_line_error(code, err)
    assert not (tmp_path / "m.sqlite").exists()
    code, _, err = run_cli("results", "merge", str(tmp_path / "missing.sqlite"), "--into", str(tmp_path / "m.sqlite"))
    assert code == 2 and "no results store" in err


def _doctor_summaries(store: Path, change: dict, halve: bool) -> None:
    """Rewrite the stored corruption summaries' condition keys (and halve their numbers)."""
    conn = sqlite3.connect(store)
    for cell_key, text in conn.execute("SELECT cell_key, condition_json FROM cells").fetchall():
        condition = json.loads(text)
        if condition["type"] == "summary" and condition["of"] == "corruption":
            conn.execute("UPDATE cells SET condition_json = ? WHERE cell_key = ?",
                         (json.dumps({**condition, **change}, sort_keys=True), cell_key))
            if halve:
                conn.execute("UPDATE results SET value = value / 2 WHERE cell_key = ?", (cell_key,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("change, said", [
    ({"version": 1}, None),  # written by an older mgbench: not recomputed
    ({"backend": "folder", "imagenet_c_root": "/nonexistent/imagenet-c"}, "summaries not recomputed"),
])
def test_summaries_that_cannot_be_recomputed_are_kept_or_dropped(tmp_path: Path, run_cli, change: dict,
                                                                 said: str | None) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    _shard(tmp_path, a, ["resnet-tiny.digits.s0"])
    shutil.copy(a, b)
    _doctor_summaries(a, change, halve=False)
    _doctor_summaries(b, change, halve=True)
    code, out, err = run_cli("results", "merge", str(a), str(a), "--into", str(tmp_path / "same.sqlite"))
    assert code == 0 and "summary dropped" not in err  # agreeing copies are kept
    code, out, err = run_cli("results", "merge", str(a), str(b), "--into", str(tmp_path / "m.sqlite"))
    assert code == 0, err
    dropped = [line for line in err.splitlines() if line.startswith("summary dropped")]
    summaries = set(_summary_rows(a)["cell_key"])
    assert len(dropped) == len(summaries) == 3  # fog, severity 1, and the mean over both
    assert (said in err) if said else ("not recomputed" not in err)
    assert _summary_rows(tmp_path / "m.sqlite").empty
