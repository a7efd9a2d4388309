"""The reference backend: imagecorruptions-imaug itself, made deterministic.

imagecorruptions draws from NumPy's *global* generator and takes no seed, except two
functions that keep randomness of their own: ``impulse_noise`` calls scikit-image's
``random_noise``, which makes a fresh ``np.random.default_rng(seed)`` (unseeded by default),
and ``glass_blur`` shuffles pixels in a numba function with numba's own generator, seeded from
an unseeded ``default_rng`` by default. Both accept a ``seed`` argument, so every image is
corrupted after ``np.random.seed(seed)`` *and* with ``seed=seed`` for those two; the other
helpers it calls (OpenCV, SciPy, scikit-image filters) are deterministic. The caller's global
NumPy state is restored afterwards.

A batch is spread over a process pool (spawned once and reused: numba compiles glass blur's
loop once per process, about 4 s, which dominates a short run). Seeds depend only on the image,
so the pool changes nothing in the output.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from multiprocessing import get_context
from typing import Sequence

import numpy as np
import torch

from mgbench.corruptions.names import seed_for

OWN_SEED = frozenset({"impulse_noise", "glass_blur"})  # functions with randomness of their own

_POOLS: dict[int, ProcessPoolExecutor] = {}
# A forked process inherits the pool objects but not their management threads (work handed to
# them would wait forever): it starts pools of its own.
os.register_at_fork(after_in_child=_POOLS.clear)


def corrupt_one(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``imagecorruptions.corrupt`` of one uint8 HWC image, seeded; returns uint8 HWC."""
    from imagecorruptions import corrupt

    state = np.random.get_state()
    try:
        np.random.seed(seed)
        extra = {"seed": seed} if name in OWN_SEED else {}
        return corrupt(image, severity=severity, corruption_name=name, **extra)
    finally:
        np.random.set_state(state)


def _pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    return _POOLS[workers]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] floats that came from uint8 (k / 255) -> the exact uint8 NHWC array."""
    return torch.round(x.detach() * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(like.device, like.dtype) / 255


class ReferenceBackend:
    """imagecorruptions per image, seeded per image; ``workers`` processes (default: one per
    core; 0 or 1 runs in this process)."""

    name = "reference"

    def __init__(self, workers: int | None = None):
        self.workers = (os.cpu_count() or 1) if workers is None else workers

    def corrupt_uint8(self, images: np.ndarray, seeds: Sequence[int], name: str, severity: int) -> np.ndarray:
        if self.workers > 1 and len(images) > 1:
            chunk = max(1, len(images) // (4 * self.workers))
            results = list(_pool(self.workers).map(corrupt_one, images, repeat(name), repeat(severity), seeds,
                                                   chunksize=chunk))
        else:
            results = [corrupt_one(image, name, severity, seed) for image, seed in zip(images, seeds)]
        return np.stack(results)

    def __call__(self, x: torch.Tensor, ids: Sequence[int], name: str, severity: int) -> torch.Tensor:
        seeds = [seed_for(int(i), name, severity) for i in ids]
        return from_uint8(self.corrupt_uint8(to_uint8(x), seeds, name, severity), x)
