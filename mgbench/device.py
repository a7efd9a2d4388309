"""The device a run computes on, and images on their way to it."""

from __future__ import annotations

import torch

from mgbench.errors import InputError


def resolve_device(name: str) -> torch.device:
    """The user's ``--device`` (auto, cpu, cuda[:N]) as a torch device; ``auto`` is the GPU when
    one is visible."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}: use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but no CUDA GPU is visible: use --device cpu")
    return device


def to_unit(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NCHW from the loader -> float [0, 1] on the device."""
    return images.to(device, non_blocking=True).float().div_(255.0)
