"""Datasets: the embedded cluttered digits, ImageNet100 and ImageNet-C folders."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from mgbench.data.folders import CLASS_LISTS, PREPROCESSING, class_list
from mgbench.data.spec import DATASETS, DataSpec, OpenedData, open_dataset, open_imagenet_c, subset_indices

__all__ = [
    "CLASS_LISTS", "DATASETS", "PREPROCESSING", "DataSpec", "OpenedData", "class_list", "collate_skip",
    "default_workers", "make_loader", "open_dataset", "open_imagenet_c", "subset_indices",
]


def collate_skip(batch: list[Any]) -> tuple[Any, Any, Any, int]:
    """Collate ``(image, label, index)`` items, dropping unreadable ones (``None``).

    Returns ``(images, labels, indices, n_skipped)``; the first three are ``None`` when every
    item of the batch was dropped.
    """
    items = [item for item in batch if item is not None]
    skipped = len(batch) - len(items)
    if not items:
        return None, None, None, skipped
    images, labels, indices = default_collate(items)
    return images, labels, indices, skipped


def default_workers() -> int:
    """DataLoader workers sized to the machine: one per core beyond the main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    device: torch.device,
    workers: int | None = None,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> DataLoader:
    workers = default_workers() if workers is None else workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate_skip,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        generator=generator,
        drop_last=drop_last,
        sampler=sampler,
    )
