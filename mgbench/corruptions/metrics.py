"""Corruption metrics as pure functions of tidy frames.

A *cells* frame has one row per corruption x severity (x step for anytime models) with
columns ``corruption``, ``severity``, ``step`` (:data:`FINAL` for a model's final output),
``accuracy`` and ``n``. A *clean* frame has ``step`` and ``accuracy``.

- mean accuracy: the unweighted mean of the cells' accuracies, per corruption (over
  severities), per severity (over corruptions) and overall (MGNet's and RobustBench's metric);
- corruption error (Hendrycks & Dietterich 2019): ``CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}``
  with errors ``E = 1 - accuracy``, and ``mCE`` = mean of ``CE_c`` over the corruptions;
- relative CE: the same with each error minus the model's own clean error,
  ``sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)``, and its mean.

The normaliser is a baseline model evaluated on the same data, or AlexNet's published
ImageNet-C errors (:data:`ALEXNET_ERRORS`, meaningful for ImageNet-1k models only).
"""

from __future__ import annotations

import pandas as pd

FINAL = -1  # the step label of a model's final output

# AlexNet's ImageNet-C errors per corruption, mean over the five severities (Hendrycks &
# Dietterich 2019), the normaliser of the published mCE.
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
# AlexNet's clean ImageNet-1k error: torchvision's AlexNet weights (acc@1 56.522%).
ALEXNET_CLEAN_ERROR = 1 - 0.56522


def mean_accuracy(cells: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Unweighted mean accuracy per step (and per ``by``: ``corruption`` or ``severity``),
    with the number of cells averaged and the images they hold."""
    grouped = cells.groupby(["step", *([by] if by else [])], sort=True)
    return grouped.agg(accuracy=("accuracy", "mean"), cells=("accuracy", "size"), n=("n", "sum")).reset_index()


def _matched(model: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Model cells (every step) beside the baseline's final output; only corruptions whose
    severities the baseline all has."""
    final = base.loc[base["step"] == FINAL, ["corruption", "severity", "accuracy"]]
    joined = model.merge(final.rename(columns={"accuracy": "accuracy_base"}), on=["corruption", "severity"],
                         how="left")
    complete = joined.groupby(["step", "corruption"])["accuracy_base"].transform(lambda s: s.notna().all())
    return joined[complete]


def corruption_errors(model: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """``CE_c`` per step and corruption: summed errors over the severities, over the
    baseline's final-output errors (which must cover every severity the model has)."""
    joined = _matched(model, base).assign(error=lambda f: 1 - f["accuracy"],
                                          error_base=lambda f: 1 - f["accuracy_base"])
    sums = joined.groupby(["step", "corruption"], sort=True)[["error", "error_base"]].sum()
    return (sums["error"] / sums["error_base"]).rename("ce").reset_index()


def relative_corruption_errors(model: pd.DataFrame, model_clean: pd.DataFrame,
                               base: pd.DataFrame, base_clean: pd.DataFrame) -> pd.DataFrame:
    """Relative ``CE_c`` per step and corruption: errors minus the clean error (of the same
    model and step), summed over severities, over the baseline's."""
    joined = _matched(model, base)
    joined = joined.merge(model_clean.rename(columns={"accuracy": "clean"})[["step", "clean"]], on="step")
    base_final = base_clean.loc[base_clean["step"] == FINAL, "accuracy"]
    if base_final.empty:
        return pd.DataFrame(columns=["step", "corruption", "relative_ce"])
    joined = joined.assign(gap=(1 - joined["accuracy"]) - (1 - joined["clean"]),
                           gap_base=(1 - joined["accuracy_base"]) - (1 - float(base_final.iloc[0])))
    sums = joined.groupby(["step", "corruption"], sort=True)[["gap", "gap_base"]].sum()
    return (sums["gap"] / sums["gap_base"]).rename("relative_ce").reset_index()


def alexnet_baseline(cells: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AlexNet as a baseline frame (its mean error at every severity of ``cells``, which gives
    the published ``CE_c`` when all five are present) and its clean frame."""
    rows = cells[cells["corruption"].isin(list(ALEXNET_ERRORS))][["step", "corruption", "severity"]]
    base = rows.assign(accuracy=1 - rows["corruption"].map(ALEXNET_ERRORS), n=0)
    clean = pd.DataFrame({"step": [FINAL], "accuracy": [1 - ALEXNET_CLEAN_ERROR]})
    return base, clean


def mean_over_corruptions(values: pd.DataFrame, column: str) -> pd.DataFrame:
    """The mean of a per-corruption column per step (e.g. ``ce`` -> mCE)."""
    grouped = values.groupby("step", sort=True)[column]
    return grouped.agg(["mean", "size"]).rename(columns={"mean": column, "size": "corruptions"}).reset_index()
