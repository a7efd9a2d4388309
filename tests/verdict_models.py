"""Models built to fail one gradient-masking check each, around the trained small CNN of
``attack_support`` (not a test module: ``test_verdict_checks.py`` imports it).

- ``reversed``: the input gradient is negated (identity forward). Gradient attacks climb the
  wrong way and leave the model's clean accuracy, while random noise of the same size breaks
  examples: the ``noise`` check must fail.
- ``grid-masked``: the input gradient is exactly zero on the uint8 grid (where every clean image
  lies) and exact elsewhere. PGD without a random start never leaves the clean point; a 5x
  longer PGD with random restarts steps off the grid and breaks examples: the ``converged``
  check must fail.
- ``noisy-wrong``: Gaussian noise on the input (a randomised model) and the logits negated, so
  its prediction is the least likely class and every example is wrong from the start: AutoAttack
  ``rand`` (EOT) is stored without running an iteration, which keeps the ``randomised`` check's
  EOT branch cheap to reach.
"""

from __future__ import annotations

from pathlib import Path

import attack_support
import torch
import torch.nn as nn
from attack_support import NoisyInput


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


class _ZeroOnGrid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        levels = x * 255
        return grad * ((levels - levels.round()).abs() > 1e-3)


class _Before(nn.Module):
    """``model(function(x))``."""

    def __init__(self, model: nn.Module, function: type[torch.autograd.Function]):
        super().__init__()
        self.model, self.function = model, function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.function.apply(x))


class _Negated(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.model(x)


def wrapped(model: nn.Module, kind: str) -> nn.Module:
    wrappers = {
        "reversed": lambda m: _Before(m, _Reverse),
        "grid-masked": lambda m: _Before(m, _ZeroOnGrid),
        "noisy-wrong": lambda m: _Negated(NoisyInput(m)),
    }
    return wrappers[kind](model).eval()


def write_factory(folder: Path, kind: str) -> str:
    """A ``--model FILE.py:factory`` spec for the trained CNN wrapped as ``kind``."""
    return attack_support.write_factory(folder, kind, wrappers="verdict_models")
