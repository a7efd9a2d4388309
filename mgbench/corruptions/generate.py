"""Building ImageNet100-C: Hendrycks' protocol on an ImageNet100 folder.

Each validation image is resized (shorter side 256) and centre-cropped to 224 x 224, corrupted
with the reference backend (imagecorruptions, seeded per image, corruption and severity: the
seed's image id is the file's path relative to the split, e.g. ``n01440764/x.JPEG``, so a file
gets the same corruption whatever subset or class list it is generated with), and saved as JPEG
quality 85 (``optimize=True``) in the ImageNet-C layout ``OUT/corruption/severity/WNID/name``.

Resumable: finished files are skipped, and each file is written to a temporary name and
renamed, so a killed run never leaves a torn image. Images are spread over worker processes.
Every source image's header is read before anything is written: an unreadable one stops the
command with an error naming it (``on_bad_image="fail"``) or is left out and counted
(``"skip"``), like ``mgbench run --on-bad-image``.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np

from mgbench import progress
from mgbench.corruptions.names import seed_for
from mgbench.corruptions.reference import corrupt_one
from mgbench.data import DataSpec
from mgbench.data.folders import PREPROCESSING, imagenet_c_path
from mgbench.data.spec import imagenet_selection
from mgbench.errors import InputError

JPEG_QUALITY = 85


@dataclass
class GenerateReport:
    images: int
    written: int
    skipped: int
    out: Path
    unreadable: int = 0  # source images left out (on_bad_image="skip")


def _target(out: Path, relative: str, corruption: str, severity: int) -> Path:
    return imagenet_c_path(out / corruption / str(severity), relative)


def _write_jpeg(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(image).save(temporary, "JPEG", quality=JPEG_QUALITY, optimize=True)
    os.replace(temporary, path)


def _unreadable(path: str | Path, exc: Exception) -> InputError:
    return InputError(f"unreadable image {path} ({exc.__class__.__name__}): remove it or pass --on-bad-image skip")


def _readable(source: str) -> Exception | None:
    """The error of an image whose header cannot be read (None when it can)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as picture:
            picture.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        return exc
    return None


def _one_image(source: str, relative: str, out: str, jobs: Sequence[tuple[str, int]],
               on_bad_image: str = "fail") -> tuple[int, int]:
    """Corrupt one source image for every (corruption, severity) not yet on disk (an image that
    cannot be decoded writes nothing: (-1, 0) with ``on_bad_image="skip"``)."""
    todo = [(c, s) for c, s in jobs if not _target(Path(out), relative, c, s).exists()]
    if not todo:
        return 0, len(jobs)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as picture:
            image = PREPROCESSING["resize256-crop224"]()(picture.convert("RGB")).permute(1, 2, 0).numpy()
    except (OSError, UnidentifiedImageError) as exc:  # a body the header check could not see
        if on_bad_image == "skip":
            return -1, 0
        raise _unreadable(source, exc) from None
    for corruption, severity in todo:
        corrupted = corrupt_one(image, corruption, severity, seed_for(relative, corruption, severity))
        _write_jpeg(corrupted, _target(Path(out), relative, corruption, severity))
    return len(todo), len(jobs) - len(todo)


def generate_imagenet_c(
    root: str | Path,
    out: str | Path,
    corruptions: Sequence[str],
    severities: Sequence[int],
    *,
    class_list: str = "mgnet",
    split: str = "val",
    workers: int | None = None,
    limit: int | None = None,
    on_bad_image: str = "fail",
) -> GenerateReport:
    """Write ``out/corruption/severity/WNID/name`` for every image of ``root/split`` in the
    class list, or for the fixed seeded subset of ``limit`` images that ``mgbench run --limit``
    evaluates (:func:`mgbench.data.spec.imagenet_selection`); unreadable source images stop it
    before anything is written (``on_bad_image="fail"``) or are left out (``"skip"``)."""
    spec = DataSpec(name="imagenet100", root=str(root), split=split, class_list=class_list, limit=limit)
    folder, keep = imagenet_selection(spec, "resize256-crop224")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: pass a folder")
    if on_bad_image not in ("fail", "skip"):
        raise InputError(f"--on-bad-image must be fail or skip, not {on_bad_image!r}")
    relatives = folder.relative_paths()
    items = []
    unreadable = 0
    for i in keep:
        source = str(folder.samples[i][0])
        problem = _readable(source)
        if problem is None:
            items.append((source, relatives[i]))
        elif on_bad_image == "skip":
            unreadable += 1
        else:
            raise _unreadable(source, problem)
    jobs = [(c, s) for c in corruptions for s in severities]
    workers = (os.cpu_count() or 1) if workers is None else workers
    written = skipped = late = 0  # late: images whose header read but whose body did not
    with progress.task(f"ImageNet-C images ({len(jobs)} corruption x severity each)", total=len(items)) as bar:
        if workers <= 1:
            for source, relative in items:
                new, old = _one_image(source, relative, str(out), jobs, on_bad_image)
                late += new < 0
                written, skipped = written + max(new, 0), skipped + old
                bar.advance()
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_one_image, source, relative, str(out), jobs, on_bad_image)
                           for source, relative in items]
                for future in as_completed(futures):
                    new, old = future.result()
                    late += new < 0
                    written, skipped = written + max(new, 0), skipped + old
                    bar.advance()
    return GenerateReport(len(items) - late, written, skipped, out, unreadable + late)
