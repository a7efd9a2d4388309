"""Several writers on one store: processes running the same cells at once both finish, every
cell is stored once, and a copy finished by another writer is kept rather than clashing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import PROVENANCE, clean_and_corruptions, write_suite

from mgbench.cellkey import CellKey
from mgbench.provenance import REPO_ROOT
from mgbench.rows import CellRecord, MetricRow
from mgbench.store import Store


def test_a_second_writer_keeps_the_finished_cell(store_path: Path) -> None:
    key = CellKey({"type": "clean", "version": 1, "threat": "clean"}, {"dataset": "digits"}, {"model": "m"}, {})
    with Store(store_path) as first, Store(store_path) as second:
        assert not second.has_cell(key.hash)  # both decided to compute it
        assert first.write_cell(CellRecord(key, "a", None, {}, PROVENANCE, [MetricRow("top1", 0.5)]))
        assert not second.write_cell(CellRecord(key, "b", None, {}, PROVENANCE, [MetricRow("top1", 0.5)]))
        assert second.counts() == (1, 1)


def test_two_processes_run_the_same_cells(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, "shared", clean_and_corruptions("fog,contrast", "1-2"),
                        models=["resnet-tiny.digits.s0"], limit=40)
    store = tmp_path / "shared.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mgbench", "run", "--suite", str(suite), "--store", str(store),
               "--device", "cpu", "--batch-size", "20"]
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "IntegrityError" not in err
    with Store(store) as db:
        frame = db.frame()
    cells = frame.drop_duplicates("cell_key")
    # compute, clean, 4 corruption cells, and summaries (2 per corruption, 2 per severity, 1 mean)
    kinds = cells["condition_json"].str.extract(r'"type":"(\w+)"')[0]
    assert kinds.value_counts().to_dict() == {"corruption": 4, "summary": 5, "compute": 1, "clean": 1}
    assert not frame.duplicated(["cell_key", "metric", "step"]).any()
