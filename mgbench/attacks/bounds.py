"""The house rule for every adversarial batch: it lies inside the threat model's ball, and (for the
honest protocol) inside the valid image range [0, 1]. An attack that leaves its ball claims a
strength it does not have, so a violation is a defect: :class:`AttackBoundsError`, never a
warning.

The checks run on every batch an attack condition returns, before the runner's fresh forward pass.
Tolerances cover float32 rounding only (``x + delta - x`` differs from ``delta`` by about 1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LINF_ATOL = 1e-6
L2_RTOL = 1e-5


class AttackBoundsError(RuntimeError):
    """An adversarial batch left its ball or the valid image range (an attack defect)."""


def l2_norms(delta: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norms of a [B, ...] tensor."""
    return delta.flatten(1).norm(dim=1)


def check_ball(
    x_adv: torch.Tensor,
    x: torch.Tensor,
    *,
    norm: str,
    eps: float | torch.Tensor,
    unit_range: bool = True,
    what: str = "attack",
) -> None:
    """Raise :class:`AttackBoundsError` unless ``x_adv`` is finite, within ``eps`` of ``x`` in
    ``norm`` (``eps`` may be a per-channel [1, C, 1, 1] tensor for L-inf) and, with
    ``unit_range``, inside [0, 1]."""
    if x_adv.shape != x.shape:
        raise AttackBoundsError(f"{what}: returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise AttackBoundsError(f"{what}: returned NaN or infinite pixels")
    delta = (x_adv - x).detach()
    if norm == "linf":
        excess = (delta.abs() - eps).amax().item()
        if excess > LINF_ATOL:
            largest = delta.abs().amax().item()
            raise AttackBoundsError(
                f"{what}: L-inf perturbation {largest:.8f} exceeds its budget by {excess:.2e}"
            )
    elif norm == "l2":
        if isinstance(eps, torch.Tensor):
            raise AttackBoundsError(f"{what}: an L2 budget must be one number")
        largest = l2_norms(delta).max().item()
        if largest > eps * (1 + L2_RTOL) + LINF_ATOL:
            raise AttackBoundsError(f"{what}: L2 perturbation {largest:.6f} exceeds the budget {eps:.6f}")
    else:
        raise AttackBoundsError(f"{what}: unknown norm {norm!r}")
    if unit_range:
        low, high = x_adv.min().item(), x_adv.max().item()
        if low < 0.0 or high > 1.0:
            raise AttackBoundsError(f"{what}: pixels outside [0, 1] (min {low:.6f}, max {high:.6f})")


@dataclass
class PerturbationStats:
    """Running facts about the perturbations of a cell, in pixel units of [0, 1] images."""

    max_linf: float = 0.0
    max_l2: float = 0.0
    mean_linf: float = 0.0
    outside_pixels: int = 0
    pixels: int = 0
    examples: int = 0

    def update(self, x_adv: torch.Tensor, x: torch.Tensor) -> None:
        delta = (x_adv - x).detach().flatten(1)
        linf = delta.abs().amax(dim=1)
        n = delta.shape[0]
        self.mean_linf = (self.mean_linf * self.examples + float(linf.sum())) / (self.examples + n)
        self.examples += n
        self.max_linf = max(self.max_linf, float(linf.max()))
        self.max_l2 = max(self.max_l2, float(delta.norm(dim=1).max()))
        self.outside_pixels += int(((x_adv < 0) | (x_adv > 1)).sum())
        self.pixels += x_adv.numel()

    def merged(self, other: "PerturbationStats") -> "PerturbationStats":
        """The facts of both sets of examples together (for summing over torchrun ranks)."""
        examples = self.examples + other.examples
        mean = (self.mean_linf * self.examples + other.mean_linf * other.examples) / examples if examples else 0.0
        return PerturbationStats(
            max(self.max_linf, other.max_linf), max(self.max_l2, other.max_l2), mean,
            self.outside_pixels + other.outside_pixels, self.pixels + other.pixels, examples,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "max_linf": self.max_linf,
            "max_linf_255": self.max_linf * 255,
            "mean_linf": self.mean_linf,
            "max_l2": self.max_l2,
            "outside_unit_range_share": self.outside_pixels / self.pixels if self.pixels else 0.0,
            "examples": self.examples,
        }
