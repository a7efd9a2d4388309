"""Random noise of the attack's norm and size: the weakest possible "attack", a verdict probe.

A gradient attack that breaks fewer examples than random noise of the same budget is not
following the gradient (gradient masking; Carlini et al. 2019). ``draws`` noise samples per
example: L-inf random-sign corners of the box (``x +- eps`` per pixel, the farthest points of
the ball), L2 random directions on the sphere of radius ``eps``; clipped to [0, 1]. Like the
white-box attacks it keeps, per example, the first draw that fools the model (else the last).
"""

from __future__ import annotations

import torch
import torch.nn as nn

DEFAULT_DRAWS = 10


def _draw(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        signs = torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype).mul_(2).sub_(1)
        return (x + eps * signs).clamp_(0, 1)
    direction = torch.randn_like(x)
    direction /= direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
    return (x + eps * direction).clamp_(0, 1)


@torch.no_grad()
def random_noise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float,
                 draws: int = DEFAULT_DRAWS) -> torch.Tensor:
    """``draws`` noise samples per example; the first that fools the model is kept."""
    out = x.clone()
    alive = torch.ones(len(y), dtype=torch.bool, device=x.device)
    for _ in range(draws):
        idx = alive.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        noisy = _draw(x[idx], eps, norm)
        out[idx] = noisy
        alive[idx[model(noisy).argmax(dim=1) != y[idx]]] = False
    return out
