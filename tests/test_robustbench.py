"""RobustBench as a dependency: the autoattack alias, the zoo as ``robustbench:NAME`` models, the
``imagenet1k`` dataset of its 5,000 ids, and the comparison with its published numbers.

Everything is offline: weights are random ones written into a temporary RobustBench-layout folder.
The tests that need robustbench itself skip where the ``[robustbench]`` extra is not installed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from support import needs_robustbench, one_line_error

import mgbench  # noqa: F401  (before torchvision: see mgbench.compat)
from mgbench.data import DataSpec, class_list, open_dataset
from mgbench.errors import InputError
from mgbench.metrics import accuracy_row
from mgbench.validate import Measured, compare, published, published_for

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _python(code: str, tmp_path: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env_path = [str(Path(__file__).resolve().parents[1])] + ([str(extra_path)] if extra_path else [])
    env = {"PYTHONPATH": ":".join(env_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)


# ----------------------------------------------------------------------------- the shim


def test_autoattack_alias_maps_pyautoattack(tmp_path: Path) -> None:
    result = _python("""
        from mgbench.compat import ensure_autoattack_alias
        assert ensure_autoattack_alias()
        import autoattack, pyautoattack, pyautoattack.state
        from autoattack import AutoAttack
        from autoattack.state import EvaluationState
        assert autoattack is pyautoattack and AutoAttack is pyautoattack.AutoAttack
        assert EvaluationState is pyautoattack.state.EvaluationState
        print("ok")
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_autoattack_alias_leaves_a_real_autoattack_alone(tmp_path: Path) -> None:
    package = tmp_path / "site" / "autoattack"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("REAL = True\n")
    result = _python("""
        from mgbench.compat import ensure_autoattack_alias
        assert not ensure_autoattack_alias()
        import sys
        assert "autoattack" not in sys.modules
        import autoattack
        assert autoattack.REAL
        print("ok")
    """, tmp_path, extra_path=tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@needs_robustbench
def test_robustbench_imports_through_the_shim() -> None:
    from mgbench.models.robustbench import import_robustbench

    import_robustbench()
    from robustbench.eval import benchmark  # noqa: F401  (the module that imports autoattack)
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    imagenet = model_dicts[BenchmarkDataset.imagenet]
    assert (len(imagenet[ThreatModel.Linf]), len(imagenet[ThreatModel.corruptions])) == (30, 12)  # issue 20's count


# ----------------------------------------------------------------------------- the zoo builds

# robustbench 1.1.1 names timm models that timm does not have for these (its own bug).
UNBUILDABLE = {"Debenedetti2022Light_XCiT-S12", "Debenedetti2022Light_XCiT-M12", "Debenedetti2022Light_XCiT-L12",
               "AlexNet"}


@needs_robustbench
def test_representative_zoo_entries_build_without_downloading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              one_thread: None) -> None:
    import torchvision

    from mgbench.models.robustbench import build_architecture, find_entry

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r18 = build_architecture(find_entry("Salman2020Do_R18"))
    reference = torchvision.models.resnet18()
    assert sum(p.numel() for p in r18.parameters()) == sum(p.numel() for p in reference.parameters())
    standard = build_architecture(find_entry("Standard_R50"))  # its factory asks torchvision for pretrained weights
    assert sum(p.numel() for p in standard.parameters()) == 25_557_032
    deit = build_architecture(find_entry("corruptions/Tian2022Deeper_DeiT-S"))  # timm, pretrained=True in the zoo
    with torch.no_grad():
        assert deit.eval()(torch.rand(1, 3, 224, 224)).shape == (1, 1000)
    assert not (tmp_path / "torch").exists()  # nothing was downloaded
    with pytest.raises(InputError, match="does not have"):
        build_architecture(find_entry("Debenedetti2022Light_XCiT-S12"))


@needs_robustbench
@pytest.mark.slow
def test_every_imagenet_zoo_entry_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """All 42 ImageNet entries (about 4 minutes on one core): 1000 logits for one image."""
    import timm

    from mgbench.models.robustbench import build_architecture, zoo_entries

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    entries = zoo_entries()
    assert len(entries) == 42
    for entry in entries.values():
        if entry.name in UNBUILDABLE:
            with pytest.raises(InputError, match="does not have"):
                build_architecture(entry)
            continue
        module = build_architecture(entry).eval()
        size = 288 if entry.preprocessing == "crop288" else 224
        with torch.no_grad():
            assert module(torch.rand(1, 3, size, size)).shape == (1, 1000), entry.spec
        del module
    assert not timm.is_model("alexnet")  # the reason AlexNet is unbuildable, from timm itself


# ----------------------------------------------------------------------------- weights from a local folder


def _jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    """A real-size JPEG with some structure: a seeded background colour and a box."""
    from PIL import ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((37 * seed) % 256, (91 * seed) % 256, (53 * seed + 100) % 256)
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=colour[::-1])
    image.save(path, format="JPEG", quality=90)


@pytest.fixture
def rb_dir(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """RobustBench's layout with random ResNet-18 weights for Salman2020Do_R18, saved as its
    checkpoints are (a DataParallel ``module.`` prefix under ``state_dict``)."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    path = tmp_path / "rb" / "imagenet" / "Linf" / "Salman2020Do_R18.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return tmp_path / "rb", net


@needs_robustbench
def test_local_weights_load_and_match_torchvision(rb_dir: tuple[Path, torch.nn.Module],
                                                  monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    from mgbench.models import load_model
    from mgbench.models.robustbench import DIR_ENV
    from mgbench.provenance import sha256_file

    folder, net = rb_dir
    monkeypatch.setenv(DIR_ENV, str(folder))
    loaded = load_model("robustbench:Salman2020Do_R18")
    assert loaded.weights == sha256_file(folder / "imagenet" / "Linf" / "Salman2020Do_R18.pt")
    assert loaded.architecture == "robustbench:Linf/Salman2020Do_R18"
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = net((x - MEAN) / STD)
        torch.testing.assert_close(loaded.module(x), expected, rtol=1e-4, atol=1e-4)
        # ImageNet100 (mgnet list = the first 100 WNIDs in sorted order): the first 100 logits
        sliced = load_model("robustbench:Salman2020Do_R18", data=DataSpec(name="imagenet100", root="unused"))
        torch.testing.assert_close(sliced.module(x), expected[:, :100], rtol=1e-4, atol=1e-4)


@needs_robustbench
def test_checkpoint_with_wrong_keys_is_refused(rb_dir: tuple[Path, torch.nn.Module],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """robustbench itself would load it non-strictly and keep random weights."""
    from mgbench.models import load_model
    from mgbench.models.robustbench import DIR_ENV

    folder, net = rb_dir
    monkeypatch.setenv(DIR_ENV, str(folder))
    path = folder / "imagenet" / "Linf" / "Salman2020Do_R18.pt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in net.state_dict().items()}}, path)
    with pytest.raises(InputError, match="does not fit the architecture") as raised:
        load_model("robustbench:Salman2020Do_R18")
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


@pytest.fixture
def imagenet1k_root(tmp_path: Path) -> Path:
    """An ImageNet folder holding the 2 images of RobustBench's list that ``--limit 2`` selects."""
    from mgbench.data.imagenet1k import robustbench_image_ids
    from mgbench.data.spec import subset_indices

    ids = robustbench_image_ids()
    for k in subset_indices(len(ids), 2):
        _jpeg(tmp_path / "imagenet" / "val" / ids[k], (320, 280), seed=int(k))
    return tmp_path / "imagenet"


@needs_robustbench
def test_missing_weights_offline_is_one_line_naming_the_file(tmp_path: Path, imagenet1k_root: Path, run_cli,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGBENCH_ROBUSTBENCH_DIR", "restored-after-the-test")
    empty = tmp_path / "models"
    code, out, err = run_cli("attack", "--model", "robustbench:Salman2020Do_R50", "--data", "imagenet1k",
                             "--data-root", str(imagenet1k_root), "--limit", "2", "--eps", "4/255", "--attack", "fgsm",
                             "--robustbench-dir", str(empty), "--store", str(tmp_path / "s.sqlite"))
    one_line_error(code, err, str(empty.resolve() / "imagenet" / "Linf" / "Salman2020Do_R50.pt"))
    assert not (tmp_path / "s.sqlite").exists()


def _fake_imagenet100(root: Path) -> list[tuple[Path, int]]:
    """val/WNID/*.JPEG for the 100 classes of the mgnet list, one 256-320 px JPEG each."""
    samples = []
    for label, wnid in enumerate(class_list("mgnet")):
        path = root / "val" / wnid / f"ILSVRC2012_val_{label:08d}.JPEG"
        _jpeg(path, (256 + (label * 7) % 65, 320 - (label * 5) % 65), seed=label)
        samples.append((path, label))
    return samples


@needs_robustbench
def test_zoo_model_runs_through_mgbench_run_on_imagenet100(rb_dir: tuple[Path, torch.nn.Module], tmp_path: Path,
                                                           run_cli, monkeypatch: pytest.MonkeyPatch,
                                                           one_thread: None) -> None:
    import torchvision.transforms as T

    from mgbench.data import subset_indices
    from mgbench.store import Store

    folder, net = rb_dir
    samples = _fake_imagenet100(tmp_path / "imagenet")
    monkeypatch.setenv("MGBENCH_ROBUSTBENCH_DIR", "restored-after-the-test")
    store = tmp_path / "s.sqlite"
    code, out, err = run_cli("run", "--suite", "clean", "--model", "robustbench:Salman2020Do_R18",
                             "--data", "imagenet100", "--data-root", str(tmp_path / "imagenet"),
                             "--robustbench-dir", str(folder), "--store", str(store), "--workers", "0",
                             "--limit", "10")
    assert code == 0, err
    # The same count, computed here with torchvision's own preprocessing and network.
    samples = [samples[i] for i in subset_indices(len(samples), 10)]
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    images = torch.stack([transform(Image.open(p).convert("RGB")) for p, _ in samples])
    labels = torch.tensor([label for _, label in samples])
    with torch.no_grad():
        predictions = net((images - MEAN) / STD)[:, :100].argmax(1)
    with Store(store) as results:
        frame = results.frame(model="robustbench:Salman2020Do_R18")
    row = frame[(frame["metric"] == "top1") & (frame["threat"] == "clean")].iloc[0]
    assert row["dataset"] == "imagenet100-mgnet" and int(row["n"]) == 10
    assert round(row["value"] * 10) == int((predictions == labels).sum())
    assert row["weights"] == frame["weights"].iloc[0] and row["arch"] == "robustbench:Linf/Salman2020Do_R18"


# ----------------------------------------------------------------------------- imagenet1k


@needs_robustbench
def test_imagenet1k_is_robustbenchs_5000_ids(tmp_path: Path) -> None:
    from mgbench.data.imagenet1k import imagenet1k_class_index, robustbench_image_ids
    from mgbench.data.spec import subset_indices

    ids = robustbench_image_ids()
    assert len(ids) == 5000 and len(set(ids)) == 5000
    index = imagenet1k_class_index()
    assert len(index) == 1000 and [index[w] for w in sorted(index)] == list(range(1000))
    (tmp_path / "val").mkdir()
    with pytest.raises(InputError, match="lacks 3 of the 3 RobustBench images"):
        open_dataset(DataSpec(name="imagenet1k", root=str(tmp_path), limit=3))
    chosen = [ids[i] for i in subset_indices(5000, 3)]
    for k, image_id in enumerate(chosen):
        _jpeg(tmp_path / "val" / image_id, (300, 260), seed=k)
    opened = open_dataset(DataSpec(name="imagenet1k", root=str(tmp_path), limit=3))
    assert opened.n == 3 and opened.preprocessing == "resize256-crop224"
    for k, image_id in enumerate(chosen):
        image, label, _ = opened.dataset[k]
        assert image.shape == (3, 224, 224)
        assert label == sorted(index).index(image_id.split("/")[0])  # ImageNet-1k index = sorted WNID position
    assert DataSpec(name="imagenet1k", root="x").num_classes == 1000


def test_imagenet1k_needs_a_root_and_has_only_val() -> None:
    with pytest.raises(InputError, match="needs --data-root"):
        DataSpec(name="imagenet1k")
    with pytest.raises(InputError, match="no split 'train'"):
        DataSpec(name="imagenet1k", root="x", split="train")


# ----------------------------------------------------------------------------- the published numbers


def test_published_numbers_are_robustbenchs() -> None:
    data = published()
    assert data["source"]["repository"] == "https://github.com/RobustBench/robustbench"
    assert len(data["source"]["commit"]) == 40
    # The pairs quoted in issue 20 from model_info/imagenet/Linf/*.json.
    assert published_for("Salman2020Do_R50", "Linf") == {"clean_acc": 64.02, "autoattack_acc": 34.96, "eps": "4/255"}
    assert published_for("Standard_R50", "Linf") == {"clean_acc": 76.52, "autoattack_acc": 0.0, "eps": "4/255"}
    with pytest.raises(InputError, match="publishes no ImageNet Linf numbers"):
        published_for("Salman2020Do_R5", "Linf")


def _measured(correct: int, n: int) -> Measured:
    row = accuracy_row("top1", correct, n)
    return Measured(row.value, row.ci_low, row.ci_high, n)


def test_comparison_within_the_wilson_interval() -> None:
    same = compare("Salman2020Do_R50", "Linf", {"clean": _measured(3201, 5000), "autoattack": _measured(1748, 5000)})
    assert [c.agrees for c in same] == [True, True]
    assert same[0].difference_pp == pytest.approx(0.0, abs=1e-9)
    # 60.00% of 5,000: Wilson half-width ~1.36 pp, so 64.02 is far outside.
    off = compare("Salman2020Do_R50", "Linf", {"clean": _measured(3000, 5000)})
    assert not off[0].agrees and off[0].difference_pp == pytest.approx(-4.02)
    # 58 of 100: Wilson by hand (z = 1.96) gives [48.2, 67.2]; 64.02 is inside.
    p, n, z = 0.58, 100, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    small = compare("Salman2020Do_R50", "Linf", {"clean": _measured(58, 100)})[0]
    assert small.measured.ci_low == pytest.approx(centre - half, abs=1e-9)
    assert small.measured.ci_high == pytest.approx(centre + half, abs=1e-9)
    assert small.agrees
    # Standard_R50 has 0.0 robust accuracy: any measurement with a robust image disagrees at n=5,000.
    assert compare("Standard_R50", "Linf", {"autoattack": _measured(0, 5000)})[0].agrees
    assert not compare("Standard_R50", "Linf", {"autoattack": _measured(25, 5000)})[0].agrees


def test_published_file_is_valid_json_with_percentages() -> None:
    text = Path(mgbench.__file__).with_name("data").joinpath("robustbench_published.json").read_text()
    models = json.loads(text)["models"]
    values = [v for entries in models.values() for entry in entries.values() for k, v in entry.items() if k != "eps"]
    assert values and all(0 <= v <= 100 for v in values)


@needs_robustbench
def test_validate_robustbench_end_to_end(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch,
                                         one_thread: None) -> None:
    """The whole command on 12 images with a constant classifier (fc weights 0, bias on a class none
    of the images has): clean and AutoAttack accuracy are 0 by construction, whose Wilson interval
    at n=12 excludes both published numbers (52.92, 25.32): exit 1, two 'NO' rows, cells stored."""
    import torchvision

    from mgbench.data.imagenet1k import imagenet1k_class_index, robustbench_image_ids
    from mgbench.data.spec import subset_indices
    from mgbench.store import Store

    ids = robustbench_image_ids()
    chosen = [ids[k] for k in subset_indices(len(ids), 12)]
    for k, image_id in enumerate(chosen):
        _jpeg(tmp_path / "imagenet" / "val" / image_id, (300, 270), seed=k)
    labels = {imagenet1k_class_index()[i.split("/")[0]] for i in chosen}
    constant = next(c for c in range(1000) if c not in labels)
    net = torchvision.models.resnet18()
    state = net.state_dict()
    state["fc.weight"] = torch.zeros_like(state["fc.weight"])
    state["fc.bias"] = torch.nn.functional.one_hot(torch.tensor(constant), 1000).float()
    path = tmp_path / "rb" / "imagenet" / "Linf" / "Salman2020Do_R18.pt"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setenv("MGBENCH_ROBUSTBENCH_DIR", "restored-after-the-test")
    store = tmp_path / "s.sqlite"
    code, out, err = run_cli("validate", "robustbench", "--model", "Salman2020Do_R18", "--data-root",
                             str(tmp_path / "imagenet"), "--limit", "12", "--robustbench-dir", str(tmp_path / "rb"),
                             "--store", str(store), "--workers", "0")
    assert code == 1, err
    assert out.count(" NO ") == 2 and "52.92" in out and "25.32" in out
    with Store(store) as results:
        frame = results.frame(model="robustbench:Salman2020Do_R18", metric="top1")
    assert set(frame["dataset"]) == {"imagenet1k"} and set(frame["n"]) == {12}
    assert set(frame["preprocessing"]) == {"resize256-crop224"}
    assert "autoattack-standard" in set(frame["attack"])
