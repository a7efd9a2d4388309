"""Counting correct predictions and turning counts into rows with intervals."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from scipy.stats import binomtest

from mgbench import distributed
from mgbench.rows import MetricRow


def binomial_ci(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's implementation)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    interval = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def accuracy_row(metric: str, correct: int, n: int, step: int | None = None) -> MetricRow:
    low, high = binomial_ci(correct, n)
    return MetricRow(metric, correct / n if n else float("nan"), low, high, n, step)


@dataclass
class AccuracyCounter:
    """Running top-1 (per step for anytime models) and top-5 counts."""

    steps: int
    topk: int = 5
    n: int = 0
    correct_steps: list[int] = field(default_factory=list)
    correct_topk: int = 0

    def __post_init__(self) -> None:
        self.correct_steps = [0] * self.steps

    def update(self, step_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Add a batch of [T, B, K] logits; returns the per-example final-step correctness."""
        labels = labels.to(step_logits.device)
        predictions = step_logits.argmax(dim=-1)  # [T, B]
        hits = predictions.eq(labels.unsqueeze(0))
        for t in range(self.steps):
            self.correct_steps[t] += int(hits[t].sum())
        k = min(self.topk, step_logits.shape[-1])
        top = step_logits[-1].topk(k, dim=-1).indices
        self.correct_topk += int(top.eq(labels.unsqueeze(1)).any(dim=1).sum())
        self.n += labels.numel()
        return hits[-1]

    def reduce(self) -> None:
        """Sum the counts over all ranks (a no-op outside torchrun)."""
        n, topk, *steps = distributed.all_sum([self.n, self.correct_topk, *self.correct_steps])
        self.n, self.correct_topk, self.correct_steps = int(n), int(topk), [int(c) for c in steps]

    def rows(self, prefix: str = "top1", num_classes: int | None = None) -> list[MetricRow]:
        """Final top-1, top-5 (when there are more than 5 classes), and top-1 after each step."""
        out = [accuracy_row(prefix, self.correct_steps[-1], self.n)]
        if num_classes is not None and num_classes > self.topk and prefix == "top1":
            out.append(accuracy_row(f"top{self.topk}", self.correct_topk, self.n))
        if self.steps > 1:
            out += [accuracy_row(prefix, c, self.n, step=t + 1) for t, c in enumerate(self.correct_steps)]
        return out
