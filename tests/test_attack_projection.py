"""PGD's projection by hand: a step that stays inside the ball is left alone, a step that leaves it
is pulled back onto its surface along the same direction.

The expected iterates are computed here with autograd and the textbook update (Madry et al. 2018):
L2 ``x + a * g / ||g||_2``, L-inf ``x + a * sign(g)``, then the projection onto the ball. Pixels
stay in [0.3, 0.7] and steps are small, so clipping to [0, 1] never acts. Public entry point:
``mgbench.attacks.pgd``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench.attacks import pgd


def _setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    x = 0.3 + 0.4 * torch.rand(4, 3, 8, 8, generator=generator)
    y = torch.tensor([0, 3, 5, 9])
    return model.eval().double(), x.double(), y


def _grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def _unit_l2(g: torch.Tensor) -> torch.Tensor:
    return g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _run(model, x, y, norm: str, eps: float, steps: int, step_size: float) -> torch.Tensor:
    return pgd(model, x, y, norm=norm, eps=eps, steps=steps, step_size=step_size, random_start=False, keep="last")


def test_l2_steps_inside_the_ball_are_not_projected() -> None:
    model, x, y = _setup()
    first = x + 0.1 * _unit_l2(_grad(model, x, y))
    second = first + 0.1 * _unit_l2(_grad(model, first, y))
    assert torch.allclose(_run(model, x, y, "l2", 1.0, 1, 0.1), first, atol=1e-10)
    two = _run(model, x, y, "l2", 1.0, 2, 0.1)
    assert torch.allclose(two, second, atol=1e-10)
    norms = (two - x).flatten(1).norm(dim=1)
    assert (norms <= 0.2 + 1e-9).all() and (norms < 0.5).all()  # well inside the ball of radius 1


def test_l2_steps_outside_the_ball_land_on_its_surface_in_the_same_direction() -> None:
    model, x, y = _setup()
    expected = x + 0.25 * _unit_l2(_grad(model, x, y))  # a step of 3 along g, scaled back to 0.25
    out = _run(model, x, y, "l2", 0.25, 1, 3.0)
    assert torch.allclose(out, expected, atol=1e-10)
    assert torch.allclose((out - x).flatten(1).norm(dim=1), torch.full((4,), 0.25, dtype=x.dtype))


def test_linf_steps_inside_the_box_are_not_clipped_and_outside_ones_are() -> None:
    model, x, y = _setup()
    sign = _grad(model, x, y).sign()
    assert torch.allclose(_run(model, x, y, "linf", 0.1, 1, 0.01), x + 0.01 * sign, atol=1e-12)
    assert torch.allclose(_run(model, x, y, "linf", 0.05, 1, 0.2), x + 0.05 * sign, atol=1e-12)
