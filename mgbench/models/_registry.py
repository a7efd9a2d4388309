"""One registry of architectures, timm-style: factories decorated with ``@register_model``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from mgbench.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    family: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: Registry[ModelEntry] = Registry(
    "model", fix="run `mgbench models` for the registered names and zoo cards")


def register_model(
    name: str, *, family: str, description: str, **defaults: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register an architecture factory under ``name``; ``defaults`` are its default kwargs."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY.add(name, ModelEntry(name, factory, family, description, dict(defaults)))
        return factory

    return decorate


def list_architectures() -> list[str]:
    return _REGISTRY.names()


def get_entry(name: str) -> ModelEntry:
    return _REGISTRY.get(name)
