"""Compute per glimpse against a count written out by hand.

A toy glimpse model with MGNet's anytime interface: each step samples a 24 x 24 glimpse of the
64 x 64 image (affine grid + bilinear grid sample), runs one 3x3 convolution on it and a linear
classifier on the flattened features. Its multiply-adds per step, by the textbook formulas:

- grid sample, bilinear: 4 per output value: 4 x C x 24 x 24;
- convolution: C_out x C_in x k x k x H_out x W_out (no bias, fvcore's convention);
- linear: in_features x out_features;
- the affine grid: 6 per grid point (2x3 matrix times (x, y, 1)), counted by our FlopCounterMode
  formula only (fvcore counts it as zero).

The count after ``t`` glimpses must be ``t`` times one step's, within 0.1% (the docs' claim); here
it is exact.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench import flops
from mgbench.models import StepOutputs

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, GLIMPSE, CHANNELS, WIDTH, CLASSES, STEPS = 64, 24, 3, 8, 10, 3
GRID_SAMPLE = 4 * CHANNELS * GLIMPSE * GLIMPSE
CONV = WIDTH * CHANNELS * 3 * 3 * GLIMPSE * GLIMPSE
LINEAR = WIDTH * GLIMPSE * GLIMPSE * CLASSES
AFFINE_GRID = 6 * GLIMPSE * GLIMPSE
PER_STEP = GRID_SAMPLE + CONV + LINEAR


class ToyGlimpses(nn.Module):
    num_steps = STEPS

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(CHANNELS, WIDTH, 3, padding=1)
        self.fc = nn.Linear(WIDTH * GLIMPSE * GLIMPSE, CLASSES)

    def forward_steps(self, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
        logits = []
        for t in range(steps or self.num_steps):
            shift = 0.2 * t - 0.2
            theta = torch.tensor([[[0.4, 0.0, shift], [0.0, 0.4, -shift]]], dtype=x.dtype).expand(len(x), 2, 3)
            grid = F.affine_grid(theta, [len(x), CHANNELS, GLIMPSE, GLIMPSE], align_corners=False)
            glimpse = F.grid_sample(x, grid, align_corners=False)
            logits.append(self.fc(F.relu(self.conv(glimpse)).flatten(1)))
        return StepOutputs(torch.stack(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).logits[-1]


def test_fvcore_gmacs_per_glimpse_are_the_hand_count() -> None:
    profile = flops.profile(ToyGlimpses(), SIZE)
    expected = [t * PER_STEP / 1e9 for t in range(1, STEPS + 1)]
    assert profile.gmacs == pytest.approx(expected, rel=1e-3)
    increments = [b - a for a, b in zip([0.0] + profile.gmacs, profile.gmacs)]
    assert increments == pytest.approx([PER_STEP / 1e9] * STEPS, rel=1e-3)
    rows = [r for r in profile.rows() if r.metric == "gmacs"]
    assert [(r.step, r.value) for r in rows] == [(None, profile.gmacs[-1])] + list(zip(range(1, 4), profile.gmacs))
    assert profile.params == WIDTH * CHANNELS * 9 + WIDTH + WIDTH * GLIMPSE * GLIMPSE * CLASSES + CLASSES


def test_torch_counter_per_glimpse_is_twice_the_hand_count_plus_the_grid() -> None:
    comparison = flops.compare(ToyGlimpses(), SIZE)
    expected = [2 * t * (PER_STEP + AFFINE_GRID) / 1e9 for t in range(1, STEPS + 1)]
    assert comparison.torch_gflops == pytest.approx(expected, rel=1e-3)
