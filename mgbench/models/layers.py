"""Small shared building blocks."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The embedded digits: dark backgrounds with bright strokes; these roughly centre and scale them.
DIGITS_MEAN = (0.2, 0.2, 0.2)
DIGITS_STD = (0.25, 0.25, 0.25)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` on [0, 1] NCHW images, as the first layer of every model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Classifier(nn.Module):
    """A plain classifier: ``net(normalize(x))``; input [0, 1] NCHW, output logits."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
