"""TDAM, the Top-Down Attention Module (Jaiswal et al., ECCV 2022), in torchvision ResNets.

Inside a residual block, a "bottom" tensor ``X0`` and a "top" tensor ``XN`` (the last conv + BN
output before the residual add) are ``m`` layers apart. A searchlight is computed from the pooled
top (and, in the "joint" variant, the pooled bottom) with bias-free 1x1 convolutions, reduction
``C_top / 16``::

    joint: S = W_s [ReLU(W_t p(XN)) ; ReLU(W_b p(X0))]      top: S = W_s ReLU(W_t p(XN))

and modulates the bottom, channel then spatial: ``X' = X0 * sigmoid(S)``,
``A = sum_c S_c X'_c``, ``X0 <- X' * sigmoid(A)``. The ``m`` layers between bottom and top are
recomputed from the modulated bottom, T steps in all, each step ``t >= 1`` with its own
BatchNorms (the convolutions are shared); the block output is ``ReLU(top_{T-1} + shortcut(x))``.

Released configurations, applied to every block of ``layer3`` and ``layer4``:
- Bottleneck (ResNet-50): T=2, m=1: bottom = output of the second ReLU, top = bn3's output,
  conv3 + bn3 recomputed;
- BasicBlock (ResNet-18, and the digits ResNet here): T=2, m=2: bottom = the block input,
  top = bn2's output, conv1 + bn1 + ReLU + conv2 + bn2 recomputed.

The model is scored with the single forward pass above (the final step's top); the official
repository's "any time step correct" validation is not used anywhere.

Initialisation: timm's, as the official code builds with ``zero_init_last_bn=True``: Kaiming
(fan-out) convolutions, BatchNorms at 1/0, then the last BatchNorm gamma of every residual block
is set to zero so that each block starts as its shortcut. In a TD block the last BatchNorm
before the residual add is the final step's (``step_norms[-1][-1]``), and that is the one zeroed
here (``zero_init="last"``, default). The official code zeroes the block's ``bn2``/``bn3``
attribute, which in a TD block is step 0's: the step-0 top is then exactly zero, ReLU's gradient
at 0 is 0, and the searchlight's top path and that BatchNorm never receive a gradient, so the
top-down signal stays off for the whole training. ``zero_init="official"`` reproduces that for
comparison (docs/seed-methods.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from mgbench.errors import InputError
from mgbench.models._registry import register_model
from mgbench.models.layers import DIGITS_MEAN, DIGITS_STD, IMAGENET_MEAN, IMAGENET_STD, Classifier
from mgbench.models.resnet import resnet_backbone

VARIANTS = ("joint", "top")
ZERO_INITS = ("last", "official")
TD_STAGES = ("layer3", "layer4")
# The layers of a torchvision block as (conv, bn, ReLU after the BN?) units, in order, and the
# released feedback distance m (how many of the last units are recomputed).
_UNITS = {
    BasicBlock: ((("conv1", "bn1", True), ("conv2", "bn2", False)), 2),
    Bottleneck: ((("conv1", "bn1", True), ("conv2", "bn2", True), ("conv3", "bn3", False)), 1),
}


class Searchlight(nn.Module):
    """The TD searchlight: computes ``S`` [B, C_bottom, 1, 1] and returns the modulated bottom."""

    def __init__(self, bottom_channels: int, top_channels: int, joint: bool, reduction: int = 16):
        super().__init__()
        hidden = max(1, top_channels // reduction)
        self.top = nn.Conv2d(top_channels, hidden, 1, bias=False)
        self.bottom = nn.Conv2d(bottom_channels, hidden, 1, bias=False) if joint else None
        self.out = nn.Conv2d(hidden * (2 if joint else 1), bottom_channels, 1, bias=False)

    def light(self, bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.top(top.mean((2, 3), keepdim=True)))
        if self.bottom is not None:
            hidden = torch.cat([hidden, torch.relu(self.bottom(bottom.mean((2, 3), keepdim=True)))], dim=1)
        return self.out(hidden)

    def forward(self, bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        light = self.light(bottom, top)
        channel = bottom * torch.sigmoid(light)
        spatial = (light * channel).sum(1, keepdim=True)
        return channel * torch.sigmoid(spatial)


class TopDownBlock(nn.Module):
    """A torchvision BasicBlock/Bottleneck with top-down feedback over ``steps`` steps.

    It adopts the wrapped block's layers under their own names (``conv1``, ``bn1``, ...,
    ``downsample``), so a plain ResNet checkpoint's block weights load into it unchanged; the
    additions are ``searchlight`` and ``step_norms[t-1][j]``, the BatchNorm of the j-th
    recomputed unit at step t.
    """

    def __init__(self, block: BasicBlock | Bottleneck, steps: int, variant: str):
        super().__init__()
        if type(block) not in _UNITS:
            raise TypeError(f"TDAM wraps torchvision BasicBlock or Bottleneck, not {type(block).__name__}")
        for name, child in block.named_children():
            self.add_module(name, child)
        self.downsample = block.downsample  # None (not a child) where the shortcut is the identity
        units, distance = _UNITS[type(block)]
        self.fixed = units[: len(units) - distance]
        self.recurrent = units[len(units) - distance:]
        self.steps = steps
        bottom_channels = getattr(self, self.recurrent[0][0]).in_channels
        top_channels = getattr(self, self.recurrent[-1][1]).num_features
        self.searchlight = Searchlight(bottom_channels, top_channels, joint=variant == "joint")
        self.step_norms = nn.ModuleList(
            nn.ModuleList(nn.BatchNorm2d(getattr(self, bn).num_features) for _, bn, _ in self.recurrent)
            for _ in range(1, steps)
        )
        for module in self.searchlight.modules():  # torchvision's ResNet initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def zero_init_last_bn(self, official: bool = False) -> None:
        """Zero the gamma of the last BatchNorm before the residual add (the final step's), or,
        with ``official``, of the block's own last BatchNorm attribute (step 0's), as the
        official code does."""
        last = getattr(self, self.recurrent[-1][1]) if official else self.step_norms[-1][-1]
        nn.init.zeros_(last.weight)

    def _run(self, units: Sequence[tuple[str, str, bool]], x: torch.Tensor, norms: Sequence[nn.Module]) -> torch.Tensor:
        for (conv, _, act), norm in zip(units, norms):
            x = norm(getattr(self, conv)(x))
            if act:
                x = self.relu(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        bottom = self._run(self.fixed, x, [getattr(self, bn) for _, bn, _ in self.fixed])
        for t in range(self.steps):
            norms = [getattr(self, bn) for _, bn, _ in self.recurrent] if t == 0 else self.step_norms[t - 1]
            top = self._run(self.recurrent, bottom, norms)
            if t < self.steps - 1:
                bottom = self.searchlight(bottom, top)
        return self.relu(top + shortcut)


def td_resnet(backbone: str, num_classes: int, mean: Sequence[float], std: Sequence[float],
              variant: str = "joint", steps: int = 2, zero_init: str = "last") -> Classifier:
    """A ResNet whose ``layer3`` and ``layer4`` blocks all carry TDAM (released configuration),
    initialised as timm's ResNet with ``zero_init_last_bn=True`` (see the module docstring)."""
    if zero_init not in ZERO_INITS:
        raise InputError(f"unknown TDAM zero_init {zero_init!r}: use one of {', '.join(ZERO_INITS)}")
    if variant not in VARIANTS:
        raise InputError(f"unknown TDAM variant {variant!r}: use one of {', '.join(VARIANTS)}")
    if not isinstance(steps, int) or steps < 2:
        raise InputError(f"TDAM steps must be a whole number of at least 2 (1 is the plain ResNet), not {steps!r}")
    net, dim = resnet_backbone(backbone)
    net.fc = nn.Linear(dim, num_classes)
    for stage in TD_STAGES:
        layer = getattr(net, stage)
        for index, block in enumerate(layer):
            layer[index] = TopDownBlock(block, steps, variant)
    for block in net.modules():
        if isinstance(block, TopDownBlock):
            block.zero_init_last_bn(official=zero_init == "official")
        elif isinstance(block, BasicBlock):
            nn.init.zeros_(block.bn2.weight)
        elif isinstance(block, Bottleneck):
            nn.init.zeros_(block.bn3.weight)
    return Classifier(net, mean, std)


_OPTIONS = "variant joint|top, steps T (default 2), zero_init last|official"


@register_model("tdam-tiny", family="tdam", description=f"TDAM in the small digits ResNet (m=2); {_OPTIONS}",
                input_size=64)
def tdam_tiny(num_classes: int = 10, mean=DIGITS_MEAN, std=DIGITS_STD, variant: str = "joint",
              steps: int = 2, zero_init: str = "last") -> Classifier:
    return td_resnet("resnet-tiny", num_classes, mean, std, variant, steps, zero_init)


@register_model("tdam-r18", family="tdam", description=f"TDAM in ResNet-18 (m=2); {_OPTIONS}", input_size=224)
def tdam_r18(num_classes: int = 100, mean=IMAGENET_MEAN, std=IMAGENET_STD, variant: str = "joint",
             steps: int = 2, zero_init: str = "last") -> Classifier:
    return td_resnet("resnet18", num_classes, mean, std, variant, steps, zero_init)


@register_model("tdam-r50", family="tdam", description=f"TDAM in ResNet-50 (m=1); {_OPTIONS}", input_size=224)
def tdam_r50(num_classes: int = 100, mean=IMAGENET_MEAN, std=IMAGENET_STD, variant: str = "joint",
             steps: int = 2, zero_init: str = "last") -> Classifier:
    return td_resnet("resnet50", num_classes, mean, std, variant, steps, zero_init)
