"""The torch backend: all 19 corruptions, batched, on float tensors ``[B, 3, H, W]`` in [0, 1],
on any device.

Each corruption is one small function ``f(x, severity, rand) -> x'`` that follows the maths of
imagecorruptions-imaug 1.1.5 (the reference; the constants below are its ImageNet-C
parameters) and draws its random numbers from ``rand`` (one stream per image, see
:mod:`mgbench.corruptions.random`) in the reference's order and layout. :func:`corrupt` then
quantises like the reference, whose output is ``np.uint8`` of a float in [0, 255] (truncation).

Where the torch code leaves the device (say so, because it costs a round trip on a GPU):
- ``jpeg_compression`` encodes and decodes with PIL per image (on a thread pool): the
  torchvision JPEG ops cannot load beside a CPU-only torch, and PIL's libjpeg is the
  reference's codec, so the output is bit-identical to the reference.
- ``frost`` reads and resizes its six frost pictures with OpenCV once per image size (cached on
  the device); the per-image crops are tensor indexing.
Everything else runs on the device; per-image random draws are one small kernel per image.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mgbench.corruptions import ops
from mgbench.corruptions.names import seed_for
from mgbench.corruptions.random import Random, TorchRandom
from mgbench.registry import Registry

Corruption = Callable[[torch.Tensor, int, Random], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")

# Truncation to uint8 like the reference; the epsilon keeps float32 round-off just below an
# integer (where the exact value is that integer) from dropping a level.
_QUANT_EPS = 1e-3


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and truncate to the 256 levels of uint8, as ``np.uint8(clip(v) * 255)``."""
    return x.clamp(0, 1).mul_(255).add_(_QUANT_EPS).floor_().div_(255)


def _hwc(noise: torch.Tensor) -> torch.Tensor:
    """A draw in the reference's HWC layout ``[B, H, W, C]`` -> ``[B, C, H, W]``."""
    return noise.permute(0, 3, 1, 2)


def _size(x: torch.Tensor) -> tuple[int, int, int]:
    return x.shape[-2], x.shape[-1], x.shape[-3]


# ----------------------------------------------------------------------------- noise

@CORRUPTIONS.register("gaussian_noise")
def gaussian_noise(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    scale = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]
    h, w, c = _size(x)
    return x + _hwc(rand.normal((h, w, c), 0.0, scale)).to(x.dtype)


@CORRUPTIONS.register("shot_noise")
def shot_noise(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    photons = [60, 25, 12, 5, 3][severity - 1]
    # The rate of a pixel is its uint8 level / 255 * photons, computed in float64 like the
    # reference (a Poisson sampler's stream depends on its rates).
    means = torch.arange(256, dtype=torch.float64) / 255 * photons
    levels = torch.round(x.permute(0, 2, 3, 1) * 255).long()
    return _hwc(rand.poisson(means, levels)).to(x.dtype) / photons


@CORRUPTIONS.register("impulse_noise")
def impulse_noise(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    """Salt and pepper on each channel independently (scikit-image's ``s&p``, half salt)."""
    amount = [0.03, 0.06, 0.09, 0.17, 0.27][severity - 1]
    h, w, c = _size(x)
    flipped = _hwc(rand.random((h, w, c))) <= amount
    salted = _hwc(rand.random((h, w, c))) <= 0.5
    out = x.clone()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


@CORRUPTIONS.register("speckle_noise")
def speckle_noise(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    scale = [0.15, 0.2, 0.35, 0.45, 0.6][severity - 1]
    h, w, c = _size(x)
    return x + x * _hwc(rand.normal((h, w, c), 0.0, scale)).to(x.dtype)


# ----------------------------------------------------------------------------- blur

@CORRUPTIONS.register("gaussian_blur")
def gaussian_blur(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    sigma = [1, 2, 3, 4, 6][severity - 1]
    return ops.gaussian_filter(x, sigma)


def pull_chains(image: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, delta: int) -> torch.Tensor:
    """One pass of glass blur's local "shuffle", exactly as the reference's loop computes it.

    The reference visits the pixels ``(h, w)`` with ``delta < h <= H - delta`` (and the same for
    ``w``) in descending raster order and assigns ``x[h, w] = x[h + dy, w + dx]``. It is written
    as a swap, but the right-hand side holds views, so it copies (pixels get duplicated, not
    permuted). A pixel therefore takes the value its neighbour has *at that moment*: the
    neighbour's own pulled value if it was visited before (a larger raster index), else its
    original one. Following those links is a chain of strictly increasing indices; all chains
    are followed together, one hop per step, dropping the finished ones (most end at once), so
    the work is about twice the pixel count instead of H x W sequential steps.

    ``image``: ``[B, C, H, W]``; ``dx``, ``dy``: ``[B, n]`` offsets of the n visited pixels in
    visiting order.
    """
    batch, channels, height, width = image.shape
    device = image.device
    rows = torch.arange(height - delta, delta, -1, device=device)
    cols = torch.arange(width - delta, delta, -1, device=device)
    sources = (rows[:, None] * width + cols[None, :]).reshape(-1)            # visiting order
    count = len(sources)
    targets = sources + dy * width + dx                                       # [B, n]
    order = torch.full((height * width,), -1, dtype=torch.long, device=device)
    order[sources] = torch.arange(count, device=device)
    # A link continues through a target that was itself visited earlier (larger index).
    step = order[targets]
    link = torch.where((step >= 0) & (targets > sources), step, -1)          # next visit in the chain
    offset = torch.arange(batch, device=device)[:, None] * count
    flat_link = torch.where(link >= 0, link + offset, -1).reshape(-1)
    flat_targets = targets.reshape(-1)
    origin = flat_targets.clone()                                             # terminal: own target
    waiting = (flat_link >= 0).nonzero().squeeze(1)
    current = flat_link[waiting]
    while waiting.numel():
        following = flat_link[current]
        done = following < 0
        origin[waiting[done]] = flat_targets[current[done]]
        waiting, current = waiting[~done], following[~done]
    pulled = torch.arange(height * width, device=device).repeat(batch, 1)
    pulled[:, sources] = origin.view(batch, count)
    flat = image.reshape(batch, channels, -1)
    return flat.gather(2, pulled[:, None, :].expand(-1, channels, -1)).reshape(image.shape)


@CORRUPTIONS.register("glass_blur")
def glass_blur(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    sigma, delta, iterations = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    h, w, _ = _size(x)
    image = torch.floor(ops.gaussian_filter(x, sigma) * 255 + _QUANT_EPS)
    visited = max(0, h - 2 * delta) * max(0, w - 2 * delta)
    for _ in range(iterations):
        offsets = rand.randint(-delta, delta, (visited, 2))
        image = pull_chains(image, offsets[..., 0], offsets[..., 1], delta)
    return ops.gaussian_filter(image / 255, sigma)


def disk_kernel(radius: int, alias_blur: float) -> torch.Tensor:
    """imagecorruptions' anti-aliased disk: a normalised disk (at least 17 x 17) smoothed by
    OpenCV's Gaussian blur (3 x 3, or 5 x 5 above radius 8)."""
    half, ksize = (8, 3) if radius <= 8 else (radius, 5)
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius ** 2).to(torch.float64)
    disk /= disk.sum()
    offsets = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    taps = torch.exp(-offsets ** 2 / (2 * alias_blur ** 2))
    taps /= taps.sum()
    return ops.separable_filter(disk[None, None], taps, taps, "reflect101")[0, 0]


@functools.lru_cache(maxsize=None)
def _disk(radius: int, alias_blur: float) -> torch.Tensor:
    return disk_kernel(radius, alias_blur)


@CORRUPTIONS.register("defocus_blur")
def defocus_blur(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    radius, alias_blur = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
    return ops.filter2d(x, _disk(radius, alias_blur), "reflect101")


@CORRUPTIONS.register("motion_blur")
def motion_blur(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    radius, sigma = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    angles = rand.uniform((), -45.0, 45.0)
    return ops.motion_blur(x, radius, sigma, angles.tolist())


# The reference's zoom factors, built the same way (np.arange) so the float values agree.
_ZOOMS = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
          np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)]


@CORRUPTIONS.register("zoom_blur")
def zoom_blur(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    h, w, _ = _size(x)
    factors = _ZOOMS[severity - 1]
    out = torch.zeros_like(x)
    for factor in factors:
        out += ops.clipped_zoom(x, float(factor))[..., :h, :w]
    return (x + out) / (len(factors) + 1)


# ----------------------------------------------------------------------------- weather

@CORRUPTIONS.register("snow")
def snow(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    loc, scale, zoom, threshold, radius, sigma, blend = [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ][severity - 1]
    h, w, _ = _size(x)
    layer = rand.normal((h, w), loc, scale)[:, None].to(x.dtype)
    layer = ops.clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    layer = ops.motion_blur(layer, radius, sigma, rand.uniform((), -135.0, -45.0).tolist())
    layer = (torch.round(layer * 255) / 255)[..., :h, :w]
    x = blend * x + (1 - blend) * torch.maximum(x, ops.rgb_to_gray(x) * 1.5 + 0.5)
    return x + layer + layer.flip(-2, -1)


_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


@functools.lru_cache(maxsize=8)
def frost_layers(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The six frost pictures shipped inside imagecorruptions, resized as the reference does for
    an image of this size (grown to cover it, then by 1.1, bicubic), RGB, padded into one tensor
    ``[6, 3, Hmax, Wmax]`` (0..255) with their sizes ``[6, 2]``."""
    import cv2

    pictures = []
    for name in _FROST_FILES:
        ref = importlib.resources.files("imagecorruptions") / "frost" / name
        with importlib.resources.as_file(ref) as path:
            picture = cv2.imread(str(path))
        fh, fw = picture.shape[:2]
        factor = max(1.0, height / fh, width / fw) * 1.1
        size = (int(np.ceil(fw * factor)), int(np.ceil(fh * factor)))
        pictures.append(cv2.resize(picture, dsize=size, interpolation=cv2.INTER_CUBIC)[..., ::-1])
    sizes = torch.tensor([p.shape[:2] for p in pictures], device=device)
    stack = torch.zeros(len(pictures), 3, int(sizes[:, 0].max()), int(sizes[:, 1].max()), device=device)
    for index, picture in enumerate(pictures):
        stack[index, :, :picture.shape[0], :picture.shape[1]] = torch.from_numpy(
            np.ascontiguousarray(picture)).permute(2, 0, 1).to(device, torch.float32)
    return stack, sizes


@CORRUPTIONS.register("frost")
def frost(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    keep, add = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)][severity - 1]
    h, w, _ = _size(x)
    stack, sizes = frost_layers(h, w, x.device)
    pick = rand.randint(0, len(_FROST_FILES)).to(x.device)
    top = rand.randint(0, sizes[pick, 0] - h).to(x.device)
    left = rand.randint(0, sizes[pick, 1] - w).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    channels = torch.arange(3, device=x.device)[None, :, None, None]
    crop = stack[pick[:, None, None, None], channels, rows, cols].to(x.dtype)
    return (keep * x * 255 + add * crop).clamp(0, 255) / 255


def _wibbled(total: torch.Tensor, wibble: float, rand: Random) -> torch.Tensor:
    noise = rand.uniform(tuple(total.shape[1:]), -wibble, wibble).to(torch.float64)
    return (total / 4).to(torch.float64) + wibble * noise


def plasma_fractal(rand: Random, batch: int, mapsize: int, decay: float, device: torch.device) -> torch.Tensor:
    """Diamond-square height maps ``[B, mapsize, mapsize]`` in [0, 1] (float32 storage and
    float64 draws, like the reference)."""
    maps = torch.zeros(batch, mapsize, mapsize, dtype=torch.float32, device=device)
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        corner = maps[:, 0::step, 0::step]
        total = corner + corner.roll(-1, 1)
        total = total + total.roll(-1, 2)
        maps[:, half::step, half::step] = _wibbled(total, wibble, rand).float()
        centre, corner = maps[:, half::step, half::step], maps[:, 0::step, 0::step]
        left = (centre + centre.roll(1, 1)) + (corner + corner.roll(-1, 2))
        maps[:, 0::step, half::step] = _wibbled(left, wibble, rand).float()
        top = (centre + centre.roll(1, 2)) + (corner + corner.roll(-1, 1))
        maps[:, half::step, 0::step] = _wibbled(top, wibble, rand).float()
        step //= 2
        wibble /= decay
    maps -= maps.amin(dim=(1, 2), keepdim=True)
    return maps / maps.amax(dim=(1, 2), keepdim=True)


@CORRUPTIONS.register("fog")
def fog(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    strength, decay = [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)][severity - 1]
    h, w, _ = _size(x)
    mapsize = 1 << (max(h, w) - 1).bit_length()
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    layer = plasma_fractal(rand, x.shape[0], mapsize, decay, x.device)[:, None, :h, :w].to(x.dtype)
    return (x + strength * layer) * peak / (peak + strength)


@CORRUPTIONS.register("brightness")
def brightness(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    """HSV value + c. Raising V with H and S fixed scales the pixel by V'/V (black turns grey)."""
    shift = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
    value = x.amax(dim=1, keepdim=True)
    raised = (value + shift).clamp(max=1.0)
    ratio = raised / torch.where(value > 0, value, 1.0)
    return torch.where(value > 0, x * ratio, raised.expand_as(x))


@CORRUPTIONS.register("spatter")
def spatter(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    loc, scale, sigma, threshold, intensity, mud = [
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ][severity - 1]
    h, w, _ = _size(x)
    liquid = ops.gaussian_filter(rand.normal((h, w), loc, scale)[:, None].to(x.dtype), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if not mud:
        return x + _water(liquid, intensity) * _colour(x, (175, 238, 238))
    mask = ops.gaussian_filter((liquid > threshold).to(x.dtype), intensity)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return x * (1 - mask) + _colour(x, (63, 42, 20)) * mask


def _colour(x: torch.Tensor, rgb: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(rgb, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) / 255


def _water(liquid: torch.Tensor, intensity: float) -> torch.Tensor:
    """Spatter's water drops, severities 1-3: the liquid's edges (Canny), the distance to them
    (capped at 20), equalised, embossed and smoothed, times the liquid; OpenCV's steps on
    ``[B, 1, H, W]`` uint8-valued tensors."""
    levels = torch.floor(liquid * 255).clamp(0, 255)
    dist = edge_distance(canny(levels, 50, 150), cap=20)
    dist = torch.floor(ops.box_blur3(dist))
    dist = equalize_hist(dist)
    emboss = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]
    dist = torch.round(_shifted_sum(ops.pad2d(dist, 1, 1, 1, 1, "reflect101"), emboss)).clamp(0, 255)
    dist = torch.round(ops.box_blur3(dist))
    drops = levels * dist
    peak = drops.amax(dim=(2, 3), keepdim=True)
    # The reference divides by the peak even when no drop survived (0/0); we leave such an image clean.
    return torch.where(peak > 0, drops / torch.where(peak > 0, peak, torch.ones_like(peak)), drops) * intensity


def _shifted_sum(padded: torch.Tensor, kernel: list[list[int]]) -> torch.Tensor:
    """Correlation of a padded ``[..., H + 2, W + 2]`` tensor with a small integer kernel, as
    a sum of shifted views (several times faster than ``conv2d`` for one channel on a CPU)."""
    size = len(kernel)
    height, width = padded.shape[-2] - size + 1, padded.shape[-1] - size + 1
    out = torch.zeros_like(padded[..., :height, :width])
    for dy, row in enumerate(kernel):
        for dx, weight in enumerate(row):
            if weight:
                out.add_(padded[..., dy:dy + height, dx:dx + width], alpha=weight)
    return out


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """3 x 3 binary dilation (8-neighbourhood), separably."""
    rows = mask.clone()
    rows[..., 1:, :] |= mask[..., :-1, :]
    rows[..., :-1, :] |= mask[..., 1:, :]
    out = rows.clone()
    out[..., :, 1:] |= rows[..., :, :-1]
    out[..., :, :-1] |= rows[..., :, 1:]
    return out


def canny(levels: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """OpenCV's Canny (3 x 3 Sobel, L1 magnitude, its integer direction test, 8-connected
    hysteresis) on uint8-valued ``[B, 1, H, W]``; returns a bool edge map."""
    padded = ops.pad2d(levels, 1, 1, 1, 1, "replicate")
    gx = _shifted_sum(padded, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]).round().int()
    gy = _shifted_sum(padded, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]).round().int()
    mag = gx.abs() + gy.abs()
    m = F.pad(mag, (1, 1, 1, 1))  # neighbours outside the image count as 0
    h, w = mag.shape[-2:]

    def at(dy: int, dx: int) -> torch.Tensor:
        return m[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    tg22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)
    ax, ay = gx.abs().long(), gy.abs().long() << 15
    tg22x = ax * tg22
    tg67x = tg22x + (ax << 16)
    horizontal = (mag > at(0, -1)) & (mag >= at(0, 1))
    vertical = (mag > at(-1, 0)) & (mag >= at(1, 0))
    same_sign = (gx ^ gy) >= 0
    diagonal = torch.where(same_sign, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1)))
    peak = torch.where(ay < tg22x, horizontal, torch.where(ay > tg67x, vertical, diagonal))
    candidate = peak & (mag > math.floor(low))
    edges = candidate & (mag > math.floor(high))
    for _ in range(h * w):  # grow strong edges along weak ones until nothing changes
        for _ in range(8):
            edges = _dilate(edges) & candidate
        grown = _dilate(edges) & candidate
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def edge_distance(edges: torch.Tensor, cap: int) -> torch.Tensor:
    """Euclidean distance of every pixel to the nearest edge pixel, capped at ``cap`` (exact;
    OpenCV's ``distanceTransform(DIST_L2, 5)`` is a 5 x 5 chamfer approximation of it)."""
    h, w = edges.shape[-2:]
    far = float(cap + 1)
    ys = torch.arange(h, device=edges.device, dtype=torch.float32).view(1, 1, h, 1)
    above = torch.where(edges, ys, torch.full_like(ys, -1e6)).cummax(dim=2).values
    below = torch.where(edges, ys, torch.full_like(ys, 1e6)).flip(2).cummin(dim=2).values.flip(2)
    column = torch.minimum(ys - above, below - ys).clamp(max=far) ** 2
    padded = F.pad(column, (cap, cap), value=far ** 2)
    best = column
    for shift in range(1, cap + 1):
        best = torch.minimum(best, padded[..., cap - shift:cap - shift + w] + shift ** 2)
        best = torch.minimum(best, padded[..., cap + shift:cap + shift + w] + shift ** 2)
    return best.sqrt().clamp(max=cap).to(torch.float32)


def equalize_hist(levels: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image on uint8-valued ``[B, 1, H, W]``."""
    batch = levels.shape[0]
    flat = levels.reshape(batch, -1).long()
    total = flat.shape[1]
    ones = torch.ones_like(flat, dtype=torch.float32)
    hist = torch.zeros(batch, 256, device=levels.device).scatter_add_(1, flat, ones)
    first = (hist > 0).float().argmax(dim=1, keepdim=True)
    first_count = hist.gather(1, first)
    # A tensor divided by a tensor: ``255.0 / t`` is computed as 255 * (1 / t), rounded twice,
    # and lands one float32 step off OpenCV's scale, which moves products that are exact halves.
    scale = torch.full_like(first_count, 255.0) / (total - first_count).clamp(min=1)
    lut = torch.round((hist.cumsum(1) - first_count) * scale).clamp(0, 255)
    lut = torch.where(first_count == total, first.float().expand(-1, 256), lut)
    return lut.gather(1, flat).reshape(levels.shape).to(levels.dtype)


# ----------------------------------------------------------------------------- digital

@CORRUPTIONS.register("contrast")
def contrast(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    factor = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


@CORRUPTIONS.register("saturate")
def saturate(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    """HSV saturation * a + b with hue and value fixed, in closed form: each channel keeps its
    place between the minimum and maximum (grey pixels have hue 0, i.e. they turn red)."""
    gain, offset = [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)][severity - 1]
    value = x.amax(dim=1, keepdim=True)
    spread = value - x.amin(dim=1, keepdim=True)
    sat = torch.where(value > 0, spread / torch.where(value > 0, value, torch.ones_like(value)), 0.0)
    grey = torch.tensor([0.0, 1.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    place = torch.where(spread > 0, (value - x) / torch.where(spread > 0, spread, 1.0), grey)
    new_sat = (sat * gain + offset).clamp(0, 1)
    return value * (1 - new_sat * place)


_JPEG_POOL: ThreadPoolExecutor | None = None


def _forget_jpeg_pool() -> None:
    """A forked process (a DataLoader worker, a process pool) inherits the pool object but none
    of its threads: work handed to it would wait forever, so the child starts a pool of its own."""
    global _JPEG_POOL
    _JPEG_POOL = None


os.register_at_fork(after_in_child=_forget_jpeg_pool)


def _jpeg_one(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


@CORRUPTIONS.register("jpeg_compression")
def jpeg_compression(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    global _JPEG_POOL
    quality = [25, 18, 15, 10, 7][severity - 1]
    images = torch.round(x * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if _JPEG_POOL is None:
        _JPEG_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mgbench-jpeg")
    decoded = list(_JPEG_POOL.map(_jpeg_one, images, [quality] * len(images)))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(x.device, x.dtype)
    return out / 255


def _box_weights(size: int, out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _box_matrix(size, out).to(device, dtype)


@functools.lru_cache(maxsize=64)
def _box_matrix(size: int, out: int) -> torch.Tensor:
    """PIL's BOX reduction as a matrix ``[out, size]`` (float64, CPU; built once per size, not per
    batch), computed the way PIL's ``precompute_coeffs`` does in float64 (the window of input
    pixels around each output pixel's centre, then the box test on ``(i - centre + 0.5) / scale``
    by multiplying with the inverse scale), so that a pixel on a box edge falls on the same side
    as in PIL: with a division instead, 37 px reduced to 22 already put some on the other side."""
    scale = size / out
    support, inverse = 0.5 * max(scale, 1.0), 1.0 / max(scale, 1.0)
    weights = torch.zeros(out, size, dtype=torch.float64)
    for j in range(out):
        centre = (j + 0.5) * scale
        for i in range(max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size)):
            if -0.5 < (i - centre + 0.5) * inverse <= 0.5:
                weights[j, i] = 1.0
    return weights / weights.sum(dim=1, keepdim=True)


@CORRUPTIONS.register("pixelate")
def pixelate(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    """PIL: BOX down to ``int(side * c)`` (columns, then rows, each pass rounded to uint8), then
    NEAREST back up."""
    factor = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
    h, w, _ = _size(x)
    small_h, small_w = int(h * factor), int(w * factor)
    levels = x * 255  # PIL rounds each pass half up (fixed point), not half to even
    levels = torch.floor(levels @ _box_weights(w, small_w, x.device, x.dtype).t() + 0.5)
    levels = torch.floor(_box_weights(h, small_h, x.device, x.dtype) @ levels + 0.5)
    rows, cols = _nearest(h, small_h, x.device), _nearest(w, small_w, x.device)
    return levels.index_select(-2, rows).index_select(-1, cols) / 255


def _nearest(size: int, out: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(_nearest_index(size, out), device=device)


@functools.lru_cache(maxsize=64)
def _nearest_index(size: int, out: int) -> tuple[int, ...]:
    """The source pixel of each of ``size`` pixels when PIL's NEAREST enlarges ``out`` pixels to
    ``size``: its affine transform starts half a step in and adds the step ``out / size`` once
    per pixel (float64), then truncates; at an exact tie the sum can land one pixel lower than
    ``(i + 0.5) * out / size`` (40 px from 16: pixel 7 reads 2, not 3)."""
    step, position, index = out / size, 0.5 * (out / size), []
    for _ in range(size):
        index.append(int(position))
        position += step
    return tuple(index)


@CORRUPTIONS.register("elastic_transform")
def elastic_transform(x: torch.Tensor, severity: int, rand: Random) -> torch.Tensor:
    """imagecorruptions' elastic transform (not the original ImageNet-C one, which also applied a
    random affine map): smoothed uniform displacement fields, bilinear sampling, mirrored
    edges. Its smoothing scales with the image; its displacement (``alpha``) is in pixels."""
    alpha = 250 * [0.05, 0.065, 0.085, 0.1, 0.12][severity - 1]
    h, w, _ = _size(x)
    sigma = (h * 0.01, w * 0.01)
    limit = h * 0.005
    fields = torch.cat([rand.uniform((h, w), -limit, limit)[:, None], rand.uniform((h, w), -limit, limit)[:, None]], 1)
    dx, dy = (ops.gaussian_filter(fields.to(x.dtype), sigma, mode="symmetric", truncate=3) * alpha).unbind(1)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    grid = torch.stack([(2 * (xs + dx) + 1) / w - 1, (2 * (ys + dy) + 1) / h - 1], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# ----------------------------------------------------------------------------- entry points

def corrupt(x: torch.Tensor, name: str, severity: int, rand: Random) -> torch.Tensor:
    """One corruption at one severity on ``[B, 3, H, W]`` in [0, 1], quantised to uint8 levels."""
    return quantise(CORRUPTIONS.get(name)(x, severity, rand))


class TorchBackend:
    """The fast path: batched corruptions on the batch's device, seeded per image."""

    name = "torch"

    def __call__(self, x: torch.Tensor, ids: Sequence[int], name: str, severity: int) -> torch.Tensor:
        rand = TorchRandom([seed_for(int(i), name, severity) for i in ids], x.device)
        return corrupt(x, name, severity, rand)
