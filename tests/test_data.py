"""The data layer: embedded digits, ImageNet100 / ImageNet-C folders, seeded subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgbench.data import DataSpec, class_list, collate_skip, open_dataset, open_imagenet_c, subset_indices
from mgbench.data.digits import DigitsSpec, _mnist_5k, _split_digits, load_digits, render_item
from mgbench.errors import InputError


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    return load_digits()


def test_digits_shapes_and_balance(digits: dict[str, np.ndarray]) -> None:
    spec = DigitsSpec()
    assert digits["train_images"].shape == (16000, spec.canvas, spec.canvas, 3)
    assert digits["test_images"].shape == (2000, spec.canvas, spec.canvas, 3)
    assert digits["train_images"].dtype == np.uint8
    assert np.bincount(digits["test_labels"]).tolist() == [200] * 10
    assert np.bincount(digits["train_labels"]).tolist() == [1600] * 10
    # Colour: the canvases are not grey (channels differ), and they use the dynamic range.
    sample = digits["test_images"][:50].astype(np.int16)
    assert np.abs(sample[..., 0] - sample[..., 1]).mean() > 5
    assert sample.max() > 200


def test_digits_items_are_deterministic(digits: dict[str, np.ndarray]) -> None:
    """Any cached canvas equals a fresh, independent rendering of that one item."""
    spec = DigitsSpec()
    mnist, labels = _mnist_5k()
    members = _split_digits(labels, spec)
    rng = np.random.default_rng(123)
    for split in ("train", "test"):
        for item in rng.choice(len(digits[f"{split}_labels"]), size=8, replace=False):
            image, label = render_item(spec, split, int(item), mnist, labels, members)
            assert np.array_equal(image, digits[f"{split}_images"][item])
            assert label == digits[f"{split}_labels"][item]


def test_digits_split_is_disjoint_and_fixed() -> None:
    _, labels = _mnist_5k()
    first = _split_digits(labels, DigitsSpec())
    again = _split_digits(labels, DigitsSpec())
    assert np.array_equal(first["test"], again["test"])
    assert not set(first["train"]) & set(first["test"])
    assert len(first["train"]) + len(first["test"]) == 5000
    assert np.bincount(labels[first["test"]]).tolist() == [100] * 10
    other = _split_digits(labels, DigitsSpec(seed=1))
    assert not np.array_equal(first["test"], other["test"])


def test_digits_cache_key_follows_the_spec() -> None:
    assert DigitsSpec().key() == DigitsSpec().key()
    assert DigitsSpec().key() != DigitsSpec(clutter_fragments=3).key()


def test_open_dataset_items_and_subset() -> None:
    opened = open_dataset(DataSpec(limit=100))
    assert opened.n == 100
    image, label, index = opened.dataset[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert 0 <= label < 10
    # The subset is fixed, seeded and spread over the split (not the first 100 items).
    keep = subset_indices(2000, 100)
    assert np.array_equal(keep, subset_indices(2000, 100))
    assert keep.max() > 1000
    assert open_dataset(DataSpec(limit=100)).ids_hash == opened.ids_hash
    assert open_dataset(DataSpec(limit=101)).ids_hash != opened.ids_hash


def test_a_limit_above_the_data_size_is_recorded() -> None:
    """--limit 99999 on the 2,000 digits test images opens all 2,000 and keeps both numbers, so
    the run can say it ran fewer than asked."""
    opened = open_dataset(DataSpec(limit=99999))
    assert (opened.n, opened.available, opened.requested) == (2000, 2000, 99999)
    assert opened.ids_hash == open_dataset(DataSpec()).ids_hash  # the same images as no limit
    small = open_dataset(DataSpec(limit=100))
    assert (small.n, small.available, small.requested) == (100, 2000, 100)


@pytest.mark.parametrize("bad", [
    {"name": "cifar"}, {"limit": 0}, {"limit": -3}, {"class_list": "mine"},
    {"name": "imagenet100"}, {"split": "val"},
])
def test_data_spec_rejects_bad_input(bad: dict) -> None:
    with pytest.raises(InputError):
        DataSpec(**bad)


def test_class_lists() -> None:
    mgnet, cmc = class_list("mgnet"), class_list("cmc")
    assert len(mgnet) == len(set(mgnet)) == 100 and len(cmc) == len(set(cmc)) == 100
    assert mgnet == sorted(mgnet) and mgnet[0] == "n01440764" and mgnet[-1] == "n01855672"
    assert len(set(mgnet) & set(cmc)) == 8  # the reference: only 8 classes overlap


def _image(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """A flat-colour image; PNG so that the colour survives exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")


@pytest.fixture
def fake_imagenet(tmp_path: Path) -> Path:
    """A tiny ImageNet: val/WNID/*.png for every class of the mgnet list (two images each)."""
    for label, wnid in enumerate(class_list("mgnet")):
        for k in range(2):
            _image(tmp_path / "val" / wnid / f"ILSVRC2012_val_{label:03d}{k}.png", (300, 260), (label, 2 * k, 50))
    return tmp_path


def test_imagenet100_folder(fake_imagenet: Path) -> None:
    opened = open_dataset(DataSpec(name="imagenet100", root=str(fake_imagenet)))
    assert opened.n == 200 and opened.preprocessing == "resize256-crop224"
    image, label, index = opened.dataset[7]
    assert image.shape == (3, 224, 224)
    assert label == 3  # two images per class, in class-list order
    assert int(image[0].float().mean().round()) == 3  # the red channel encodes the class
    limited = open_dataset(DataSpec(name="imagenet100", root=str(fake_imagenet), limit=10))
    assert limited.n == 10


def test_imagenet100_cmc_list_requires_its_classes(fake_imagenet: Path) -> None:
    with pytest.raises(InputError, match="lacks 92 of the 100 classes"):
        open_dataset(DataSpec(name="imagenet100", root=str(fake_imagenet), class_list="cmc"))


def test_missing_root_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_dataset(DataSpec(name="imagenet100", root=str(tmp_path / "nope")))


def test_unreadable_image_fail_or_skip(fake_imagenet: Path) -> None:
    bad = fake_imagenet / "val" / class_list("mgnet")[0] / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    failing = open_dataset(DataSpec(name="imagenet100", root=str(fake_imagenet)))
    broken_index = [i for i, (p, _) in enumerate(failing.dataset.samples) if p == bad][0]
    with pytest.raises(InputError, match="unreadable image .*broken.JPEG"):
        failing.dataset[broken_index]
    skipping = open_dataset(DataSpec(name="imagenet100", root=str(fake_imagenet), on_bad_image="skip"))
    assert skipping.dataset[broken_index] is None
    images, labels, indices, skipped = collate_skip([skipping.dataset[0], None, skipping.dataset[1]])
    assert skipped == 1 and images.shape[0] == 2


def _corrupted_copies(root: Path, relatives: list[str]) -> None:
    """ImageNet-C copies (``fog/3/WNID/name.JPEG``, 224 px) of the given clean images; the green
    channel says which clean image a copy belongs to."""
    for relative in relatives:
        wnid, name = relative.split("/")
        label = class_list("mgnet").index(wnid)
        _image(root / "fog" / "3" / wnid / (Path(name).stem + ".JPEG"), (224, 224), (label, int(name[-5]), 0))


def test_imagenet_c_folder(fake_imagenet: Path, tmp_path: Path) -> None:
    spec = DataSpec(name="imagenet100", root=str(fake_imagenet))
    clean = open_dataset(spec)
    out = tmp_path / "imagenet-c"
    _corrupted_copies(out, clean.dataset.relative_paths())
    (out / "fog" / "3" / "n99999999").mkdir()  # not in the class list: ignored
    opened = open_imagenet_c(spec, out, "fog", 3)
    assert opened.n == 200 and opened.preprocessing == "crop224"
    image, label, index = opened.dataset[7]
    assert image.shape == (3, 224, 224) and label == 3 and index == 7
    assert int(image[1].float().mean().round()) == 1  # the copy of the clean image with k = 1
    mgnet_style = open_imagenet_c(spec, out, "fog", 3, preprocessing="resize256-crop224")
    assert mgnet_style.preprocessing == "resize256-crop224"
    with pytest.raises(InputError, match=r"fog/4/n01440764/ILSVRC2012_val_0000.JPEG is missing \(200 of the 200"):
        open_imagenet_c(spec, out, "fog", 4)


def test_imagenet_c_folder_holds_the_subset_of_the_limit(fake_imagenet: Path, tmp_path: Path) -> None:
    """A folder generated for ``--limit 10`` serves ``--limit 10``: the corrupted copies of the
    same ten clean images, not "the classes it happens to have"."""
    spec = DataSpec(name="imagenet100", root=str(fake_imagenet), limit=10)
    clean = open_dataset(spec)
    chosen = [clean.dataset.dataset.relative_paths()[i] for i in clean.dataset.indices]
    out = tmp_path / "imagenet-c"
    _corrupted_copies(out, chosen)
    opened = open_imagenet_c(spec, out, "fog", 3)
    assert opened.n == 10
    labels = [opened.dataset[i][1] for i in range(10)]
    assert labels == [clean.dataset[i][1] for i in range(10)]
    assert [opened.dataset[i][2] for i in range(10)] == list(clean.dataset.indices)  # same image ids
    with pytest.raises(InputError, match=r"is missing \(190 of the 200 .*--severities 3`$"):
        open_imagenet_c(DataSpec(name="imagenet100", root=str(fake_imagenet)), out, "fog", 3)
    gone = out / "fog" / "3" / chosen[4].replace(".png", ".JPEG")
    gone.unlink()
    with pytest.raises(InputError) as error:
        open_imagenet_c(spec, out, "fog", 3)
    message = str(error.value)
    assert message.startswith(f"{gone} is missing (1 of the 10 images this run selects)") and "\n" not in message
    assert "mgbench corruptions generate" in message and "--limit 10" in message and "--corruptions fog" in message
