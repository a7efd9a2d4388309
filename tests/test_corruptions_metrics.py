"""Corruption metrics against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mgbench.corruptions import metrics

FINAL = metrics.FINAL


def _cells(values: dict[tuple[str, int], float], step: int = FINAL, n: int = 100) -> pd.DataFrame:
    return pd.DataFrame([{"corruption": c, "severity": s, "step": step, "accuracy": a, "n": n}
                         for (c, s), a in values.items()])


MODEL = _cells({("fog", 1): 0.9, ("fog", 2): 0.7, ("snow", 1): 0.6, ("snow", 2): 0.4})
BASE = _cells({("fog", 1): 0.8, ("fog", 2): 0.5, ("snow", 1): 0.5, ("snow", 2): 0.3})


def test_mean_accuracy() -> None:
    overall = metrics.mean_accuracy(MODEL)
    assert overall["accuracy"].item() == pytest.approx((0.9 + 0.7 + 0.6 + 0.4) / 4)
    assert overall["n"].item() == 400 and overall["cells"].item() == 4
    per = metrics.mean_accuracy(MODEL, by="corruption").set_index("corruption")["accuracy"]
    assert per["fog"] == pytest.approx(0.8) and per["snow"] == pytest.approx(0.5)
    sev = metrics.mean_accuracy(MODEL, by="severity").set_index("severity")["accuracy"]
    assert sev[1] == pytest.approx(0.75) and sev[2] == pytest.approx(0.55)


def test_corruption_errors_and_mce() -> None:
    # fog: errors (0.1 + 0.3) / (0.2 + 0.5) = 0.4 / 0.7; snow: (0.4 + 0.6) / (0.5 + 0.7) = 1.0 / 1.2
    frame = metrics.corruption_errors(MODEL, BASE)
    ce = frame.set_index("corruption")["ce"]
    assert ce["fog"] == pytest.approx(0.4 / 0.7)
    assert ce["snow"] == pytest.approx(1.0 / 1.2)
    mce = metrics.mean_over_corruptions(frame, "ce")
    assert mce["ce"].item() == pytest.approx((0.4 / 0.7 + 1.0 / 1.2) / 2)


def test_relative_corruption_errors() -> None:
    clean = pd.DataFrame({"step": [FINAL], "accuracy": [0.95]})
    base_clean = pd.DataFrame({"step": [FINAL], "accuracy": [0.9]})
    # fog: ((0.1 - 0.05) + (0.3 - 0.05)) / ((0.2 - 0.1) + (0.5 - 0.1)) = 0.30 / 0.50
    rce = metrics.relative_corruption_errors(MODEL, clean, BASE, base_clean).set_index("corruption")["relative_ce"]
    assert rce["fog"] == pytest.approx(0.30 / 0.50)
    # snow: ((0.4 - 0.05) + (0.6 - 0.05)) / ((0.5 - 0.1) + (0.7 - 0.1)) = 0.90 / 1.00
    assert rce["snow"] == pytest.approx(0.90)


def test_incomplete_baseline_corruption_is_left_out() -> None:
    partial = BASE[~((BASE["corruption"] == "snow") & (BASE["severity"] == 2))]
    ce = metrics.corruption_errors(MODEL, partial)
    assert list(ce["corruption"]) == ["fog"]


def test_anytime_steps_use_the_baselines_final_output() -> None:
    steps = pd.concat([_cells({("fog", 1): 0.5}, step=1), _cells({("fog", 1): 0.9}, step=2),
                       _cells({("fog", 1): 0.9}, step=FINAL)])
    base = _cells({("fog", 1): 0.8})
    ce = metrics.corruption_errors(steps, base).set_index("step")["ce"]
    assert ce[1] == pytest.approx(0.5 / 0.2) and ce[2] == pytest.approx(0.1 / 0.2) and ce[FINAL] == pytest.approx(0.5)


def test_alexnet_normaliser_gives_the_published_ce() -> None:
    # A model with error e at each of the 5 severities has CE = e / AlexNet's mean error.
    cells = _cells({("fog", s): 0.6 for s in range(1, 6)})
    base, clean = metrics.alexnet_baseline(cells)
    ce = metrics.corruption_errors(cells, base)["ce"].item()
    assert ce == pytest.approx(0.4 / 0.819324)
    assert clean["accuracy"].item() == pytest.approx(0.56522)
    assert len(metrics.ALEXNET_ERRORS) == 15 and all(0.5 < v < 1 for v in metrics.ALEXNET_ERRORS.values())
    assert not math.isnan(ce)


# Hendrycks & Dietterich (2019), AlexNet's ImageNet-C errors, mean over the five severities, typed
# from the paper's table (hendrycks/robustness), not read from mgbench.
PUBLISHED_ALEXNET = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}


def test_alexnet_normaliser_is_the_published_table() -> None:
    """Every corruption's CE under the AlexNet normaliser is the model's error over the published
    AlexNet error, and the mCE is their mean: a model with error 0.5 everywhere has
    CE_c = 0.5 / E_AlexNet,c."""
    cells = _cells({(c, s): 0.5 for c in PUBLISHED_ALEXNET for s in range(1, 6)})
    base, clean = metrics.alexnet_baseline(cells)
    ce = metrics.corruption_errors(cells, base).set_index("corruption")["ce"]
    assert set(ce.index) == set(PUBLISHED_ALEXNET)
    for name, error in PUBLISHED_ALEXNET.items():
        assert ce[name] == pytest.approx(0.5 / error, rel=1e-9), name
    mce = metrics.mean_over_corruptions(ce.reset_index().assign(step=FINAL), "ce")
    assert mce["ce"].item() == pytest.approx(sum(0.5 / e for e in PUBLISHED_ALEXNET.values()) / 15, rel=1e-9)
    assert mce["corruptions"].item() == 15
    assert (base["n"] == 0).all()  # published numbers: no images of ours behind them
    # AlexNet's clean top-1 (torchvision's weights: 56.522%) is the relative CE's clean error:
    # relative CE_c = (0.5 - 0.1) / (E_AlexNet,c - (1 - 0.56522)) for a model with clean error 0.1.
    assert 1 - clean["accuracy"].item() == pytest.approx(1 - 0.56522, abs=1e-9)
    model_clean = pd.DataFrame({"step": [FINAL], "accuracy": [0.9]})
    rce = metrics.relative_corruption_errors(cells, model_clean, base, clean).set_index("corruption")["relative_ce"]
    for name, error in PUBLISHED_ALEXNET.items():
        assert rce[name] == pytest.approx(0.4 / (error - (1 - 0.56522)), rel=1e-9), name


def test_tables_come_sorted_by_step_then_key() -> None:
    """Rows given in reverse order come back sorted (what the summaries and reports list)."""
    cells = pd.concat([_cells({("snow", 2): 0.4, ("fog", 1): 0.9}, step=2),
                       _cells({("snow", 1): 0.6, ("fog", 2): 0.7}, step=1)])
    base = _cells({("snow", 1): 0.5, ("snow", 2): 0.3, ("fog", 1): 0.8, ("fog", 2): 0.5})
    by_corruption = metrics.mean_accuracy(cells, by="corruption")
    assert list(zip(by_corruption["step"], by_corruption["corruption"])) == [
        (1, "fog"), (1, "snow"), (2, "fog"), (2, "snow")]
    ce = metrics.corruption_errors(cells, base)
    assert list(zip(ce["step"], ce["corruption"])) == [(1, "fog"), (1, "snow"), (2, "fog"), (2, "snow")]
    clean = pd.DataFrame({"step": [2, 1], "accuracy": [0.95, 0.95]})
    rce = metrics.relative_corruption_errors(cells, clean, base, pd.DataFrame({"step": [FINAL], "accuracy": [0.9]}))
    assert list(zip(rce["step"], rce["corruption"])) == [(1, "fog"), (1, "snow"), (2, "fog"), (2, "snow")]
    assert list(metrics.mean_over_corruptions(ce.iloc[::-1], "ce")["step"]) == [1, 2]


def test_relative_ce_without_the_baselines_clean_accuracy_is_an_empty_table() -> None:
    clean = pd.DataFrame({"step": [FINAL], "accuracy": [0.95]})
    empty = pd.DataFrame({"step": pd.Series([], dtype=int), "accuracy": pd.Series([], dtype=float)})
    rce = metrics.relative_corruption_errors(MODEL, clean, BASE, empty)
    assert rce.empty and list(rce.columns) == ["step", "corruption", "relative_ce"]
