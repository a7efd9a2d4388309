"""ResNet baselines: torchvision's ResNet-18/50 and a small ResNet for the 64x64 embedded digits.

``resnet_backbone`` gives the same networks without their classifier, for models that put their
own head on a ResNet (MGNet, LTPA, TDAM).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models import ResNet
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models import resnet50 as tv_resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck

from mgbench.errors import InputError
from mgbench.models._registry import register_model
from mgbench.models.layers import DIGITS_MEAN, DIGITS_STD, IMAGENET_MEAN, IMAGENET_STD, Classifier

TINY_WIDTHS = (32, 64, 128, 256)


class TinyResNet(ResNet):
    """torchvision's ResNet (same blocks, same forward) scaled for 64x64 inputs: a 3x3 stride-2
    stem without max-pool and one BasicBlock per stage at widths 32-64-128-256 (~1.2M
    parameters, ~65M multiply-adds at 64x64)."""

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = TINY_WIDTHS, blocks: int = 1):
        nn.Module.__init__(self)
        # Attributes ResNet._make_layer reads.
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = widths[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, widths[0], blocks)
        self.layer2 = self._make_layer(BasicBlock, widths[1], blocks, stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], blocks, stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():  # torchvision's ResNet initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


_BACKBONES = {
    "resnet18": (lambda: tv_resnet18(), 512),
    "resnet50": (lambda: tv_resnet50(), 2048),
    "resnet-tiny": (lambda: TinyResNet(), TINY_WIDTHS[-1]),
}


def resnet_backbone(name: str) -> tuple[ResNet, int]:
    """A ResNet with ``fc = Identity`` (so it returns pooled features) and its feature width."""
    if name not in _BACKBONES:
        raise InputError(f"unknown backbone {name!r}: use one of {', '.join(_BACKBONES)}")
    build, dim = _BACKBONES[name]
    net = build()
    net.fc = nn.Identity()
    return net, dim


STAGES = ("layer1", "layer2", "layer3", "layer4")


def resnet_stem(net: ResNet, x: torch.Tensor) -> torch.Tensor:
    """The layers of a torchvision ResNet before ``layer1`` (conv, BN, ReLU, max-pool)."""
    return net.maxpool(net.relu(net.bn1(net.conv1(x))))


def stage_width(net: ResNet, stage: str) -> int:
    """Output channels of one of the four stages (``layer1``..``layer4``)."""
    last = getattr(net, stage)[-1]
    if isinstance(last, Bottleneck):
        return last.bn3.num_features
    if isinstance(last, BasicBlock):
        return last.bn2.num_features
    raise TypeError(f"{stage} ends in {type(last).__name__}, not a torchvision BasicBlock or Bottleneck")


@register_model("resnet18", family="resnet", description="torchvision ResNet-18", input_size=224)
def resnet18(num_classes: int = 100, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Classifier:
    return Classifier(tv_resnet18(num_classes=num_classes), mean, std)


@register_model("resnet50", family="resnet", description="torchvision ResNet-50", input_size=224)
def resnet50(num_classes: int = 100, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Classifier:
    return Classifier(tv_resnet50(num_classes=num_classes), mean, std)


@register_model("resnet-tiny", family="resnet", description="small ResNet for 64x64 digits", input_size=64)
def resnet_tiny(num_classes: int = 10, mean=DIGITS_MEAN, std=DIGITS_STD) -> Classifier:
    return Classifier(TinyResNet(num_classes=num_classes), mean, std)
