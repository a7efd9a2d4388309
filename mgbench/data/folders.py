"""ImageNet100 and ImageNet-C style folders, restricted to a named class list.

Layouts (WNID = WordNet id, e.g. ``n01440764``):
- ImageNet: ``ROOT/{train,val}/WNID/*.JPEG``
- ImageNet-C: ``ROOT/CORRUPTION/SEVERITY/WNID/*.JPEG``

Labels are indices 0..99 in the order of the class list, not of the folder listing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from mgbench.errors import InputError

CLASS_LISTS = ("mgnet", "cmc")

# Preprocessing recipes by name. Clean ImageNet: Resize(256) + CenterCrop(224). Corrupted images
# that are already 224x224 (ImageNet-C): Hendrycks' protocol crops only; MGNet's code also resizes.
PREPROCESSING: dict[str, Callable[[], T.Compose]] = {
    "resize256-crop224": lambda: T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()]),
    "crop224": lambda: T.Compose([T.CenterCrop(224), T.PILToTensor()]),
    # RobustBench's other ImageNet recipes (robustbench/data.py PREPROCESSINGS), used by some zoo models.
    "crop288": lambda: T.Compose([T.CenterCrop(288), T.PILToTensor()]),
    "resize224": lambda: T.Compose([T.Resize([224, 224]), T.PILToTensor()]),
    "bicubic-resize256-crop224": lambda: T.Compose(
        [T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.PILToTensor()]
    ),
}


def class_list(name: str) -> list[str]:
    """The WNIDs of a shipped class list (``mgnet`` or ``cmc``), in label order."""
    if name not in CLASS_LISTS:
        raise InputError(f"unknown class list {name!r}: use one of {', '.join(CLASS_LISTS)}")
    text = resources.files("mgbench.data").joinpath("classlists", f"{name}.txt").read_text()
    return text.split()


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMG_EXTENSIONS


def imagenet_c_path(folder: Path, relative: str) -> Path:
    """Where an ImageNet-C style ``folder`` (``ROOT/CORRUPTION/SEVERITY``) keeps the corrupted copy
    of the clean image ``relative`` (``WNID/name``): the same name, saved as JPEG."""
    path = Path(folder) / relative
    return path if path.suffix.lower() in (".jpeg", ".jpg") else path.with_suffix(".JPEG")


class ImageFiles(Dataset):
    """Listed ``(path, label)`` image files under ``root``; items are ``(uint8 CHW tensor, label, index)``.

    With ``on_bad_image="skip"`` an unreadable file yields ``None`` (dropped by
    :func:`mgbench.data.collate_skip` and counted); with ``"fail"`` it raises
    :class:`InputError` naming the file.
    """

    def __init__(self, root: Path, samples: list[tuple[Path, int]], preprocessing: str, on_bad_image: str = "fail"):
        if preprocessing not in PREPROCESSING:
            raise InputError(
                f"unknown preprocessing {preprocessing!r}: use one of {', '.join(PREPROCESSING)}"
            )
        if on_bad_image not in ("skip", "fail"):
            raise InputError(f"--on-bad-image must be skip or fail, not {on_bad_image!r}")
        self.root = Path(root)
        self.samples = samples
        self.transform = PREPROCESSING[preprocessing]()
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def relative_paths(self) -> list[str]:
        return [str(path.relative_to(self.root)) for path, _ in self.samples]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                tensor = self.transform(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            if self.on_bad_image == "skip":
                return None
            raise InputError(
                f"unreadable image {path} ({exc.__class__.__name__}): remove it or pass --on-bad-image skip"
            ) from exc
        return tensor, label, index


class ClassListFolder(ImageFiles):
    """The images under ``root/WNID/`` for the WNIDs of a class list, labelled in list order."""

    def __init__(self, root: Path, wnids: list[str], preprocessing: str, on_bad_image: str = "fail"):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"data folder {root} does not exist: pass an existing folder with --data-root")
        missing = [w for w in wnids if not (root / w).is_dir()]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise InputError(
                f"{root} lacks {len(missing)} of the {len(wnids)} classes ({shown}): "
                "point --data-root at a folder with one sub-folder per WNID, or choose another --class-list"
            )
        samples = [
            (path, label)
            for label, wnid in enumerate(wnids)
            for path in sorted((root / wnid).iterdir())
            if _is_image(path)
        ]
        super().__init__(root, samples, preprocessing, on_bad_image)
        if not self.samples:
            raise InputError(f"{root} holds no images for the class list: check --data-root")
