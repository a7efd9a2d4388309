"""What a data spec accepts, and exactly what identifies the data it opens in the results store.

The data key (dataset label, split, preprocessing, the hash of the exact image ids, n) decides
whether a stored cell is reused: a wrong field would reuse a cell of other images or split the
same images into two cells. Expected values are written out here (the id strings, their sha256
with hashlib, numpy's seeded permutation), not read back from the code under test.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import needs_robustbench

from mgbench.data import DataSpec, class_list, open_dataset, open_imagenet_c, subset_indices
from mgbench.data.spec import OpenedData
from mgbench.errors import InputError


def _sha16(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _seeded_subset(total: int, limit: int) -> list[int]:
    """The documented subset: numpy's Generator seeded with 0, its first ``limit`` of a permutation, sorted."""
    return sorted(np.random.default_rng(0).permutation(total)[:limit].tolist())


@pytest.mark.parametrize("fields, message", [
    ({"name": "cifar"}, "unknown dataset 'cifar': use one of digits, imagenet100, imagenet1k"),
    ({"limit": 0}, "--limit must be a positive whole number, not 0"),
    ({"limit": 2.5}, "--limit must be a positive whole number, not 2.5"),
    ({"class_list": "mine"}, "unknown class list 'mine': use one of mgnet, cmc"),
    ({"name": "imagenet100"}, "imagenet100 needs --data-root pointing at an ImageNet folder with train/ and val/"),
    ({"split": "val"}, "digits has splits train and test, not 'val'"),
    ({"name": "imagenet100", "root": "x", "split": "test"}, "imagenet100 has splits train and val, not 'test'"),
    ({"name": "imagenet1k"}, "imagenet1k needs --data-root pointing at an ImageNet folder with val/"),
    ({"name": "imagenet1k", "root": "x", "split": "train"},
     "imagenet1k is RobustBench's 5,000 validation images: it has no split 'train'"),
])
def test_each_bad_spec_has_its_own_message(fields: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        DataSpec(**fields)
    assert str(error.value) == message


@pytest.mark.parametrize("fields", [
    {"limit": 1}, {"split": "train"}, {"split": "test"},
    {"name": "imagenet100", "root": "x", "split": "train"}, {"name": "imagenet100", "root": "x", "split": "val"},
    {"name": "imagenet1k", "root": "x"}, {"name": "imagenet1k", "root": "x", "split": "val"},
])
def test_the_edges_of_what_a_spec_accepts(fields: dict) -> None:
    DataSpec(**fields)


def test_derived_facts_of_each_dataset() -> None:
    digits = DataSpec()
    assert (digits.eval_split, digits.num_classes, digits.input_size, digits.clean_preprocessing, digits.label) == (
        "test", 10, 64, "none", "digits")
    assert DataSpec(preprocessing="crop288").clean_preprocessing == "none"  # digits are never resized
    folder = DataSpec(name="imagenet100", root="x", class_list="cmc")
    assert (folder.eval_split, folder.num_classes, folder.input_size, folder.clean_preprocessing, folder.label) == (
        "val", 100, 224, "resize256-crop224", "imagenet100-cmc")
    assert DataSpec(name="imagenet100", root="x", preprocessing="crop288").input_size == 288
    one_k = DataSpec(name="imagenet1k", root="x")
    assert (one_k.eval_split, one_k.num_classes, one_k.label) == ("val", 1000, "imagenet1k")
    assert folder.with_split("train") == DataSpec(name="imagenet100", root="x", class_list="cmc", split="train")


def test_the_data_key_names_every_field() -> None:
    opened = OpenedData(dataset=[], n=7, ids_hash="abc", preprocessing="crop224", split="val")
    assert opened.key(DataSpec(name="imagenet100", root="x")) == {
        "dataset": "imagenet100-mgnet", "split": "val", "preprocessing": "crop224", "subset": "abc", "n_images": 7}


def test_the_seeded_subset() -> None:
    assert subset_indices(10, None).tolist() == list(range(10))
    assert subset_indices(10, 10).tolist() == list(range(10))
    assert subset_indices(10, 20).tolist() == list(range(10))
    assert subset_indices(2000, 5).tolist() == _seeded_subset(2000, 5)


def test_digits_ids_and_their_hash() -> None:
    """The stored subset hash is sha256 over the newline-joined ids ``digits-v1/<split>/<index>``."""
    opened = open_dataset(DataSpec(limit=3))
    chosen = _seeded_subset(2000, 3)
    assert opened.ids_hash == _sha16([f"digits-v1/test/{i}" for i in chosen])
    assert opened.key(DataSpec(limit=3)) == {"dataset": "digits", "split": "test", "preprocessing": "none",
                                             "subset": opened.ids_hash, "n_images": 3}
    assert (opened.available, opened.requested) == (2000, 3)
    train = open_dataset(DataSpec(split="train"))
    assert train.ids_hash == _sha16([f"digits-v1/train/{i}" for i in range(16000)]) and train.split == "train"


def test_a_training_transform_is_applied_to_the_digits() -> None:
    opened = open_dataset(DataSpec(split="train"), train_transform=lambda image: image.flip(-1))
    plain = open_dataset(DataSpec(split="train"))
    assert torch.equal(opened.dataset[5][0], plain.dataset[5][0].flip(-1))


def _png(path: Path, colour: tuple[int, int, int], size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, format="PNG")


@pytest.fixture
def small_imagenet(tmp_path: Path) -> Path:
    """train/ and val/ with one 16 px image per class of the mgnet list (red channel = 2 x label
    in val, 2 x label + 1 in train)."""
    for label, wnid in enumerate(class_list("mgnet")):
        _png(tmp_path / "val" / wnid / f"v{label:03d}.png", (2 * label, 0, 0))
        _png(tmp_path / "train" / wnid / f"t{label:03d}.png", (2 * label + 1, 0, 0))
    return tmp_path


def test_imagenet100_split_ids_and_training_transform(small_imagenet: Path) -> None:
    wnids = class_list("mgnet")
    spec = DataSpec(name="imagenet100", root=str(small_imagenet), split="train", preprocessing="crop224", limit=4)
    opened = open_dataset(spec, train_transform=lambda image: torch.full((1,), float(image.getpixel((0, 0))[0])))
    chosen = _seeded_subset(100, 4)
    assert opened.ids_hash == _sha16([f"{wnids[i]}/t{i:03d}.png" for i in chosen])
    assert [opened.dataset[k][0].item() for k in range(4)] == [2 * i + 1 for i in chosen]
    assert (opened.split, opened.preprocessing, opened.n, opened.available, opened.requested) == (
        "train", "crop224", 4, 100, 4)


def _jpeg_copies(out: Path, corruption: str, severity: int, relatives: list[str]) -> None:
    for relative in relatives:
        wnid, name = relative.split("/")
        _png(out / corruption / str(severity) / wnid / name, (0, 9, 0), size=224)
        (out / corruption / str(severity) / wnid / name).rename(
            out / corruption / str(severity) / wnid / (Path(name).stem + ".JPEG"))


def test_imagenet_c_cell_ids_split_and_bad_images(small_imagenet: Path, tmp_path: Path) -> None:
    wnids = class_list("mgnet")
    spec = DataSpec(name="imagenet100", root=str(small_imagenet), split="train", limit=3, on_bad_image="skip")
    chosen = _seeded_subset(100, 3)
    relatives = [f"{wnids[i]}/t{i:03d}.png" for i in chosen]
    out = tmp_path / "c"
    with pytest.raises(InputError) as error:
        open_imagenet_c(spec, out, "fog", 2)
    first = out / "fog" / "2" / wnids[chosen[0]] / f"t{chosen[0]:03d}.JPEG"
    assert str(error.value) == (
        f"{first} is missing (3 of the 3 images this run selects): write them with `mgbench corruptions generate "
        f"--data-root {small_imagenet} --out {out} --class-list mgnet --corruptions fog --severities 2 "
        "--split train --limit 3`")
    _jpeg_copies(out, "fog", 2, relatives)
    opened = open_imagenet_c(spec, out, "fog", 2)
    jpegs = [r.replace(".png", ".JPEG") for r in relatives]
    assert opened.ids_hash == _sha16([f"fog/2/{r}" for r in jpegs])
    assert (opened.split, opened.n, opened.available, opened.requested, opened.preprocessing) == (
        "train", 3, 100, 3, "crop224")
    (out / "fog" / "2" / jpegs[1]).write_bytes(b"not an image")
    assert open_imagenet_c(spec, out, "fog", 2).dataset[1] is None  # --on-bad-image skip reaches the files


@needs_robustbench
def test_imagenet1k_ids_are_robustbenchs_seeded_subset(tmp_path: Path) -> None:
    """imagenet1k subsets RobustBench's 5,000 listed ids (read here straight from its file) and
    opens them under ``root/val``; its key carries no ``available`` count (the list is fixed)."""
    listed = Path(importlib.metadata.distribution("robustbench").locate_file(
        "robustbench/helper_files/imagenet_test_image_ids.txt")).read_text().split()
    chosen = [listed[i] for i in _seeded_subset(5000, 2)]
    for image_id in chosen:
        _png(tmp_path / "val" / image_id, (1, 2, 3))
    spec = DataSpec(name="imagenet1k", root=str(tmp_path), limit=2, preprocessing="crop224", on_bad_image="skip")
    opened = open_dataset(spec)
    assert opened.ids_hash == _sha16(chosen)
    assert (opened.n, opened.split, opened.preprocessing) == (2, "val", "crop224")
    assert [path for path, _ in opened.dataset.samples] == [tmp_path / "val" / i for i in chosen]
    (tmp_path / "val" / chosen[0]).write_bytes(b"broken")
    assert open_dataset(spec).dataset[0] is None
