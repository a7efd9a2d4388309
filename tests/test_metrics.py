"""Counting correct predictions and the Wilson interval, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from by_hand import wilson

from mgbench.metrics import AccuracyCounter, accuracy_row, binomial_ci


@pytest.mark.parametrize("correct, n, confidence", [
    (1, 1, 0.95), (0, 1, 0.95), (7, 10, 0.95), (37, 50, 0.9), (450, 500, 0.99), (0, 64, 0.95),
])
def test_binomial_ci_is_wilson(correct: int, n: int, confidence: float) -> None:
    assert binomial_ci(correct, n, confidence) == pytest.approx(wilson(correct, n, confidence), abs=1e-9)


def test_no_examples_have_no_interval() -> None:
    low, high = binomial_ci(0, 0)
    assert math.isnan(low) and math.isnan(high)
    row = accuracy_row("top1", 0, 0)
    assert math.isnan(row.value) and row.n == 0


def test_accuracy_row() -> None:
    row = accuracy_row("top5", 3, 4, step=2)
    assert (row.metric, row.value, row.n, row.step) == ("top5", 0.75, 4, 2)
    assert (row.ci_low, row.ci_high) == pytest.approx(wilson(3, 4, 0.95))


def _logits(predicted: list[list[int]], classes: int = 8) -> torch.Tensor:
    """[T, B, K] logits whose ranking puts ``predicted[t][b]`` first, then classes in reverse order."""
    out = torch.arange(classes, 0, -1, dtype=torch.float32).repeat(len(predicted), len(predicted[0]), 1)
    for t, row in enumerate(predicted):
        for b, label in enumerate(row):
            out[t, b, label] = 100.0
    return out


def test_counter_counts_each_step_and_top5() -> None:
    labels = torch.tensor([0, 1, 2, 7])
    counter = AccuracyCounter(steps=2)
    # step 1 right on examples 0 and 2, step 2 right on 0, 1 and 2; the final top-5 (classes 0-3
    # after the first) misses only example 3 (label 7)
    final = counter.update(_logits([[0, 3, 2, 4], [0, 1, 2, 5]]), labels)
    assert final.tolist() == [True, True, True, False]
    counter.update(_logits([[7], [7]]), torch.tensor([7]))  # a second batch: all right
    counter.reduce()  # outside torchrun: unchanged
    assert (counter.n, counter.correct_steps, counter.correct_topk) == (5, [3, 4], 4)
    rows = counter.rows(num_classes=8)
    assert [(r.metric, r.step, r.value, r.n) for r in rows] == [
        ("top1", None, 4 / 5, 5), ("top5", None, 4 / 5, 5), ("top1", 1, 3 / 5, 5), ("top1", 2, 4 / 5, 5)]


def test_top5_only_with_more_than_five_classes_and_for_top1() -> None:
    counter = AccuracyCounter(steps=1)
    counter.update(_logits([[1, 2]], classes=5), torch.tensor([1, 0]))
    assert counter.correct_topk == 2  # with 5 classes every label is in the top 5
    assert [r.metric for r in counter.rows(num_classes=5)] == ["top1"]
    assert [r.metric for r in counter.rows(num_classes=6)] == ["top1", "top5"]
    assert [r.metric for r in counter.rows(prefix="adv_top1", num_classes=6)] == ["adv_top1"]
    assert counter.rows()[0].value == 0.5


def test_top5_reaches_the_fifth_class_whatever_the_batch_size() -> None:
    """One example, eight classes, its label ranked fifth: a top-5 hit (k is the number of
    classes capped at 5, not the batch size or the number of steps)."""
    logits = torch.tensor([[[0.0, 9.0, 8.0, 7.0, 6.0, 5.0, 1.0, 2.0]]])  # [T=1, B=1, K=8]: class 5 ranked fifth
    counter = AccuracyCounter(steps=1)
    counter.update(logits, torch.tensor([5]))
    assert (counter.correct_steps, counter.correct_topk) == ([0], 1)
    counter.update(logits, torch.tensor([0]))  # ranked last: no hit
    assert counter.correct_topk == 1
