"""Training recipes: optimiser, schedule and augmentation, by name.

``mgnet`` is the official MGNet recipe (400 epochs, SGD lr 0.1, momentum 0.9, weight decay
1e-4 on all parameters, OneCycle with pct_start 0.2 and cycling momentum 0.85-0.95, batch 256,
RandomResizedCrop + flip + AutoAugment ImageNet policy with grey fill, fp32: no bf16 autocast,
since the official runs used full precision). It uses torchvision's AutoAugment, whose ImageNet
policy has the same 25 sub-policies and magnitudes as the official code's copy of
DeepVoltaire's ``ImageNetPolicy``; two small differences remain: torchvision rotates either way
(the official copy only counter-clockwise) and shears with nearest rather than bicubic
interpolation. ``tiny`` keeps the same optimiser and schedule at the scale of the embedded
64x64 digits (random 4-pixel translations, no flips: digits are not mirror-symmetric).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from torchvision import transforms as T

from mgbench.errors import InputError


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    pct_start: float = 0.2
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    augmentation: str = "digits"
    amp: bool = True  # bf16 autocast on GPU; False where the reference trained in fp32

    def with_overrides(self, **changes: Any) -> "Recipe":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES = {
    "mgnet": Recipe("mgnet", epochs=400, batch_size=256, lr=0.1, augmentation="imagenet-autoaugment", amp=False),
    "tiny": Recipe("tiny", epochs=15, batch_size=128, lr=0.1, augmentation="digits"),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}: use one of {', '.join(RECIPES)}")
    return RECIPES[name]


def train_transform(augmentation: str) -> T.Compose:
    """Training-time augmentation; outputs uint8 CHW tensors like the evaluation data."""
    if augmentation == "digits":
        return T.Compose([T.RandomCrop(64, padding=4, padding_mode="edge")])
    if augmentation == "imagenet-autoaugment":
        return T.Compose([
            T.RandomResizedCrop(224),
            T.RandomHorizontalFlip(),
            # The official ImageNetPolicy (DeepVoltaire's) fills rotated/sheared corners with grey 128;
            # torchvision's default fill is black.
            T.AutoAugment(T.AutoAugmentPolicy.IMAGENET, fill=[128, 128, 128]),
            T.PILToTensor(),
        ])
    raise InputError(f"unknown augmentation {augmentation!r}")
