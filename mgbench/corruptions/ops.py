"""Batched image operations on float tensors, with the boundary rules of the libraries that
imagecorruptions calls (SciPy/scikit-image, OpenCV, PIL), so that the torch corruptions can
reproduce them. All functions take ``[N, C, H, W]`` tensors on any device.

Boundary modes (names are ours; the libraries disagree on names):
- ``replicate``: ``aaa|abcd|ddd`` (scipy ``nearest``, OpenCV ``BORDER_REPLICATE``)
- ``reflect101``: ``cb|abcd|cb`` (OpenCV's default ``BORDER_REFLECT_101``, torch ``reflect``)
- ``symmetric``: ``ba|abcd|dc`` (scipy ``reflect``, half-sample symmetric)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

PAD_MODES = ("replicate", "reflect101", "symmetric")


def pad_index(n: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source indices of a padded axis of length ``before + n + after``."""
    index = torch.arange(-before, n + after, device=device)
    if mode == "replicate" or n == 1:
        return index.clamp(0, n - 1)
    if mode == "reflect101":
        period = 2 * (n - 1)
        index = index.abs().remainder(period)
        return torch.where(index >= n, period - index, index)
    if mode == "symmetric":
        period = 2 * n
        index = index.remainder(period)
        return torch.where(index >= n, period - 1 - index, index)
    raise ValueError(f"unknown pad mode {mode!r}")


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last two axes by any amount (also more than the image size)."""
    height, width = x.shape[-2:]
    fits = max(top, bottom) < height and max(left, right) < width
    if mode in ("replicate", "reflect101") and fits and x.dim() >= 3:
        # torch's own padding is several times faster than indexing; it wants 3-D or 4-D input.
        flat = x.reshape(-1, 1, height, width) if x.dim() != 4 else x
        out = F.pad(flat, (left, right, top, bottom), mode="replicate" if mode == "replicate" else "reflect")
        return out.reshape(*x.shape[:-2], *out.shape[-2:])
    rows = pad_index(height, top, bottom, mode, x.device)
    cols = pad_index(width, left, right, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """SciPy's Gaussian taps: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return taps / taps.sum()


def _as_planes(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    return x.reshape(-1, 1, x.shape[-2], x.shape[-1]), x.shape


def _correlate1d(padded: torch.Tensor, taps: list[float], dim: int) -> torch.Tensor:
    """Correlation along ``dim`` of an already padded tensor, as a sum of shifted views (on a
    CPU this is several times faster than ``conv2d`` with a one-dimensional kernel)."""
    size = padded.shape[dim] - len(taps) + 1
    out = padded.narrow(dim, 0, size) * taps[0]
    for offset in range(1, len(taps)):
        out.add_(padded.narrow(dim, offset, size), alpha=taps[offset])
    return out


def separable_filter(x: torch.Tensor, taps_y: torch.Tensor, taps_x: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every plane with ``taps_y`` down the rows and ``taps_x`` along the columns."""
    ry, rx = (len(taps_y) - 1) // 2, (len(taps_x) - 1) // 2
    rows = _correlate1d(pad2d(x, ry, ry, 0, 0, mode), taps_y.tolist(), -2)
    return _correlate1d(pad2d(rows, 0, 0, rx, rx, mode), taps_x.tolist(), -1)


def gaussian_filter(x: torch.Tensor, sigma: float | Sequence[float], mode: str = "replicate",
                    truncate: float = 4.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter`` over the last two axes (the default mode of
    ``skimage.filters.gaussian`` is ``replicate``)."""
    sy, sx = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    return separable_filter(x, gaussian_kernel1d(sy, truncate), gaussian_kernel1d(sx, truncate), mode)


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str = "reflect101") -> torch.Tensor:
    """Correlate every plane with an odd 2-D ``kernel`` (``cv2.filter2D``), by FFT: the large
    disk kernels of defocus blur (up to 21 x 21) cost the same as a small one this way."""
    planes, shape = _as_planes(x)
    kh, kw = kernel.shape
    padded = pad2d(planes, kh // 2, kh // 2, kw // 2, kw // 2, mode)
    size = padded.shape[-2:]
    flipped = kernel.flip(0, 1).to(x.device, x.dtype)
    spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(flipped, s=size)
    full = torch.fft.irfft2(spectrum, s=size)
    return full[..., kh - 1:kh - 1 + shape[-2], kw - 1:kw - 1 + shape[-1]].reshape(shape)


def box_blur3(x: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(x, (3, 3))``: the 3 x 3 mean with OpenCV's default border."""
    taps = torch.full((3,), 1.0 / 3.0, dtype=torch.float64)
    return separable_filter(x, taps, taps, "reflect101")


def motion_offsets(width: int, angle: float) -> list[tuple[int, int]]:
    """The (dy, dx) pixel offsets of the taps of imagecorruptions' motion blur at ``angle``
    degrees: tap ``i`` lies ``i`` pixels along the direction, rounded half down."""
    point = (width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle)))
    hypot = math.hypot(*point)
    return [(-math.ceil(i * point[0] / hypot - 0.5), -math.ceil(i * point[1] / hypot - 0.5))
            for i in range(width)]


def motion_blur(x: torch.Tensor, radius: int, sigma: float, angles: Sequence[float]) -> torch.Tensor:
    """imagecorruptions' motion blur: a one-sided Gaussian-weighted sum of ``2 * radius + 1``
    copies of the image shifted along a line (edges replicated), one angle per image; taps that
    would shift by a whole image side are dropped (the weights are not renormalised)."""
    width = 2 * radius + 1
    taps = torch.exp(-torch.arange(width, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    weights = (taps / taps.sum()).tolist()
    height, breadth = x.shape[-2:]
    padded = pad2d(x, width - 1, width - 1, width - 1, width - 1, "replicate")
    out = torch.zeros_like(x)
    pad = width - 1
    for b, angle in enumerate(angles):
        for weight, (dy, dx) in zip(weights, motion_offsets(width, float(angle))):
            if abs(dy) >= height or abs(dx) >= breadth:
                break
            out[b].add_(padded[b, ..., pad - dy:pad - dy + height, pad - dx:pad - dx + breadth], alpha=weight)
    return out


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """imagecorruptions' ``clipped_zoom``: crop the centre ``ceil(side / factor)`` and zoom it by
    ``factor`` with SciPy's order-1 zoom (corner-aligned bilinear); the result can be a pixel
    larger than the input, and callers crop its top-left corner."""
    height, width = x.shape[-2:]
    ch, cw = math.ceil(height / float(factor)), math.ceil(width / float(factor))
    top, left = (height - ch) // 2, (width - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    size = (int(round(ch * factor)), int(round(cw * factor)))
    planes = crop.reshape(-1, 1, ch, cw)
    out = F.interpolate(planes, size=size, mode="bilinear", align_corners=True)
    return out.reshape(*x.shape[:-2], *size)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's RGB -> gray weights, keeping a channel axis: ``[N, 1, H, W]``."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)
