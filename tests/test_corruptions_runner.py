"""The corruption condition through the runner and the CLI, ImageNet100-C generation and the
folder backend, on real data (the embedded digits, a tiny ImageNet-style folder)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm
from support import one_line_error, sql_rows, write_suite

from mgbench.corruptions.generate import JPEG_QUALITY, generate_imagenet_c
from mgbench.corruptions.names import seed_for
from mgbench.corruptions.reference import corrupt_one
from mgbench.data import DataSpec, class_list
from mgbench.data.folders import PREPROCESSING
from mgbench.runner import RunOptions, run_suite
from mgbench.store import Store
from mgbench.suites import Suite

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)

# Two genuinely different models of one architecture: the zoo's trained weights and a random
# initialisation (seed 2), so CE = model errors / baseline errors is far from 1 and swapping the
# two cannot pass.
FACTORY = '''
import torch
from mgbench.models import load_model


def first():
    return load_model("resnet-tiny.digits.s0").module


def second():
    return load_model("resnet-tiny", init_seed=2).module


def imagenet():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 100))
'''


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(FACTORY)
    return path


def _is_cell(condition: dict) -> bool:
    """A corruption x severity cell (summaries carry the corruption set instead)."""
    return condition.get("threat") == "corruption" and "corruptions" not in condition


def _metric(frame, metric: str, **where) -> dict:
    rows = frame[(frame["metric"] == metric) & frame["step"].isna()]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows


def test_runner_corrupts_stores_and_summarises(tmp_path: Path, factory: Path, store_path: Path) -> None:
    suite = Suite.read(write_suite(tmp_path, "corr", """
        [[conditions]]
        type = "clean"

        [[conditions]]
        type = "corruption"
        corruptions = ["gaussian_noise", "motion_blur"]
        severities = "1,5"
        scaling = "resample224"
    """, models=[]))
    data = DataSpec(name="digits", limit=24)
    options = RunOptions(device="cpu", batch_size=24, seed=0)
    first, second = f"{factory}:first", f"{factory}:second"
    override = {"corruption": {"mce_baseline": second}}
    run_suite(suite, models=[second], data=data, store=store_path, options=options, overrides=override)
    outcomes = run_suite(suite, models=[first], data=data, store=store_path, options=options, overrides=override)
    assert sum(o.computed for o in outcomes if _is_cell(o.condition)) == 4

    with Store(store_path) as store:
        frame = store.frame()
    cells = _metric(frame, "top1", threat="corruption")
    assert len(cells) == 8 and set(cells["n"]) == {24}
    assert set(cells["backend"]) == {"torch"}
    config = json.loads(cells.iloc[0]["config"])
    assert config["condition"]["scaling"] == "resample224"

    mine = cells[cells["model"] == first].set_index(["corruption", "severity"])["value"]
    base = cells[cells["model"] == second].set_index(["corruption", "severity"])["value"]
    clean = _metric(frame, "top1", threat="clean").set_index("model")["value"]

    summary = frame[(frame["model"] == first) & frame["step"].isna()]
    overall = summary[(summary["corruption"] == "mean") & summary["severity"].isna()].set_index("metric")["value"]
    assert overall["mean_top1"] == pytest.approx(mine.mean())
    # CE and mCE by hand from the stored accuracies of two different models.
    assert (mine > base).all(), "the trained model should beat the random baseline on every cell"
    ce = {c: (1 - mine[c]).sum() / (1 - base[c]).sum() for c in ("gaussian_noise", "motion_blur")}
    assert all(value < 0.9 for value in ce.values()), ce
    stored_ce = summary[summary["metric"] == "ce"].set_index("corruption")["value"]
    for name, value in ce.items():
        assert stored_ce[name] == pytest.approx(value)
    assert overall["mce"] == pytest.approx(np.mean(list(ce.values())))
    with np.errstate(divide="ignore", invalid="ignore"):  # a random baseline may lose nothing to a corruption
        rce = {c: ((1 - mine[c]) - (1 - clean[first])).sum() / ((1 - base[c]) - (1 - clean[second])).sum()
               for c in ce}
    finite = [v for v in rce.values() if np.isfinite(v)]
    if len(finite) == len(rce):
        assert overall["relative_mce"] == pytest.approx(np.mean(finite))
    per_severity = summary[(summary["corruption"] == "mean") & summary["severity"].notna()]
    assert per_severity.set_index("severity")["value"][5] == pytest.approx(mine.xs(5, level="severity").mean())
    normaliser = json.loads(summary[summary["metric"] == "mce"].iloc[0]["detail"])["normaliser"]
    assert normaliser["model"] == second

    # Resumable: a second run computes no corruption cell, and the numbers stay.
    again = run_suite(suite, models=[first], data=data, store=store_path, options=options, overrides=override)
    assert not any(o.computed for o in again if _is_cell(o.condition))


def test_missing_baseline_skips_mce_with_a_note(tmp_path: Path, factory: Path, store_path: Path) -> None:
    suite = Suite.read(write_suite(tmp_path, "corr", """
        [[conditions]]
        type = "corruption"
        corruptions = "contrast"
        severities = [2]
        backend = "reference"
        workers = 0
        mce_baseline = "resnet-tiny.nowhere"
    """, models=[]))
    run_suite(suite, models=[f"{factory}:first"], data=DataSpec(limit=16), store=store_path,
             options=RunOptions(device="cpu", batch_size=16))
    with Store(store_path) as store:
        frame = store.frame()
    assert (frame["metric"] == "mce").sum() == 0
    overall = frame[(frame["metric"] == "mean_top1") & (frame["corruption"] == "mean") & frame["severity"].isna()]
    notes = json.loads(overall.iloc[0]["detail"])["notes"]
    assert any("resnet-tiny.nowhere" in note for note in notes)
    assert set(frame.loc[frame["threat"] == "corruption", "backend"].dropna()) == {"reference"}


ORDER_SUITE = """
    [[conditions]]
    type = "clean"

    [[conditions]]
    type = "corruption"
    corruptions = ["contrast", "fog"]
    severities = [1]
    mce_baseline = "resnet-tiny.digits.s0"
"""
MGNET, BASELINE = "mgnet-tiny.digits.s0", "resnet-tiny.digits.s0"
FINISHED = "SELECT rowid, cell_key, finished_at FROM cells WHERE model = ? ORDER BY cell_key"


def _summary_table(store: Path, model: str) -> list[tuple]:
    """A model's stored corruption summary rows, as sqlite3 reads them (no mgbench code)."""
    return sorted(sql_rows(
        store, "SELECT c.condition_json, r.metric, IFNULL(r.step, -1), r.value, r.n, r.detail FROM results r "
        "JOIN cells c USING (cell_key) WHERE r.model = ? AND c.condition_json LIKE '%\"type\":\"summary\"%'", model))


def test_the_order_of_a_model_and_its_mce_baseline_does_not_matter(tmp_path: Path) -> None:
    """Issue 28: mgnet run before its mCE normaliser had no mCE, and running the normaliser
    afterwards did not add it. Now the normaliser's run recomputes mgnet's stored summary, to the
    numbers of the other order, and by Hendrycks' formula from the stored accuracies."""
    suite = Suite.read(write_suite(tmp_path, "corr", ORDER_SUITE, models=[]))
    data, options = DataSpec(name="digits", limit=32), RunOptions(device="cpu", batch_size=32, seed=0)
    late, early = tmp_path / "late.sqlite", tmp_path / "early.sqlite"

    run_suite(suite, models=[MGNET], data=data, store=late, options=options)
    before = _summary_table(late, MGNET)
    assert before and not any(metric in ("ce", "mce") for _, metric, *_ in before)
    notes = [json.loads(detail)["notes"] for _, metric, step, *_, detail in before
             if metric == "mean_top1" and step == -1 and "notes" in json.loads(detail)]  # the overall cell's
    undefined = f"mCE undefined: the normaliser {BASELINE} lacks 2 of the set's 2 cells"
    assert len(notes) == 1 and any(note.startswith(undefined) for note in notes[0]), notes

    outcomes = run_suite(suite, models=[BASELINE], data=data, store=late, options=options)
    assert {o.model for o in outcomes} == {BASELINE}  # what the run returns is its own model's cells

    cells = sql_rows(late, "SELECT model, corruption, IFNULL(step, -1), value FROM results "
                           "WHERE threat = 'corruption' AND metric = 'top1' AND severity = 1")
    stored = dict(sql_rows(late, "SELECT IFNULL(step, -1), value FROM results WHERE model = ? AND metric = 'mce'",
                           MGNET))
    finished = sql_rows(late, FINISHED, MGNET)
    accuracy = {(model, corruption, step): value for model, corruption, step, value in cells}
    corruptions = ("contrast", "fog")
    steps = sorted({step for model, _, step in accuracy if model == MGNET})
    assert len(steps) > 1 and -1 in steps  # an anytime model: one row per glimpse and the final output
    # Hendrycks: CE_c = sum_s E_{s,c} / sum_s E^base_{s,c} (one severity here), mCE = mean_c CE_c,
    # every step of mgnet against the baseline's final output.
    base_errors = [1 - accuracy[BASELINE, c, -1] for c in corruptions]
    assert all(e > 0 for e in base_errors), "the baseline must err on every corruption for CE to be finite"
    expected = {step: np.mean([(1 - accuracy[MGNET, c, step]) / e for c, e in zip(corruptions, base_errors)])
                for step in steps}
    assert stored.keys() == expected.keys()
    for step, value in expected.items():
        assert stored[step] == pytest.approx(value, rel=1e-12), step

    # The other order gives the same stored summaries, for both models.
    run_suite(suite, models=[BASELINE], data=data, store=early, options=options)
    run_suite(suite, models=[MGNET], data=data, store=early, options=options)
    for model in (MGNET, BASELINE):
        assert _summary_table(late, model) == _summary_table(early, model), model

    # Rewritten only when the rows change: a run that adds other cells of the baseline (severity 2)
    # recomputes mgnet's summaries, to the same rows, and touches none of mgnet's cells (a rewrite
    # is a new row of the cells table: a new rowid).
    other = Suite.read(write_suite(tmp_path, "other", """
        [[conditions]]
        type = "corruption"
        corruptions = "fog"
        severities = [2]
    """, models=[]))
    added = run_suite(other, models=[BASELINE], data=data, store=late, options=options)
    assert any(o.computed and _is_cell(o.condition) for o in added)
    assert sql_rows(late, FINISHED, MGNET) == finished


def _fake_imagenet(root: Path) -> None:
    """One small JPEG per class of the mgnet list, in val/WNID/."""
    rng = np.random.default_rng(0)
    for index, wnid in enumerate(class_list("mgnet")):
        folder = root / "val" / wnid
        folder.mkdir(parents=True)
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        image[:, : 8 + index % 50] = (index * 2) % 255
        Image.fromarray(image).save(folder / f"ILSVRC2012_val_{index:08d}.JPEG", quality=95)


@pytest.mark.slow
def test_generate_imagenet100_c_and_evaluate_the_folder(tmp_path: Path, factory: Path, run_cli) -> None:
    root, out = tmp_path / "imagenet", tmp_path / "imagenet-c"
    _fake_imagenet(root)
    report = generate_imagenet_c(root, out, ["gaussian_noise", "fog"], [2], workers=0, limit=12)
    assert (report.images, report.written, report.skipped) == (12, 24, 0)
    report = generate_imagenet_c(root, out, ["gaussian_noise", "fog"], [2], workers=0)
    assert (report.images, report.written, report.skipped) == (100, 176, 24)
    files = sorted(out.glob("*/*/*/*.JPEG"))
    assert len(files) == 200 and {f.parts[-3] for f in files} == {"2"}
    # A file is the reference corruption of the Resize 256 + CenterCrop 224 image, as JPEG 85.
    target = files[0]
    corruption, relative = target.parts[-4], f"{target.parts[-2]}/{target.name}"
    with Image.open(root / "val" / relative) as picture:
        clean = PREPROCESSING["resize256-crop224"]()(picture.convert("RGB")).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(corrupt_one(clean, corruption, 2, seed_for(relative, corruption, 2))).save(
        buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    assert target.read_bytes() == buffer.getvalue()
    # Resumable: nothing left to do; a removed file is made again.
    target.unlink()
    again = generate_imagenet_c(root, out, ["gaussian_noise", "fog"], [2], workers=0)
    assert (again.written, again.skipped) == (1, 199) and target.read_bytes() == buffer.getvalue()

    # The folder backend reads it (a seeded subset of 12 images).
    suite = write_suite(tmp_path, "corr", """
        [[conditions]]
        type = "corruption"
        corruptions = "gaussian_noise,fog"
        severities = "2"
    """, models=[])
    store = tmp_path / "folder.sqlite"
    code, out_text, err = run_cli("run", "--suite", str(suite), "--model", f"{factory}:imagenet", "--data",
                                  "imagenet100", "--data-root", str(root), "--limit", "12", "--backend", "folder",
                                  "--imagenet-c-root", str(out), "--store", str(store), "--device", "cpu",
                                  "--workers", "0")
    assert code == 0, err
    with Store(store) as db:
        frame = db.frame(threat="corruption", metric="top1")
    assert len(frame) == 2 and set(frame["n"]) == {12} and set(frame["backend"]) == {"folder"}
    assert set(frame["preprocessing"]) == {"crop224"}


@pytest.mark.parametrize("args, message", [
    (["--corruptions", "gaussian_nois"], "unknown corruption 'gaussian_nois'"),
    (["--severities", "0-3"], "severity 0 is out of range"),
    (["--severities", "x"], "severity 'x' is not a whole number"),
    (["--backend", "gpu"], "corruption backend 'gpu'"),
    (["--backend", "folder"], "backend folder needs imagenet_c_root"),
    (["--corruption-preprocessing", "resize"], "corruption preprocessing 'resize'"),
])
def test_cli_rejects_bad_corruption_options(tmp_path: Path, run_cli, args: list[str], message: str) -> None:
    store = tmp_path / "never.sqlite"
    code, _, err = run_cli("run", "--suite", "corruptions", "--model", "resnet-tiny", "--store", str(store), *args)
    one_line_error(code, err, message)
    assert not store.exists()


def test_cli_rejects_corruption_options_for_other_suites(tmp_path: Path, run_cli) -> None:
    store = tmp_path / "never.sqlite"
    code, _, err = run_cli("run", "--suite", "clean", "--model", "resnet-tiny", "--store", str(store),
                           "--severities", "1")
    assert code == 2 and "has no corruption conditions" in err and not store.exists()


def test_cli_lists_corruptions(run_cli) -> None:
    code, out, _ = run_cli("corruptions", "list")
    assert code == 0 and "glass_blur" in out and "saturate" in out


def test_cli_generate_errors(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("corruptions", "generate", "--data-root", str(tmp_path / "none"), "--out",
                           str(tmp_path / "out"))
    assert code == 2 and "does not exist" in err and not (tmp_path / "out").exists()
    code, _, err = run_cli("corruptions", "generate", "--data", "digits", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "out"))
    assert code == 2 and "imagenet100" in err


@pytest.mark.slow
def test_trained_model_accuracy_agrees_across_backends(tmp_path: Path) -> None:
    """On the embedded default, a trained model's accuracy under the torch backend and under the
    reference backend agree within the statistical margin of their difference: a two-proportion
    95% interval, Bonferroni-corrected over the 15 corruptions (each backend draws its own noise,
    so both accuracies are random)."""
    suite = Suite.read(write_suite(tmp_path, "corr", """
        [[conditions]]
        type = "corruption"
        corruptions = "common"
        severities = [3]
        scaling = "resample224"
    """, models=[]))
    data, options = DataSpec(limit=300), RunOptions(device="cpu", batch_size=100)
    store = tmp_path / "agree.sqlite"
    for backend in ("torch", "reference"):
        run_suite(suite, models=["resnet-tiny.digits.s0"], data=data, store=store, options=options,
                 overrides={"corruption": {"backend": backend}})
    with Store(store) as db:
        frame = db.frame(threat="corruption", metric="top1")
    frame = frame[frame["step"].isna()]
    assert frame["corruption"].nunique() == 15
    z = norm.ppf(1 - 0.05 / (2 * 15))
    for corruption, rows in frame.groupby("corruption"):
        by = rows.set_index("backend")
        p, q = by.loc["torch", "value"], by.loc["reference", "value"]
        n = int(by.loc["torch", "n"])
        allowed = z * math.sqrt((p * (1 - p) + q * (1 - q)) / n)
        assert abs(p - q) <= allowed, f"{corruption}: torch {p:.3f} vs reference {q:.3f} (allowed {allowed:.3f})"
