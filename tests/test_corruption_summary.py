"""The corruption summary (mean accuracies, CE, mCE, relative CE and mCE) of hand-written stored
cells, against Hendrycks & Dietterich's formulas worked out in the comments: which cells it reads
(this model's weights, this data, these run options, this condition), what it writes under which
key, and every note that says why a number is missing. Fast: a store with a few rows, no model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mgbench.cellkey import CellKey
from mgbench.conditions import SummaryContext
from mgbench.corruptions.condition import parse_table, summarise
from mgbench.rows import CellRecord, MetricRow
from mgbench.runner import summary_frame
from mgbench.store import Store

DATA = {"dataset": "digits", "split": "test", "preprocessing": "none", "subset": "feed", "n_images": 100}
SUBSET = {**DATA, "n_images": 10}
OPTIONS = {"precision": "fp32", "seed": 0}
MODEL = {"model": "m", "arch": "resnet", "weights": "w1"}
BASE = {"model": "b", "arch": "resnet", "weights": "wb"}
TABLE = {"type": "corruption", "corruptions": ["gaussian_noise", "shot_noise"], "severities": [1, 2],
         "mce_baseline": "b"}
SETTINGS_KEY = {"threat": "corruption", "backend": "torch", "corruption_preprocessing": "hendrycks",
                "scaling": "native"}
PROVENANCE = {"config_hash": "c", "seed": 0, "versions": {"torch": "t", "mgbench": "m"}, "git_sha": "g",
              "device": "cpu", "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:01:00",
              "runtime_s": 60.0}
# accuracies (final output) of the model and the baseline per (corruption, severity), and clean
ACCURACY = {"m": {("gaussian_noise", 1): 0.6, ("gaussian_noise", 2): 0.4, ("shot_noise", 1): 0.7,
                  ("shot_noise", 2): 0.5, "clean": 0.8},
            "b": {("gaussian_noise", 1): 0.5, ("gaussian_noise", 2): 0.2, ("shot_noise", 1): 0.6,
                  ("shot_noise", 2): 0.4, "clean": 0.7}}


def condition(corruption: str | None, severity: int = 0, version: int = 2, folder: str | None = None,
              ) -> dict[str, Any]:
    """The stored condition of a cell, written out (None: the clean condition)."""
    if corruption is None:
        return {"type": "clean", "version": 1, "threat": "clean"}
    settings = SETTINGS_KEY if folder is None else {
        "threat": "corruption", "backend": "folder", "corruption_preprocessing": "hendrycks", "imagenet_c_root": folder}
    return {"type": "corruption", "version": version, **settings, "corruption": corruption, "severity": severity}


def write(store: Store, model: dict[str, Any], cond: dict[str, Any], rows: list[MetricRow],
          data: dict[str, Any] = DATA, options: dict[str, Any] = OPTIONS) -> None:
    store.write_cell(CellRecord(CellKey(cond, data, model, options), "corruptions", None, {}, PROVENANCE, rows),
                     replace=True)


def top1(value: float, step: int | None = None) -> list[MetricRow]:
    """A cell's accuracy rows: top-1, and a top-5 that must not be read as top-1."""
    return [MetricRow("top1", value, n=100, step=step), MetricRow("top5", 1.0, n=100, step=step)]


def fill(store: Store, who: dict[str, Any], skip: tuple = (), clean: bool = True, **kwargs: Any) -> None:
    for cell, value in ACCURACY[who["model"]].items():
        if cell == "clean":
            if clean:
                write(store, who, condition(None), top1(value), **kwargs)
        elif cell not in skip:
            write(store, who, condition(*cell), top1(value), **kwargs)


def summaries(store: Store, table: dict[str, Any] = TABLE, also: list[str] | None = None,
              ) -> dict[tuple, tuple[dict[str, Any], list[MetricRow]]]:
    """{(corruption, severity or None): (summary key, rows)} of this model's summary (``also``:
    cells on other data that the run read, a folder's)."""
    frame = summary_frame(store, MODEL, DATA, OPTIONS, also or [])
    ctx = SummaryContext(frame, [table], MODEL, DATA, store, OPTIONS)
    return {(s.key["corruption"], s.key.get("severity")): (s.key, s.rows) for s in summarise(ctx, parse_table(table))}


def values(rows: list[MetricRow]) -> dict[tuple[str, int | None], float]:
    return {(r.metric, r.step): r.value for r in rows}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "r.sqlite") as opened:
        yield opened


def test_means_ce_and_relative_ce_by_hand(store: Store) -> None:
    fill(store, MODEL)
    fill(store, BASE)
    # decoys: another image subset, older weights, another seed of the baseline, another
    # condition version; none may enter the numbers
    write(store, MODEL, condition("gaussian_noise", 1), top1(0.0), data=SUBSET)
    write(store, {**MODEL, "weights": "w0"}, condition(None), top1(0.1))
    write(store, {**MODEL, "model": "m-copy"}, condition(None), top1(0.1))  # another card of the same weights
    write(store, MODEL, condition("shot_noise", 2, version=1), top1(0.0))
    fill(store, BASE, options={**OPTIONS, "seed": 1}, clean=False)
    for cell in [("gaussian_noise", 1), ("shot_noise", 1)]:
        write(store, BASE, condition(*cell), top1(0.99), options={**OPTIONS, "seed": 1})
    out = summaries(store)
    assert list(out) == [("gaussian_noise", None), ("shot_noise", None), ("mean", 1), ("mean", 2), ("mean", None)]
    common = {**SETTINGS_KEY, "corruptions": "gaussian_noise,shot_noise", "severities": [1, 2], "mce_baseline": "b"}
    assert out["gaussian_noise", None][0] == {**common, "corruption": "gaussian_noise"}
    assert out["mean", 1][0] == {**common, "corruption": "mean", "severity": 1}
    # errors: model gaussian 0.4 + 0.6, shot 0.3 + 0.5; baseline gaussian 0.5 + 0.8, shot 0.4 + 0.6
    # clean errors: model 0.2, baseline 0.3
    gaussian, shot = values(out["gaussian_noise", None][1]), values(out["shot_noise", None][1])
    assert gaussian == pytest.approx({("mean_top1", None): 0.5, ("ce", None): 1.0 / 1.3,
                                      ("relative_ce", None): (0.2 + 0.4) / (0.2 + 0.5)})
    assert shot == pytest.approx({("mean_top1", None): 0.6, ("ce", None): 0.8 / 1.0,
                                  ("relative_ce", None): (0.1 + 0.3) / (0.1 + 0.3)})
    assert values(out["mean", 1][1]) == pytest.approx({("mean_top1", None): (0.6 + 0.7) / 2})
    assert values(out["mean", 2][1]) == pytest.approx({("mean_top1", None): (0.4 + 0.5) / 2})
    overall = out["mean", None][1]
    assert values(overall) == pytest.approx({
        ("mean_top1", None): 0.55, ("mce", None): (1.0 / 1.3 + 0.8) / 2,
        ("relative_mce", None): (0.6 / 0.7 + 1.0) / 2})
    # images behind each mean; CE rows carry no count
    assert [(r.metric, r.n) for r in overall] == [("mean_top1", 400), ("mce", None), ("relative_mce", None)]
    assert [(r.metric, r.n) for r in out["shot_noise", None][1]] == [("mean_top1", 200), ("ce", None),
                                                                     ("relative_ce", None)]
    assert out["mean", 2][1][0].n == 200
    scope = {"corruptions": ["gaussian_noise", "shot_noise"], "severities": [1, 2], "set": "gaussian_noise,shot_noise",
             "partial": True}
    normaliser = {"kind": "model", "model": "b", "same_data": DATA}
    assert overall[0].detail == {**scope, "over": "corruptions and severities",
                                 "notes": ["partial: 'gaussian_noise,shot_noise' is not a named set (common, extra, "
                                           "all)"]}
    assert overall[1].detail == {"normaliser": normaliser, "corruptions": ["gaussian_noise", "shot_noise"]}
    assert overall[2].detail == {"normaliser": normaliser}
    assert [r.detail for r in out["gaussian_noise", None][1]] == [
        {**scope, "over": "severities"}, {"normaliser": normaliser}, {"normaliser": normaliser}]
    assert out["mean", 1][1][0].detail == {**scope, "over": "corruptions"}


def test_an_anytime_model_gets_each_steps_numbers_against_the_baselines_final_output(store: Store) -> None:
    fill(store, BASE)
    write(store, BASE, condition(None), top1(0.7) + top1(0.0, step=1))
    for cell in ACCURACY["m"]:
        rows = top1(ACCURACY["m"][cell]) + top1(0.5 if cell != "clean" else 0.6, step=1)
        write(store, MODEL, condition(None) if cell == "clean" else condition(*cell), rows)
    out = summaries(store)
    # step 1: every cell 0.5 (error 0.5), clean 0.6 (error 0.4); the baseline's final output as before
    assert values(out["gaussian_noise", None][1]) == pytest.approx({
        ("mean_top1", None): 0.5, ("ce", None): 1.0 / 1.3, ("relative_ce", None): 0.6 / 0.7,
        ("mean_top1", 1): 0.5, ("ce", 1): 1.0 / 1.3, ("relative_ce", 1): (0.1 + 0.1) / (0.2 + 0.5)})
    assert values(out["mean", None][1]) == pytest.approx({
        ("mean_top1", None): 0.55, ("mean_top1", 1): 0.5, ("mce", None): (1.0 / 1.3 + 0.8) / 2,
        ("mce", 1): (1.0 / 1.3 + 1.0) / 2, ("relative_mce", None): (0.6 / 0.7 + 1.0) / 2,
        ("relative_mce", 1): (0.2 / 0.7 + 0.2 / 0.4) / 2})


def test_a_missing_cell_makes_the_summary_partial_and_mce_undefined(store: Store) -> None:
    fill(store, MODEL, skip=(("shot_noise", 2),))
    fill(store, BASE)
    out = summaries(store)
    overall = out["mean", None][1]
    assert [r.metric for r in overall] == ["mean_top1"]
    assert overall[0].value == pytest.approx((0.6 + 0.4 + 0.7) / 3)
    assert overall[0].detail["cells"] == ["gaussian_noise s1", "gaussian_noise s2", "shot_noise s1"]
    assert overall[0].detail["notes"] == ["partial: 3 of the set's 4 cells are stored",
                                          "mCE undefined: this model lacks cells of the set"]
    assert "cells" not in summaries(store, {**TABLE, "corruptions": ["gaussian_noise"]})["mean", None][1][0].detail


def test_a_normaliser_without_every_cell_gives_no_ce(store: Store) -> None:
    fill(store, MODEL)
    fill(store, BASE, skip=(("shot_noise", 2),))
    overall = summaries(store)["mean", None][1]
    assert [r.metric for r in overall] == ["mean_top1"]
    assert overall[0].detail["notes"][1] == ("mCE undefined: the normaliser b lacks 1 of the set's 4 cells "
                                             "(shot_noise s2) with the same settings and data: run this suite for "
                                             "b (its run adds the mCE here)")


def test_a_long_list_of_missing_normaliser_cells_is_cut_after_four(store: Store) -> None:
    table = {**TABLE, "severities": [1, 2, 3]}
    fill(store, MODEL)
    for cell in [("gaussian_noise", 3), ("shot_noise", 3)]:
        write(store, MODEL, condition(*cell), top1(0.3))
    write(store, BASE, condition("shot_noise", 3), top1(0.3))
    notes = summaries(store, table)["mean", None][1][0].detail["notes"]
    assert notes[1] == ("mCE undefined: the normaliser b lacks 5 of the set's 6 cells (gaussian_noise s1, "
                        "gaussian_noise s2, gaussian_noise s3, shot_noise s1, ...) with the same settings and "
                        "data: run this suite for b (its run adds the mCE here)")
    write(store, BASE, condition("gaussian_noise", 1), top1(0.3))
    notes = summaries(store, table)["mean", None][1][0].detail["notes"]
    assert notes[1] == ("mCE undefined: the normaliser b lacks 4 of the set's 6 cells (gaussian_noise s2, "
                        "gaussian_noise s3, shot_noise s1, shot_noise s2) with the same settings and data: run this "
                        "suite for b (its run adds the mCE here)")


def test_without_a_normaliser_or_clean_accuracies_the_notes_say_what_to_add(store: Store) -> None:
    fill(store, MODEL)
    fill(store, BASE, clean=False)
    overall = summaries(store, {**TABLE, "mce_baseline": None})["mean", None][1]
    assert [r.metric for r in overall] == ["mean_top1"]
    assert overall[0].detail["notes"][1] == "mCE skipped: no mce_baseline set (suite key or --mce-baseline)"
    overall = summaries(store)["mean", None][1]
    assert [r.metric for r in overall] == ["mean_top1", "mce"]
    assert overall[0].detail["notes"][1] == ("relative mCE skipped: no clean accuracy of b on this data in the store "
                                             "(add a clean condition to the suite)")


def test_without_the_models_own_clean_accuracy_relative_mce_names_the_model(store: Store) -> None:
    fill(store, MODEL, clean=False)
    fill(store, BASE)
    notes = summaries(store)["mean", None][1][0].detail["notes"]
    assert notes[1] == ("relative mCE skipped: no clean accuracy of m on this data in the store (add a clean "
                        "condition to the suite)")


def test_alexnet_normalises_by_hendrycks_published_errors(store: Store) -> None:
    fill(store, MODEL)
    out = summaries(store, {**TABLE, "mce_baseline": "alexnet"})
    # Hendrycks & Dietterich (2019), Table 5 AlexNet errors: Gaussian noise 88.6428, shot noise
    # 89.4468 (means over severities 1-5); AlexNet clean error 1 - 0.56522 (torchvision weights)
    gaussian, shot, alexnet_clean = 0.886428, 0.894468, 1 - 0.56522
    assert values(out["gaussian_noise", None][1]) == pytest.approx({
        ("mean_top1", None): 0.5, ("ce", None): (0.4 + 0.6) / (2 * gaussian),
        ("relative_ce", None): (0.2 + 0.4) / (2 * (gaussian - alexnet_clean))})
    assert values(out["shot_noise", None][1])["ce", None] == pytest.approx(0.8 / (2 * shot))
    overall = out["mean", None][1]
    assert overall[1].detail["normaliser"] == {"kind": "alexnet", "errors": "Hendrycks & Dietterich 2019, ImageNet-1k",
                                               "clean_error": alexnet_clean}
    assert overall[0].detail["notes"][1] == ("AlexNet errors are means over severities 1-5; other severity sets are "
                                             "not comparable")
    for severity in (3, 4, 5):
        write(store, MODEL, condition("gaussian_noise", severity), top1(0.1 * severity))
    five = summaries(store, {**TABLE, "corruptions": ["gaussian_noise"], "severities": "1-5",
                             "mce_baseline": "alexnet"})
    # errors 0.4, 0.6, 0.7, 0.6, 0.5 over five times AlexNet's mean: the published CE, without a note
    assert values(five["gaussian_noise", None][1])["ce", None] == pytest.approx(2.8 / (5 * gaussian))
    assert five["mean", None][1][0].detail["notes"] == ["partial: 'gaussian_noise' is not a named set (common, "
                                                        "extra, all)"]


def test_a_named_set_with_every_cell_is_complete_and_no_cells_are_no_summary(store: Store) -> None:
    fill(store, BASE)
    assert summaries(store) == {}  # nothing of this model's
    table = {**TABLE, "corruptions": "common", "severities": [3], "mce_baseline": None}
    common = parse_table(table).corruptions
    assert len(common) == 15
    for index, name in enumerate(common):
        write(store, MODEL, condition(name, 3), top1(index / 20))
    overall = summaries(store, table)["mean", None]
    assert overall[0]["corruptions"] == "common"
    assert overall[1][0].value == pytest.approx(sum(range(15)) / 20 / 15)
    assert overall[1][0].detail == {"corruptions": list(common), "severities": [3], "set": "common", "partial": False,
                                    "over": "corruptions and severities",
                                    "notes": ["mCE skipped: no mce_baseline set (suite key or --mce-baseline)"]}


def test_folder_cells_are_read_from_the_folders_images_under_this_runs_options(store: Store, tmp_path: Path) -> None:
    """A folder cell's data key names the folder's images, not the run's clean data: the model's
    and the normaliser's are matched by condition (the folder) and run options only."""
    root = str(tmp_path.resolve())
    folder_data = {**DATA, "subset": "imagenet-c"}
    for who, options, shift in ((MODEL, OPTIONS, 0.0), (BASE, OPTIONS, 0.0), (BASE, {**OPTIONS, "seed": 1}, 0.3)):
        for cell, value in ACCURACY[who["model"]].items():
            if cell != "clean":
                write(store, who, condition(*cell, folder=root), top1(value - shift), data=folder_data,
                      options=options)
    write(store, MODEL, condition(None), top1(0.8))
    write(store, BASE, condition(None), top1(0.7))
    # the same folder read earlier for a subset of the images: the later cell is the one counted
    later = {**PROVENANCE, "finished_at": "2026-01-01T00:02:00"}
    subset = {**folder_data, "n_images": 10}
    store.write_cell(CellRecord(CellKey(condition("shot_noise", 2, folder=root), subset, MODEL, OPTIONS),
                                "corruptions", None, {}, PROVENANCE, top1(0.0)))
    store.write_cell(CellRecord(CellKey(condition("shot_noise", 2, folder=root), folder_data, MODEL, OPTIONS),
                                "corruptions", None, {}, later, top1(0.5)), replace=True)
    also = store.frame(model="m")["cell_key"].unique().tolist()
    out = summaries(store, {**TABLE, "backend": "folder", "imagenet_c_root": root}, also)
    assert values(out["mean", None][1]) == pytest.approx({
        ("mean_top1", None): 0.55, ("mce", None): (1.0 / 1.3 + 0.8) / 2, ("relative_mce", None): (0.6 / 0.7 + 1.0) / 2})
    assert out["mean", None][0]["imagenet_c_root"] == root
