"""How closely the torch backend reproduces the reference, measured.

Two numbers per corruption and severity, on the same images:

- ``replay_mae``: the torch code fed the *reference's own random numbers*
  (:class:`NumpyReplay` replays, per image, NumPy's legacy generator after
  ``np.random.seed(seed)``, scikit-image's ``default_rng(seed)`` for impulse noise, and numba's
  generator for glass blur). It isolates the implementation: 0 means identical output. Shot
  noise is the exception: its Poisson counts depend on the rates, computed in float32 here.
- ``effect_ref``/``effect_torch``: the mean absolute change from the clean image under each
  backend with its own seeding (in uint8 levels): independent draws of the same random
  process must change images by the same amount.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from mgbench.corruptions.names import seed_for
from mgbench.corruptions.reference import ReferenceBackend, from_uint8
from mgbench.corruptions.torch_backend import TorchBackend, corrupt


def _glass_offsets(seed: int, count: int, delta: int) -> np.ndarray:
    """The offsets numba's generator gives the reference's glass blur loop after seeding
    (``np.random.randint(-delta, delta, size=(2,))`` per visited pixel)."""
    from numba import njit

    global _GLASS_DRAWS
    if _GLASS_DRAWS is None:
        @njit(cache=False)
        def draws(seed: int, count: int, delta: int) -> np.ndarray:
            np.random.seed(seed)
            out = np.empty((count, 2), dtype=np.int64)
            for i in range(count):
                out[i] = np.random.randint(-delta, delta, size=(2,))
            return out

        _GLASS_DRAWS = draws
    return _GLASS_DRAWS(seed, count, delta)


_GLASS_DRAWS = None


class NumpyReplay:
    """A :class:`mgbench.corruptions.random.Random` that replays the reference's generators."""

    def __init__(self, seeds: Sequence[int], name: str, max_glass_iterations: int = 3):
        self.seeds = [int(s) for s in seeds]
        self.name = name
        self.legacy = [np.random.RandomState(s) for s in self.seeds]
        self.modern = [np.random.default_rng(s) for s in self.seeds]
        self.max_glass_iterations = max_glass_iterations
        self.glass: list[np.ndarray] | None = None
        self.glass_used = 0

    @staticmethod
    def _stack(values: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(v) for v in values]))

    def normal(self, shape: tuple[int, ...], loc: float = 0.0, scale: float = 1.0) -> torch.Tensor:
        return self._stack([rs.normal(loc=loc, scale=scale, size=shape) for rs in self.legacy])

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return self._stack([rs.uniform(low, high, size=shape or None) for rs in self.legacy])

    def random(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._stack([rng.random(shape) for rng in self.modern])

    def randint(self, low: int, high: torch.Tensor | int, shape: tuple[int, ...] = ()) -> torch.Tensor:
        if self.name == "glass_blur":
            count = shape[0]
            if self.glass is None:
                total = count * self.max_glass_iterations
                self.glass = [_glass_offsets(s, total, -low) for s in self.seeds]
            start, self.glass_used = self.glass_used, self.glass_used + count
            return self._stack([g[start:start + count] for g in self.glass])
        highs = high.tolist() if isinstance(high, torch.Tensor) else [high] * len(self.seeds)
        return self._stack([rs.randint(low, int(h), size=shape or None) for rs, h in zip(self.legacy, highs)])

    def poisson(self, means: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        table = means.double().cpu().numpy()
        return self._stack([rs.poisson(table[i]) for rs, i in zip(self.legacy, index.cpu().numpy())])


def synthetic_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Deterministic natural-looking test images (uint8 NHWC): a smooth two-colour gradient,
    a few filled ellipses and bars of random colours, mild texture, slightly blurred, so that
    blurs, noise statistics and colour changes all have something to act on."""
    from scipy.ndimage import gaussian_filter

    images = np.empty((count, size, size, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:size, 0:size] / size
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        angle = rng.uniform(0, np.pi)
        ramp = (np.cos(angle) * xs + np.sin(angle) * ys)[..., None]
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) or 1)
        image = rng.uniform(0, 1, 3) * (1 - ramp) + rng.uniform(0, 1, 3) * ramp
        for _ in range(rng.integers(3, 7)):
            cy, cx, ry, rx = rng.uniform(0.1, 0.9, 2).tolist() + rng.uniform(0.05, 0.3, 2).tolist()
            inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
            image[inside] = rng.uniform(0, 1, 3)
        bar = rng.integers(0, size - size // 8)
        image[:, bar:bar + size // 16] = rng.uniform(0, 1, 3)
        image += rng.normal(0, 0.03, image.shape)
        image = gaussian_filter(image, sigma=(size / 224, size / 224, 0))
        images[index] = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return images


def measure(images: np.ndarray, names: Sequence[str], severities: Sequence[int],
            dtype: torch.dtype = torch.float32) -> pd.DataFrame:
    """Fidelity rows (corruption, severity, size, replay_mae, replay_max, effect_ref,
    effect_torch) on uint8 NHWC ``images``, whose ids are their positions."""
    reference = ReferenceBackend(workers=0)
    torch_backend = TorchBackend()
    x = from_uint8(images, torch.zeros((), dtype=dtype))
    ids = list(range(len(images)))
    clean = images.astype(np.float64)
    rows = []
    for name in names:
        for severity in severities:
            seeds = [seed_for(i, name, severity) for i in ids]
            ref = reference.corrupt_uint8(images, seeds, name, severity).astype(np.float64)
            replay = corrupt(x, name, severity, NumpyReplay(seeds, name))
            replay = np.round(replay.double().permute(0, 2, 3, 1).numpy() * 255)
            own = np.round(torch_backend(x, ids, name, severity).double().permute(0, 2, 3, 1).numpy() * 255)
            diff = np.abs(replay - ref)
            rows.append({
                "corruption": name, "severity": severity, "size": images.shape[1],
                "replay_mae": float(diff.mean()), "replay_max": float(diff.max()),
                "effect_ref": float(np.abs(ref - clean).mean()), "effect_torch": float(np.abs(own - clean).mean()),
            })
    return pd.DataFrame(rows)
