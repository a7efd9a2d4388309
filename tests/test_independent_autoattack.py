"""benchmarks/independent_autoattack.py: the official AutoAttack (pyautoattack, called directly)
against a stored worst case. On 2 images of resnet-tiny.digits.s0 it must pass a worst case that
broke every image and fail one that broke none of those the official code breaks; a rerun keeps
other models' rows and reads the finished run back."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from support import PROVENANCE, benchmark_script

from mgbench.attacks.examples import ExampleSet
from mgbench.cellkey import CellKey
from mgbench.rows import CellRecord, MetricRow
from mgbench.store import Store

MODEL = "resnet-tiny.digits.s0"


def _worst_case(path: Path, ids: np.ndarray, correct: np.ndarray) -> None:
    condition = {"type": "summary", "version": 1, "of": "attack", "threat": "linf", "attack": "worst-case",
                 "protocol": "honest", "variant": "default", "norm": "linf", "eps": 4 / 255, "eps_str": "4/255"}
    data = {"dataset": "digits", "split": "test", "preprocessing": "none", "subset": "s", "n_images": 500}
    key = CellKey(condition, data, {"model": MODEL, "arch": "resnet-tiny", "weights": "w"},
                  {"precision": "fp32", "seed": 0})
    examples = ExampleSet.from_ids(ids, correct)
    row = MetricRow("top1", float(correct.mean()), n=len(ids),
                    detail={"examples": examples.to_detail(), "attacks": ["synthetic 4/255"]})
    with Store(path) as store:
        store.write_cell(CellRecord(key, "synthetic", 1, {}, PROVENANCE, [row]))


def _run(script, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["independent_autoattack.py", "--model", MODEL, "--n", "2", *args])
    script.main()


def test_the_official_autoattack_passes_a_strong_worst_case_and_fails_a_weak_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    script = benchmark_script("independent_autoattack.py")
    _, _, ids = script.first_images(2)
    out = tmp_path / "autoattack.csv"
    out.write_text("model,n,verdict\nmgnet-tiny.digits.s0,200,pass\n")
    strong, weak = tmp_path / "strong.sqlite", tmp_path / "weak.sqlite"
    _worst_case(strong, ids, np.zeros(2, dtype=bool))
    _worst_case(weak, ids, np.ones(2, dtype=bool))
    _run(script, monkeypatch, "--store", str(strong), "--out", str(out))
    with out.open(newline="") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert rows["mgnet-tiny.digits.s0"]["verdict"] == "pass"  # another model's row is kept
    row = rows[MODEL]
    assert row["verdict"] == "pass" and row["committed_worst_case_robust"] == "0" and row["allowed_excess"] == "0"
    assert row["torch_threads"] == "1" and row["load_before"] and row["committed_attacks"] == "synthetic 4/255"
    official = int(row["official_autoattack_robust"])
    assert official < 2, "the official AutoAttack broke neither of 2 images of an undefended ResNet"
    assert len(list((tmp_path / "autoattack-runs").glob(f"{MODEL}.*.npz"))) == 1

    def again(*args: object) -> None:
        raise AssertionError("a finished setting's run is read back, not redone")

    monkeypatch.setattr(script, "official_autoattack", again)
    with pytest.raises(SystemExit, match="weaker than the official AutoAttack"):
        _run(script, monkeypatch, "--store", str(weak), "--out", str(out))
