"""The corruption table and its cells (``mgbench.corruptions.condition``) apart from the summary
arithmetic (``test_corruption_summary.py``): validation messages, defaults, the stored keys, the
tables a merge rebuilds from summary keys, MGNet's evaluation zoom against torchvision and PIL,
and where each cell's images come from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mgbench import compat  # noqa: F401  (torchvision's Python parts beside a CPU torch)
from mgbench.corruptions.condition import (
    FolderCorruption,
    OnTheFlyCorruption,
    Settings,
    _backend,
    expand_corruptions,
    mgnet_zoom,
    parse_table,
    tables_from_summaries,
)
from mgbench.corruptions.reference import ReferenceBackend
from mgbench.corruptions.scaling import corrupt_scaled
from mgbench.corruptions.torch_backend import TorchBackend
from mgbench.data import DataSpec
from mgbench.errors import InputError

COMMON = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
          "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
KEYS = "corruptions, severities, backend, scaling, preprocessing, imagenet_c_root, mce_baseline, workers"


def test_a_bare_table_is_every_common_corruption_at_every_severity() -> None:
    assert parse_table({"type": "corruption"}) == Settings(COMMON, (1, 2, 3, 4, 5), "torch", "native", "hendrycks",
                                                           None, None, None)
    assert len(expand_corruptions({"type": "corruption"})) == 75
    cells = expand_corruptions({"type": "corruption", "corruptions": "fog,snow", "severities": "2,5", "workers": 0})
    assert [(c.corruption, c.severity, type(c).__name__) for c in cells] == [
        ("fog", 2, "OnTheFlyCorruption"), ("fog", 5, "OnTheFlyCorruption"), ("snow", 2, "OnTheFlyCorruption"),
        ("snow", 5, "OnTheFlyCorruption")]


@pytest.mark.parametrize("table, message", [
    ({"b": 1, "a": 2}, f"corruption table has unknown key(s) a, b: use {KEYS}"),
    ({"backend": "gpu"}, "corruption backend 'gpu' is not one of torch, reference, folder: fix the suite or option"),
    ({"preprocessing": "resize"}, "corruption preprocessing 'resize' is not one of hendrycks, mgnet: fix the suite or "
                                  "option"),
    ({"backend": "folder"}, "backend folder needs imagenet_c_root (--imagenet-c-root) to be an existing folder, not "
                            "None"),
    ({"backend": "folder", "imagenet_c_root": "/no/such/folder"}, "backend folder needs imagenet_c_root "
     "(--imagenet-c-root) to be an existing folder, not '/no/such/folder'"),
    ({"workers": -1}, "corruption workers must be a whole number >= 0, not -1"),
    ({"workers": True}, "corruption workers must be a whole number >= 0, not True"),
    ({"workers": 1.5}, "corruption workers must be a whole number >= 0, not 1.5"),
    ({"mce_baseline": ""}, "mce_baseline must be a model name or alexnet, not ''"),
    ({"mce_baseline": 3}, "mce_baseline must be a model name or alexnet, not 3"),
])
def test_bad_tables_name_the_problem(table: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as error:
        parse_table({"type": "corruption", **table})
    assert str(error.value) == message


def test_the_stored_keys_carry_every_setting_that_moves_the_numbers(tmp_path: Path) -> None:
    torch_settings = parse_table({"type": "corruption", "severities": [1, 2], "scaling": "resample224",
                                  "preprocessing": "mgnet", "mce_baseline": "alexnet"})
    assert torch_settings.condition_key("fog", 2) == {
        "threat": "corruption", "corruption": "fog", "severity": 2, "backend": "torch",
        "corruption_preprocessing": "mgnet", "scaling": "resample224"}
    assert torch_settings.summary_key() == {
        "threat": "corruption", "backend": "torch", "corruption_preprocessing": "mgnet", "scaling": "resample224",
        "corruptions": "common", "severities": [1, 2], "mce_baseline": "alexnet"}
    (tmp_path / "c").mkdir()
    folder = parse_table({"type": "corruption", "corruptions": ["snow", "fog"], "backend": "folder",
                          "imagenet_c_root": str(tmp_path / "c" / ".." / "c")})
    root = str((tmp_path / "c").resolve())
    assert folder.condition_key("snow", 3) == {
        "threat": "corruption", "corruption": "snow", "severity": 3, "backend": "folder",
        "corruption_preprocessing": "hendrycks", "imagenet_c_root": root}
    assert folder.summary_key()["corruptions"] == "snow,fog" and folder.summary_key()["imagenet_c_root"] == root
    assert FolderCorruption(folder, "snow", 3).key == folder.condition_key("snow", 3)


def test_a_merge_rebuilds_each_distinct_table_from_its_summary_keys(tmp_path: Path) -> None:
    a = parse_table({"type": "corruption", "corruptions": "extra", "severities": "1-2", "scaling": "resample224",
                     "mce_baseline": "b"})
    b = parse_table({"type": "corruption", "corruptions": ["fog"], "severities": [3], "backend": "folder",
                     "imagenet_c_root": str(tmp_path), "preprocessing": "mgnet"})
    keys = [{**a.summary_key(), "corruption": c} for c in ("mean", "snow")] + [{**b.summary_key(), "corruption": "fog"}]
    tables = tables_from_summaries(keys)
    assert tables == [
        {"type": "corruption", "corruptions": "extra", "severities": [1, 2], "backend": "torch",
         "preprocessing": "hendrycks", "mce_baseline": "b", "scaling": "resample224"},
        {"type": "corruption", "corruptions": "fog", "severities": [3], "backend": "folder", "preprocessing": "mgnet",
         "imagenet_c_root": str(tmp_path.resolve())}]
    assert [parse_table(t) for t in tables] == [a, Settings(("fog",), (3,), "folder", "native", "mgnet",
                                                           str(tmp_path.resolve()))]


def test_mgnet_zoom_is_torchvisions_resize_256_and_centre_crop_224() -> None:
    from torchvision.transforms import functional as TF

    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 224, 224)).float() / 255
    expected = TF.center_crop(TF.resize(x, [256, 256], antialias=True), [224, 224])
    assert torch.equal(mgnet_zoom(x), torch.round(expected.clamp(0, 1) * 255) / 255)
    extremes = (torch.rand(1, 3, 224, 224) > 0.5).float()  # black and white pixels: the most overshoot could show
    assert 0 <= mgnet_zoom(extremes).min() and mgnet_zoom(extremes).max() <= 1
    # and PIL's, which MGNet's own pipeline uses on the image files, within one level
    picture = Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy())
    pil = np.asarray(picture.resize((256, 256), Image.BILINEAR).crop((16, 16, 240, 240)), dtype=np.float64)
    assert np.abs(mgnet_zoom(x)[0].permute(1, 2, 0).numpy() * 255 - pil).max() <= 1.0 + 1e-6
    # any size: 64 -> round(73.14) = 73, crop offset (73 - 64) // 2 = 4
    small = torch.rand(1, 1, 64, 48)
    expected = TF.resize(small, [73, 55], antialias=True)[..., 4:68, 3:51]
    assert torch.equal(mgnet_zoom(small), torch.round(expected.clamp(0, 1) * 255) / 255)


def test_on_the_fly_cells_corrupt_with_their_backend_scaling_and_preprocessing() -> None:
    torch.manual_seed(1)
    x, ids = torch.rand(2, 3, 32, 32), torch.tensor([4, 9])
    native = Settings(("defocus_blur",), (3,))
    plain = OnTheFlyCorruption(native, "defocus_blur", 3).apply(None, x, None, ids)
    assert torch.equal(plain, corrupt_scaled(TorchBackend(), x, [4, 9], "defocus_blur", 3, "native"))
    resampled = Settings(("defocus_blur",), (3,), scaling="resample224", preprocessing="mgnet")
    zoomed = OnTheFlyCorruption(resampled, "defocus_blur", 3).apply(None, x, None, ids)
    assert torch.equal(zoomed, mgnet_zoom(corrupt_scaled(TorchBackend(), x, [4, 9], "defocus_blur", 3,
                                                         "resample224")))
    reference = Settings(("gaussian_noise",), (2,), backend="reference", workers=0)
    assert torch.equal(OnTheFlyCorruption(reference, "gaussian_noise", 2).apply(None, x, None, ids),
                       corrupt_scaled(ReferenceBackend(0), x, [4, 9], "gaussian_noise", 2, "native"))
    assert parse_table({"type": "corruption", "backend": "reference", "workers": 2}).workers == 2
    assert isinstance(_backend("torch", None), TorchBackend)
    reference = _backend("reference", 3)
    assert isinstance(reference, ReferenceBackend) and reference.workers == 3


def test_folder_cells_read_imagenet100_c_with_their_preprocessing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(("fog",), (2,), backend="folder", imagenet_c_root=str(tmp_path), preprocessing="mgnet")
    cell = FolderCorruption(settings, "fog", 2)
    with pytest.raises(InputError) as error:
        cell.open_data(DataSpec("digits"))
    assert str(error.value) == ("backend folder reads ImageNet-C style folders of ImageNet100, not digits: use "
                                "backend torch or reference")
    opened = []
    monkeypatch.setattr("mgbench.corruptions.condition.open_imagenet_c", lambda *args: opened.append(args) or "opened")
    spec = DataSpec("imagenet100", root=str(tmp_path))
    assert cell.open_data(spec) == "opened"
    FolderCorruption(Settings(("fog",), (2,), backend="folder", imagenet_c_root=str(tmp_path)), "fog", 2) \
        .open_data(spec)
    assert opened == [(spec, str(tmp_path), "fog", 2, "resize256-crop224"), (spec, str(tmp_path), "fog", 2, "crop224")]
    x = torch.rand(1, 3, 4, 4)
    assert cell.apply(None, x, None, None) is x
