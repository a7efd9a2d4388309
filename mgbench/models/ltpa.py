"""Learn To Pay Attention (Jetley et al., ICLR 2018) on a torchvision ResNet.

Local features ``l_i`` are taken at an intermediate stage and the final stage (``layer3`` and
``layer4`` by default, as the official ResNet variants attend to an intermediate and the last
stage). At every level a compatibility score ``c_i`` is computed at each of the H*W positions,
turned into attention by a softmax over all positions, and the attended descriptor
``g_a = sum_i a_i l_i`` is formed. Each descriptor passes BN-ReLU-Dropout(0.3) (the official
head), then the head classifies the concatenated descriptors with one linear layer ("concat",
the paper's default) or classifies each level on its own and sums the log-probabilities ("indep").

Compatibilities: "dp" ``c_i = <l_i, g>`` with the global descriptor
``g = Linear(Dropout(0.5)(GAP(layer4)))``; ``g`` is projected DOWN to a narrower level's width
by the official BN-ReLU-Dropout(0.5)-Linear (with bias), a level as wide as ``g`` uses ``g``
itself. "pc" ``c_i = <u, l_i + g>``: ``<u, l_i + g> = <u, l_i> + <u, g>``, and the second term
is the same at every position, so the softmax removes it exactly. The official code still
computes ``g`` and its projection under "pc", but they cannot change the output and receive no
gradient; here the "pc" model is that same function without the dead branch:
``c_i = <u, l_i>`` (``u`` a bias-free 1x1 convolution, since a bias is removed the same way).

The model is one-step: ``forward_steps`` returns the logits and the attention maps ([B, H, W]
per level, in the order of ``levels``) so that pictures can show them.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench.errors import InputError
from mgbench.models._registry import register_model
from mgbench.models.anytime import StepOutputs
from mgbench.models.layers import DIGITS_MEAN, DIGITS_STD, IMAGENET_MEAN, IMAGENET_STD, Normalize
from mgbench.models.resnet import STAGES, resnet_backbone, resnet_stem, stage_width

DEFAULT_LEVELS = ("layer3", "layer4")
COMPATIBILITIES = ("pc", "dp")
HEADS = ("concat", "indep")
# Dropout rates of the official Lua code (RESNET/models/Resnet-att2).
GLOBAL_DROPOUT = 0.5
DESCRIPTOR_DROPOUT = 0.3


def _bn_relu_dropout(width: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(p))


class LTPA(nn.Module):
    """A ResNet with LTPA attention estimators on ``levels``; input [0, 1] NCHW, output logits."""

    num_steps = 1

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        levels: Sequence[str] = DEFAULT_LEVELS,
        compatibility: str = "pc",
        head: str = "concat",
    ):
        super().__init__()
        levels = tuple(levels)
        unknown = [level for level in levels if level not in STAGES]
        if not levels or unknown or len(set(levels)) != len(levels):
            raise InputError(f"LTPA levels {list(levels)} are invalid: give distinct names among {', '.join(STAGES)}")
        if compatibility not in COMPATIBILITIES:
            raise InputError(f"unknown LTPA compatibility {compatibility!r}: use one of {', '.join(COMPATIBILITIES)}")
        if head not in HEADS:
            raise InputError(f"unknown LTPA head {head!r}: use one of {', '.join(HEADS)}")
        self.levels = levels
        self.compatibility = compatibility
        self.head = head
        self.normalize = Normalize(mean, std)
        self.net, dim = resnet_backbone(backbone)  # fc = Identity: the net is used stage by stage
        # The stages after the deepest level cannot influence the output: they are not run.
        widths = {level: stage_width(self.net, level) for level in levels}
        self.depth = max(STAGES.index(level) for level in levels) + 1
        for stage in STAGES[self.depth:]:
            setattr(self.net, stage, nn.Identity())
        if compatibility == "dp":
            if self.depth < len(STAGES):
                raise InputError("LTPA 'dp' needs the global descriptor from layer4: include layer4 in levels")
            self.global_fc = nn.Sequential(nn.Dropout(GLOBAL_DROPOUT), nn.Linear(dim, dim))
            self.project = nn.ModuleDict({
                level: nn.Identity() if width == dim
                else nn.Sequential(_bn_relu_dropout(dim, GLOBAL_DROPOUT), nn.Linear(dim, width))
                for level, width in widths.items()
            })
        else:
            self.score = nn.ModuleDict({level: nn.Conv2d(width, 1, 1, bias=False) for level, width in widths.items()})
            for conv in self.score.values():
                # std 1/sqrt(C), scores of order 1. The official MSR formula (fan-out of one output
                # channel: std sqrt(2)) gives scores of order 100 on ResNet-50's 2048 channels: a
                # one-hot softmax whose u gets no gradient.
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear")
        self.descriptor_norm = nn.ModuleDict(
            {level: _bn_relu_dropout(width, DESCRIPTOR_DROPOUT) for level, width in widths.items()}
        )
        if head == "concat":
            self.classifier = nn.Linear(sum(widths.values()), num_classes)
        else:
            self.classifiers = nn.ModuleDict({level: nn.Linear(width, num_classes) for level, width in widths.items()})

    def attend(self, level: str, local: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention [B, H, W] (softmax over all positions) and attended descriptor [B, C] of one level.

        ``g`` is the global descriptor ("dp"); "pc" takes ``None`` (its g term cancels)."""
        if self.compatibility == "pc":
            scores = self.score[level](local).flatten(1)
        else:
            assert g is not None
            scores = (local * self.project[level](g)[:, :, None, None]).sum(1).flatten(1)
        attention = scores.softmax(dim=1)
        descriptor = torch.einsum("bn,bcn->bc", attention, local.flatten(2))
        return attention.view(local.shape[0], *local.shape[2:]), descriptor

    def forward_steps(self, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
        if steps is not None and steps < 1:
            raise InputError(f"steps must be at least 1, not {steps}")
        features = {}
        out = resnet_stem(self.net, self.normalize(x))
        for stage in STAGES[: self.depth]:
            out = getattr(self.net, stage)(out)
            features[stage] = out
        g = self.global_fc(torch.flatten(self.net.avgpool(out), 1)) if self.compatibility == "dp" else None
        maps, descriptors = [], []
        for level in self.levels:
            attention, descriptor = self.attend(level, features[level], g)
            maps.append(attention)
            descriptors.append(self.descriptor_norm[level](descriptor))
        if self.head == "concat":
            logits = self.classifier(torch.cat(descriptors, dim=1))
        else:
            logits = sum(
                F.log_softmax(self.classifiers[level](d), dim=1) for level, d in zip(self.levels, descriptors)
            )
        return StepOutputs(logits.unsqueeze(0), maps=maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).logits[-1]


_OPTIONS = "levels (default layer3, layer4), compatibility pc|dp, head concat|indep"


@register_model("ltpa-tiny", family="ltpa", description=f"LTPA on the small digits ResNet; {_OPTIONS}",
                input_size=64)
def ltpa_tiny(num_classes: int = 10, mean=DIGITS_MEAN, std=DIGITS_STD, levels: Sequence[str] = DEFAULT_LEVELS,
              compatibility: str = "pc", head: str = "concat") -> LTPA:
    return LTPA("resnet-tiny", num_classes, mean, std, levels, compatibility, head)


@register_model("ltpa-r18", family="ltpa", description=f"LTPA on ResNet-18; {_OPTIONS}", input_size=224)
def ltpa_r18(num_classes: int = 100, mean=IMAGENET_MEAN, std=IMAGENET_STD, levels: Sequence[str] = DEFAULT_LEVELS,
             compatibility: str = "pc", head: str = "concat") -> LTPA:
    return LTPA("resnet18", num_classes, mean, std, levels, compatibility, head)


@register_model("ltpa-r50", family="ltpa", description=f"LTPA on ResNet-50; {_OPTIONS}", input_size=224)
def ltpa_r50(num_classes: int = 100, mean=IMAGENET_MEAN, std=IMAGENET_STD, levels: Sequence[str] = DEFAULT_LEVELS,
             compatibility: str = "pc", head: str = "concat") -> LTPA:
    return LTPA("resnet50", num_classes, mean, std, levels, compatibility, head)
