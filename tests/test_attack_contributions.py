"""benchmarks/attack_contributions.py: what each attack group alone broke, recomputed from
per-example cells it reads with sqlite3 (written here by mgbench's store and bitset encoder, so
the two codecs are checked against each other), and AutoAttack's cascade stages; a run for some
models rewrites only their rows at that eps."""

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
IDS = np.arange(0, 1000, 2)  # 500 dataset indices, as a fixed seeded subset would have


def _attack(store: Store, attack: str, variant: str, correct: np.ndarray, extra: list[MetricRow] = ()) -> None:
    condition = {"type": "attack", "version": 2, "threat": "linf", "attack": attack, "protocol": "honest",
                 "variant": variant, "norm": "linf", "eps": 4 / 255, "eps_str": "4/255"}
    data = {"dataset": "digits", "split": "test", "preprocessing": "none", "subset": "s", "n_images": 500}
    key = CellKey(condition, data, {"model": MODEL, "arch": "resnet-tiny", "weights": "w"},
                  {"precision": "fp32", "seed": 0})
    examples = ExampleSet.from_ids(IDS, correct)
    rows = [MetricRow("top1", correct.mean(), n=500), MetricRow("per_example", correct.mean(), n=500,
                                                                 detail=examples.to_detail()), *extra]
    store.write_cell(CellRecord(key, "synthetic", 1, {}, PROVENANCE, rows))


def test_each_group_is_credited_with_what_it_alone_broke(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pgd, margin, apgd, again, off, aa = (rng.random(500) < p for p in (0.6, 0.6, 0.45, 0.45, 0.5, 0.4))
    cascade = [MetricRow(f"autoattack:{stage}", k / 500, n=500)
               for stage, k in (("clean", 490), ("apgd-ce", 230), ("apgd-t", 210), ("fab-t", 209), ("square", 205))]
    store = tmp_path / "r.sqlite"
    with Store(store) as db:
        _attack(db, "pgd", "default", pgd)
        _attack(db, "pgd-margin", "default", margin)
        _attack(db, "autoattack-custom:apgd-ce+apgd-t", "default", apgd)
        _attack(db, "autoattack-custom:apgd-ce+apgd-t", "seed=1", again)  # the seed probe: APGD's own group
        _attack(db, "autoattack-custom:apgd-ce+apgd-t", "rescaler-off", off)
        _attack(db, "autoattack-standard", "default", aa, cascade)
    script = benchmark_script("attack_contributions.py")
    rows = {row["group"]: row for row in script.contributions(store, MODEL, "4/255")}
    worst = pgd & margin & apgd & again & off & aa
    groups = {"PGD": pgd & margin, "APGD-CE+T": apgd & again, "rescaler-off": off, "AutoAttack standard": aa}
    for name, kept in groups.items():
        others = np.logical_and.reduce([v for k, v in groups.items() if k != name])
        assert rows[name]["group_robust"] == kept.sum()
        assert rows[name]["broken_only_by_group"] == (others & ~kept).sum()
        assert rows[name]["worst_case_robust"] == worst.sum() and rows[name]["n"] == 500
    assert rows["PGD"]["cells"] == rows["APGD-CE+T"]["cells"] == 2
    added = {stage: rows[f"AutoAttack standard cascade: {stage}"]["broken_only_by_group"]
             for stage in ("apgd-ce", "apgd-t", "fab-t", "square")}
    assert added == {"apgd-ce": 260, "apgd-t": 20, "fab-t": 1, "square": 4}


def test_a_run_for_one_model_keeps_the_other_models_and_eps_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "r.sqlite"
    with Store(store) as db:
        _attack(db, "pgd", "default", np.arange(500) % 2 == 0)
        _attack(db, "fgsm", "default", np.arange(500) % 3 == 0)
    out = tmp_path / "contributions.csv"
    out.write_text("model,eps,n,group,cells,group_robust,broken_only_by_group,worst_case_robust\n"
                   "mgnet-tiny.digits.s0,4/255,500,PGD,2,300,3,280\n"
                   f"{MODEL},8/255,500,PGD,2,100,1,90\n"
                   f"{MODEL},4/255,500,stale,1,1,1,1\n")
    monkeypatch.setattr(sys, "argv", ["attack_contributions.py", "--model", MODEL, "--store", str(store),
                                      "--out", str(out)])
    benchmark_script("attack_contributions.py").main()
    with out.open(newline="") as handle:
        rows = [(row["model"], row["eps"], row["group"]) for row in csv.DictReader(handle)]
    assert rows == [("mgnet-tiny.digits.s0", "4/255", "PGD"), (MODEL, "8/255", "PGD"),
                    (MODEL, "4/255", "FGSM"), (MODEL, "4/255", "PGD")]
