"""Attack protocols (stored as ``protocol``).

``honest`` (default): budgets in pixel units of [0, 1] images, random start, projection and
clipping to [0, 1] after every step; the threat model RobustBench and AutoAttack use.

``mgnet-paper``: the attack of the official MGNet code (``utils/attacks/pgd.py``, commit 534b14e),
reproduced exactly so that the paper's numbers can be put beside honest ones. That code attacks
the *normalised* tensor ``z = (x - mean) / std``: ``z <- z + clamp(z + a * sign(grad_z L) - z0,
-eps, eps)`` for 10 steps, ``eps = 4/255`` and ``a = 1/255`` in normalised units, no random
start, no clipping to the valid image range, loss = cross-entropy of the final step's logits,
the gradient rescaler left on, and the final iterate kept. Because ``grad_z = std * grad_x`` with
``std > 0``, the signs agree and the attack is the same as a pixel-space L-inf attack with the
per-channel budget ``eps * std`` and step ``a * std``, without clipping. With ImageNet's std
(about 0.225) ``4/255`` is about ``0.9/255`` in pixels; the images may leave [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mgbench.errors import InputError
from mgbench.models.layers import Normalize

PROTOCOLS = ("honest", "mgnet-paper")
PAPER_STEPS = 10
PAPER_STEP_SIZE = 1 / 255


def normalize_layer(model: nn.Module, name: str | None = None) -> Normalize:
    """The model's input normalisation (its first ``Normalize`` module), or a one-line InputError."""
    for module in model.modules():
        if isinstance(module, Normalize):
            return module
    raise InputError(
        f"protocol mgnet-paper measures eps in normalised units, but {name or type(model).__name__} has no "
        "mgbench.models.layers.Normalize layer to read the std from: use protocol honest"
    )


def paper_budget(model: nn.Module, value: float, device: torch.device) -> torch.Tensor:
    """A normalised-units amount (eps or step) as a per-channel pixel-space [1, C, 1, 1] tensor."""
    std = normalize_layer(model).std.detach().to(device=device, dtype=torch.float32)
    return value * std
