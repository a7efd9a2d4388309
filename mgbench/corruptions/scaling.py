"""What ImageNet-C severities mean on images smaller than ImageNet's 224 x 224.

imagecorruptions accepts any size, but several corruptions have parameters in *pixels*
(blur radii and sigmas, glass blur's shuffle distance, motion streaks, snow grains, frost's
texture, spatter's drops, elastic displacement), calibrated on 224 x 224 ImageNet crops. On the
64 x 64 digits they are 3.5 times stronger relative to the image. Two scalings, the same in
every backend, recorded in each cell's key:

- ``native``: the ImageNet-C parameters at the image's own size (what imagecorruptions does).
- ``resample224``: the size-dependent corruptions (:data:`RESAMPLED`) run on the image resized
  so its shorter side is 224 (bicubic, rounded to uint8), and the result is resized back
  (antialiased bilinear, rounded to uint8). Every parameter then keeps its ImageNet meaning
  relative to the image. The other corruptions (noise, colour, JPEG, pixelate, zoom and fog,
  whose parameters are per pixel or relative to the image) run at the native size, since
  resampling would average noise away. On images whose shorter side is 224 or more this is
  the same as ``native``.

CIFAR-C and Tiny-ImageNet-C instead re-tuned every constant by hand for their size; those are
different benchmarks whose severities do not correspond to ImageNet-C's.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
import torch.nn.functional as F

from mgbench.errors import InputError

SCALINGS = ("native", "resample224")
RESAMPLE_SIDE = 224
RESAMPLED = frozenset({
    "defocus_blur", "glass_blur", "motion_blur", "gaussian_blur",
    "snow", "frost", "spatter", "elastic_transform",
})


class Backend(Protocol):
    name: str

    def __call__(self, x: torch.Tensor, ids: Sequence[int], name: str, severity: int) -> torch.Tensor:
        """Corrupted ``[B, 3, H, W]`` in [0, 1] on uint8 levels."""


def check_scaling(scaling: str) -> str:
    if scaling not in SCALINGS:
        raise InputError(f"unknown corruption scaling {scaling!r}: use one of {', '.join(SCALINGS)}")
    return scaling


def working_size(height: int, width: int, name: str, scaling: str) -> tuple[int, int] | None:
    """The size a corruption runs at, or None for the image's own size."""
    short = min(height, width)
    if scaling == "native" or name not in RESAMPLED or short >= RESAMPLE_SIDE:
        return None
    return round(height * RESAMPLE_SIDE / short), round(width * RESAMPLE_SIDE / short)


def _levels(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def corrupt_scaled(backend: Backend, x: torch.Tensor, ids: Sequence[int], name: str, severity: int,
                   scaling: str) -> torch.Tensor:
    """``backend`` on ``x`` under ``scaling`` (see the module docstring)."""
    size = working_size(x.shape[-2], x.shape[-1], name, scaling)
    if size is None:
        return backend(x, ids, name, severity)
    large = _levels(F.interpolate(x, size=size, mode="bicubic", align_corners=False))
    out = backend(large, ids, name, severity)
    return _levels(F.interpolate(out, size=x.shape[-2:], mode="bilinear", antialias=True, align_corners=False))
