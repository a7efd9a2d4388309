"""Per-image random streams for the torch backend.

Every image of a batch draws from its own ``torch.Generator`` (on the batch's device), seeded
with :func:`mgbench.corruptions.names.seed_for` of its dataset index, corruption and severity.
A corruption asks for a draw once for the whole batch (``rand.normal((H, W, 3))``) and gets a
``[B, *shape]`` tensor whose row ``b`` came from image ``b``'s generator, so an image's numbers
never depend on its batch, its position or the batch size.

The draws are requested in the order, shape and layout (HWC) in which imagecorruptions draws
from NumPy, so a stream that replays NumPy's generator
(:class:`mgbench.corruptions.fidelity.NumpyReplay`) makes the torch code produce the
reference's output; that is how fidelity is measured. CPU and CUDA generators give different
streams: results are reproducible per device type, not bit-identical across them.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch


class Random(Protocol):
    """Batched draws, one stream per image; shapes exclude the batch dimension."""

    def normal(self, shape: tuple[int, ...], loc: float = 0.0, scale: float = 1.0) -> torch.Tensor: ...

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor: ...

    def random(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform on [0, 1)."""

    def randint(self, low: int, high: torch.Tensor | int, shape: tuple[int, ...] = ()) -> torch.Tensor:
        """Integers in [low, high); ``high`` may differ per image (a [B] tensor)."""

    def poisson(self, means: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Poisson counts with mean ``means[index]``: ``means`` is a short table [L], ``index``
        an integer tensor [B, ...]."""


class TorchRandom:
    """One ``torch.Generator`` per image, on ``device``."""

    def __init__(self, seeds: Sequence[int], device: torch.device, dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(seed))
            self.generators.append(generator)

    def __len__(self) -> int:
        return len(self.generators)

    def _fill(self, shape: tuple[int, ...], draw) -> torch.Tensor:
        """Row b of a fresh [B, *shape] tensor drawn from image b's generator, in place."""
        out = torch.empty((len(self.generators), *shape), device=self.device, dtype=self.dtype)
        for row, generator in zip(out, self.generators):
            draw(shape, generator=generator, out=row)
        return out

    def normal(self, shape: tuple[int, ...], loc: float = 0.0, scale: float = 1.0) -> torch.Tensor:
        return self._fill(shape, torch.randn).mul_(scale).add_(loc)

    def random(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._fill(shape, torch.rand)

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return self.random(shape).mul_(high - low).add_(low)

    def randint(self, low: int, high: torch.Tensor | int, shape: tuple[int, ...] = ()) -> torch.Tensor:
        highs = high.tolist() if isinstance(high, torch.Tensor) else [high] * len(self.generators)
        return torch.stack([torch.randint(low, int(h), shape, generator=g, device=self.device)
                            for g, h in zip(self.generators, highs)])

    def poisson(self, means: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # torch's own sampler: on a CPU as fast as NumPy's; a table-driven inversion measured
        # no faster, and this one is a library's.
        rates = means.to(self.device, self.dtype)[index.to(self.device)]
        return torch.stack([torch.poisson(r, generator=g) for r, g in zip(rates, self.generators)])
