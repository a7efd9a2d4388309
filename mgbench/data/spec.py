"""Which data a suite runs on, and how it is opened.

A :class:`DataSpec` names a dataset (``digits``, the embedded default, ``imagenet100``, or
``imagenet1k``: RobustBench's fixed 5,000 ImageNet validation images), its
split, class list, preprocessing and ``limit``; :func:`open_dataset` turns it into a torch
dataset plus the facts the results store records (n, a hash of the exact image ids, the
preprocessing). ``limit`` takes a fixed, seeded subset (like RobustBench's fixed ImageNet
subset), never "the first N files", which would be one class.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from mgbench.data.digits import DigitsSpec, load_digits
from mgbench.data.folders import CLASS_LISTS, ClassListFolder, ImageFiles, class_list, imagenet_c_path
from mgbench.data.imagenet1k import ListedImages, robustbench_image_ids
from mgbench.errors import InputError

DATASETS = ("digits", "imagenet100", "imagenet1k")
SUBSET_SEED = 0


class ArrayDataset(Dataset):
    """uint8 NHWC images in memory; items are ``(uint8 CHW tensor, label, index)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any = None):
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index]), index


@dataclass(frozen=True)
class DataSpec:
    """A dataset selection. ``root`` is required for the ImageNet sets and ignored for digits."""

    name: str = "digits"
    root: str | None = None
    split: str | None = None
    class_list: str = "mgnet"
    preprocessing: str | None = None
    limit: int | None = None
    on_bad_image: str = "fail"

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise InputError(f"unknown dataset {self.name!r}: use one of {', '.join(DATASETS)}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise InputError(f"--limit must be a positive whole number, not {self.limit!r}")
        if self.class_list not in CLASS_LISTS:
            raise InputError(f"unknown class list {self.class_list!r}: use one of {', '.join(CLASS_LISTS)}")
        if self.name == "imagenet100" and not self.root:
            raise InputError("imagenet100 needs --data-root pointing at an ImageNet folder with train/ and val/")
        if self.name == "digits" and self.split not in (None, "train", "test"):
            raise InputError(f"digits has splits train and test, not {self.split!r}")
        if self.name == "imagenet100" and self.split not in (None, "train", "val"):
            raise InputError(f"imagenet100 has splits train and val, not {self.split!r}")
        if self.name == "imagenet1k" and not self.root:
            raise InputError("imagenet1k needs --data-root pointing at an ImageNet folder with val/")
        if self.name == "imagenet1k" and self.split not in (None, "val"):
            raise InputError(f"imagenet1k is RobustBench's 5,000 validation images: it has no split {self.split!r}")

    @property
    def eval_split(self) -> str:
        return self.split or ("test" if self.name == "digits" else "val")

    @property
    def num_classes(self) -> int:
        return {"digits": 10, "imagenet100": 100}.get(self.name, 1000)

    @property
    def input_size(self) -> int:
        if self.name == "digits":
            return DigitsSpec().canvas
        return 288 if self.clean_preprocessing == "crop288" else 224

    @property
    def clean_preprocessing(self) -> str:
        if self.name == "digits":
            return "none"
        return self.preprocessing or "resize256-crop224"

    @property
    def label(self) -> str:
        """Dataset name as stored in results, e.g. ``digits``, ``imagenet100-mgnet`` or ``imagenet1k``."""
        return f"{self.name}-{self.class_list}" if self.name == "imagenet100" else self.name

    def with_split(self, split: str) -> "DataSpec":
        return replace(self, split=split)


@dataclass
class OpenedData:
    """An opened split. ``available`` is the number of images before ``limit`` took its subset
    and ``requested`` the limit asked for, so a limit above the data size can be reported."""

    dataset: Dataset
    n: int
    ids_hash: str
    preprocessing: str
    split: str
    available: int = 0
    requested: int | None = None

    def key(self, spec: DataSpec) -> dict[str, Any]:
        """What identifies this data in the results store."""
        return {
            "dataset": spec.label,
            "split": self.split,
            "preprocessing": self.preprocessing,
            "subset": self.ids_hash,
            "n_images": self.n,
        }


def subset_indices(total: int, limit: int | None) -> np.ndarray:
    """A fixed seeded subset of ``limit`` indices (sorted), or all of them."""
    if limit is None or limit >= total:
        return np.arange(total)
    rng = np.random.default_rng(SUBSET_SEED)
    return np.sort(rng.permutation(total)[:limit])


def _ids_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _limit(dataset: Dataset, ids: list[str], limit: int | None) -> tuple[Dataset, list[str]]:
    keep = subset_indices(len(ids), limit)
    if len(keep) == len(ids):
        return dataset, ids
    return Subset(dataset, keep.tolist()), [ids[i] for i in keep]


def imagenet_selection(spec: DataSpec, preprocessing: str | None = None) -> tuple[ClassListFolder, np.ndarray]:
    """The clean ImageNet folder of ``spec`` (its split and class list) and the positions of the
    images ``spec`` selects in it (the seeded subset of ``limit``, or all). Clean evaluation,
    ``corruptions generate`` and the folder backend all select through here, so the same
    ``--limit`` means the same images."""
    root = Path(spec.root or "") / spec.eval_split
    folder = ClassListFolder(root, class_list(spec.class_list), preprocessing or spec.clean_preprocessing,
                             spec.on_bad_image)
    return folder, subset_indices(len(folder), spec.limit)


def open_dataset(spec: DataSpec, *, train_transform: Any = None) -> OpenedData:
    """Open the evaluation (or training) split named by ``spec``."""
    split = spec.eval_split
    if spec.name == "digits":
        arrays = load_digits()
        dataset = ArrayDataset(arrays[f"{split}_images"], arrays[f"{split}_labels"], train_transform)
        ids = [f"digits-v{DigitsSpec().version}/{split}/{i}" for i in range(len(dataset))]
        preprocessing = "none"
    elif spec.name == "imagenet1k":
        # Subset the id list first: only the images evaluated need to exist.
        ids = list(robustbench_image_ids())
        ids = [ids[i] for i in subset_indices(len(ids), spec.limit)]
        preprocessing = spec.clean_preprocessing
        dataset = ListedImages(Path(spec.root or "") / split, ids, preprocessing, spec.on_bad_image)
        return OpenedData(dataset, len(ids), _ids_hash(ids), preprocessing, split)
    else:
        preprocessing = spec.clean_preprocessing
        dataset, _ = imagenet_selection(spec)
        if train_transform is not None:
            dataset.transform = train_transform
        ids = dataset.relative_paths()
    available = len(ids)
    dataset, ids = _limit(dataset, ids, spec.limit)
    return OpenedData(dataset, len(ids), _ids_hash(ids), preprocessing, split, available, spec.limit)


def open_imagenet_c(
    spec: DataSpec, root: str | Path, corruption: str, severity: int, preprocessing: str = "crop224"
) -> OpenedData:
    """One cell of an ImageNet-C style folder (``root/corruption/severity/WNID/name``): the
    corrupted copies of exactly the clean images ``spec`` selects (its split, class list and
    seeded subset of ``limit``), whatever else the folder holds. A copy of a selected image that
    is missing is an error naming the file and the command that writes it."""
    clean, keep = imagenet_selection(spec)
    folder = Path(root) / corruption / str(severity)
    samples = [(imagenet_c_path(folder, relative), label)
               for relative, (_, label) in zip(clean.relative_paths(), clean.samples)]
    missing = [samples[i][0] for i in keep if not samples[i][0].is_file()]
    if missing:
        options = [f"--data-root {spec.root}", f"--out {root}", f"--class-list {spec.class_list}",
                   f"--corruptions {corruption}", f"--severities {severity}"]
        options += [f"--split {spec.eval_split}"] if spec.eval_split != "val" else []
        options += [f"--limit {spec.limit}"] if spec.limit is not None else []
        raise InputError(f"{missing[0]} is missing ({len(missing)} of the {len(keep)} images this run selects): "
                         f"write them with `mgbench corruptions generate {' '.join(options)}`")
    dataset = ImageFiles(folder, samples, preprocessing, spec.on_bad_image)
    ids = [f"{corruption}/{severity}/{p}" for p in dataset.relative_paths()]
    available = len(ids)
    dataset, ids = _limit(dataset, ids, spec.limit)
    return OpenedData(dataset, len(ids), _ids_hash(ids), preprocessing, spec.eval_split, available, spec.limit)
