"""Two processes under torchrun (gloo, CPU) give the numbers of one process, written once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from attack_support import write_factory

from mgbench.data import DataSpec
from mgbench.runner import RunOptions, run_suite
from mgbench.store import Store
from mgbench.suites import load_suite

# --standalone: a local rendezvous on a free port (a fixed port collides with any other run).
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, "-m", "mgbench", *args], capture_output=True, text=True, env=env, timeout=600)


def _same_numbers(single: Path, double: Path, timing: tuple[str, ...] = ("images_per_s",)) -> pd.DataFrame:
    """The two stores hold the same cells and rows (rank 0 alone wrote, once) and the same numbers:
    equal ``n``, and values within one example (the shards' batches differ in size, so a float
    kernel may round a borderline logit the other way)."""
    with Store(single) as a, Store(double) as b:
        one, two = a.frame(), b.frame()
        assert b.counts() == a.counts()
    columns = ["cell_key", "metric", "step", "value", "n"]
    left, right = (f.loc[~f.metric.isin(timing), columns].sort_values(["cell_key", "metric", "step"])
                   .reset_index(drop=True) for f in (one, two))
    assert left[["cell_key", "metric", "step", "n"]].equals(right[["cell_key", "metric", "step", "n"]])
    counted = left["n"].notna() & (left["n"] > 1) & left["value"].between(0, 1)
    gap = (left["value"] - right["value"]).abs()
    close = (gap * left["n"] <= 1 + 1e-9).where(counted, gap <= 1e-6 * (1 + left["value"].abs()))
    both_nan = left["value"].isna() & right["value"].isna()
    assert (close | both_nan).all(), pd.concat([left, right["value"]], axis=1)[~(close | both_nan)]
    assert two.device.str.contains("x2 ranks").all()
    return two


@pytest.mark.slow
def test_two_ranks_equal_one_process(tmp_path: Path, one_thread: None) -> None:
    single, double = tmp_path / "single.sqlite", tmp_path / "double.sqlite"
    # 201 images: the two shards differ in size (101 and 100), nothing is padded.
    run_suite(load_suite("clean"), models=["resnet-tiny"], data=DataSpec(limit=201), store=single,
             options=RunOptions(batch_size=64))
    result = _torchrun("run", "--suite", "clean", "--model", "resnet-tiny", "--limit", "201",
                       "--batch-size", "64", "--store", str(double))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("cell(s) computed") == 1  # only rank 0 reports
    two = _same_numbers(single, double)
    assert int(two.loc[two.metric == "top1", "n"].iloc[0]) == 201


@pytest.mark.slow
def test_two_ranks_attack_equals_one_process(tmp_path: Path, run_cli, one_thread: None) -> None:
    """Attack cells gather every rank's per-example results, and rank 0 alone computes the
    summaries (worst case, verdict with its probes) from them: the numbers of one process.
    Deterministic attacks (FGSM, PGD without random start), so the ranks' random streams do
    not matter."""
    model = write_factory(tmp_path)
    single, double = tmp_path / "single.sqlite", tmp_path / "double.sqlite"
    args = ["attack", "--eps", "8/255", "--attack", "fgsm,pgd", "--steps", "3", "--no-random-start",
            "--square-queries", "20", "--model", model, "--limit", "21", "--batch-size", "8", "--device", "cpu"]
    code, _, err = run_cli(*args, "--store", str(single))
    assert code == 0, err
    result = _torchrun(*args, "--store", str(double))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("cell(s) computed") == 1
    two = _same_numbers(single, double, ("images_per_s", "perturbation"))
    assert set(two.loc[two.metric == "per_example", "n"]) == {21}  # gathered from both ranks
    assert {"worst-case", "verdict"} <= set(two["attack"].dropna())


@pytest.mark.slow
def test_ddp_training_runs_and_rank0_writes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _torchrun("train", "--model", "resnet-tiny", "--limit", "256", "--epochs", "1",
                       "--batch-size", "64", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.pt").exists() and (out / "log.json").exists()
    assert result.stdout.count("weights:") == 1
    bad = _torchrun("train", "--model", "resnet-tiny", "--limit", "256", "--epochs", "1",
                    "--batch-size", "63", "--out", str(tmp_path / "bad"))
    # torchrun reports a failed child with its own exit code 1; the child printed our one-line error.
    assert bad.returncode != 0 and "error: --batch-size 63 (the total over all ranks) is not divisible" in bad.stderr
