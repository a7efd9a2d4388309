"""Helpers shared by the seed-method tests (tests/test_seed_*.py)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fixed_batch(n: int = 16, size: int = 32, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=generator), torch.randint(0, classes, (n,), generator=generator)


def fixed_batch_losses(model: nn.Module, loss_fn: LossFn, steps: int = 6, lr: float = 0.05) -> tuple[float, float]:
    """Loss on one fixed batch before and after ``steps`` SGD steps on it (train mode throughout)."""
    x, y = fixed_batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with torch.no_grad():
        before = float(loss_fn(model, x, y))
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn(model, x, y).backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss_fn(model, x, y))
    return before, after
