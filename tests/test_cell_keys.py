"""What makes a stored cell reusable: the same model weights on the same images under the same
condition. Another subset of images (a larger ``--limit``, or as many images but other files) or
retrained weights (another checkpoint hash) must be computed anew, never read from the old cell.

All through the public ``evaluate`` and the store's rows; the expected ``n`` is the number of
images asked for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import write_card

from mgbench.data import DataSpec, class_list
from mgbench.models import create_model
from mgbench.runner import RunOptions, run_suite
from mgbench.store import Store
from mgbench.suites import load_suite

pytestmark = pytest.mark.usefixtures("one_thread")

FACTORY = '''
import torch


def model(classes=10):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, classes))


def imagenet():
    return model(100)
'''
OPTIONS = RunOptions(device="cpu", batch_size=250)


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(FACTORY)
    return path


def _clean(outcomes) -> list:
    return [o for o in outcomes if o.condition.get("threat") == "clean"]


def _clean_rows(store: Path):
    with Store(store) as db:
        frame = db.frame(threat="clean", metric="top1")
    return frame[frame["step"].isna()]


def test_a_larger_limit_is_a_new_cell(factory: Path, store_path: Path) -> None:
    suite, model = load_suite("clean"), f"{factory}:model"
    first = _clean(run_suite(suite, models=[model], data=DataSpec(limit=100), store=store_path, options=OPTIONS))
    again = _clean(run_suite(suite, models=[model], data=DataSpec(limit=100), store=store_path, options=OPTIONS))
    larger = _clean(run_suite(suite, models=[model], data=DataSpec(limit=2000), store=store_path, options=OPTIONS))
    assert [o.computed for o in first + again + larger] == [True, False, True]
    rows = _clean_rows(store_path)
    assert sorted(rows["n"]) == [100, 2000]  # the 2,000-image cell did not reuse the 100-image one
    assert rows["subset"].nunique() == 2


def _fake_imagenet(root: Path, prefix: str) -> None:
    """One small JPEG per class of the mgnet list; the file names start with ``prefix``."""
    rng = np.random.default_rng(0)
    for index, wnid in enumerate(class_list("mgnet")):
        folder = root / "val" / wnid
        folder.mkdir(parents=True)
        image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"{prefix}_{index:04d}.JPEG", quality=90)


def test_as_many_other_images_are_a_new_cell(factory: Path, tmp_path: Path, store_path: Path) -> None:
    """Same dataset, split, preprocessing and count; only the files differ (the subset hash)."""
    suite, model = load_suite("clean"), f"{factory}:imagenet"
    outcomes = []
    for prefix in ("a", "b"):
        root = tmp_path / prefix
        _fake_imagenet(root, prefix)
        data = DataSpec(name="imagenet100", root=str(root), limit=10)
        outcomes += _clean(run_suite(suite, models=[model], data=data, store=store_path,
                                    options=RunOptions(device="cpu", batch_size=10, workers=0)))
    assert [o.computed for o in outcomes] == [True, True]
    rows = _clean_rows(store_path)
    assert list(rows["n"]) == [10, 10] and rows["subset"].nunique() == 2


def _card(zoo: Path, checkpoint: Path) -> None:
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    write_card(zoo, "tiny.digits", '[arguments]\nnum_classes = 10\n\n'
               f'[checkpoint]\npath = "{checkpoint.name}"\nsha256 = "{sha}"\nformat = "mgbench"\n')


def test_retrained_weights_are_a_new_cell(tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGBENCH_ZOO", str(tmp_path))
    suite, data = load_suite("clean"), DataSpec(limit=50)
    weights = create_model("resnet-tiny").state_dict()
    checkpoint = tmp_path / "tiny.digits.pt"
    torch.save(weights, checkpoint)
    _card(tmp_path, checkpoint)
    first = _clean(run_suite(suite, models=["tiny.digits"], data=data, store=store_path, options=OPTIONS))
    # "Retrained": the same card name, other weights (a different checkpoint and sha256).
    generator = torch.Generator().manual_seed(1)
    torch.save({k: v + 0.05 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
                for k, v in weights.items()}, checkpoint)
    _card(tmp_path, checkpoint)
    second = _clean(run_suite(suite, models=["tiny.digits"], data=data, store=store_path, options=OPTIONS))
    again = _clean(run_suite(suite, models=["tiny.digits"], data=data, store=store_path, options=OPTIONS))
    assert [o.computed for o in first + second + again] == [True, True, False]
    rows = _clean_rows(store_path)
    assert len(rows) == 2 and rows["weights"].nunique() == 2 and set(rows["n"]) == {50}
