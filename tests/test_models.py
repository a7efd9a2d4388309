"""The model registry, zoo cards, checkpoints and user factories."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from support import write_card

from mgbench import compat
from mgbench.errors import InputError
from mgbench.models import create_model, forward_steps, list_architectures, list_cards, load_model, num_steps
from mgbench.models.layers import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)


def test_torchvision_imports_beside_cpu_torch() -> None:
    """Either the compiled ops load (nothing declared) or the compat module declared the schemas."""
    if compat._library is None:
        assert torch.ops.torchvision.nms is not None
    else:
        assert "nms" in str(torch.ops.torchvision.nms.default._schema)
    assert torchvision.models.resnet18(num_classes=3).eval()(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    compat.ensure_torchvision()  # idempotent


def test_registry_lists_baselines() -> None:
    assert {"resnet18", "resnet50", "resnet-tiny"} <= set(list_architectures())


@pytest.mark.parametrize("name,size,classes", [("resnet-tiny", 64, 10), ("resnet18", 64, 100)])
def test_models_take_unit_images_and_return_logits(name: str, size: int, classes: int) -> None:
    model = create_model(name).eval()
    x = torch.rand(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, classes)
    assert num_steps(model) == 1
    assert torch.equal(forward_steps(model, x).logits[0], logits)


def test_normalisation_is_inside_the_model() -> None:
    model = create_model("resnet18").eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(model(x), model.net((x - mean) / std))


def test_architecture_names_load_seeded_random_init_weights() -> None:
    """A bare architecture is untrained: weights say random-init (the seed is part of the identity),
    and the same name gives the same weights without touching the caller's random state."""
    torch.manual_seed(123)
    before = torch.rand(1)
    first, second = load_model("resnet-tiny"), load_model("resnet-tiny")
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)
    assert first.weights == "random-init" and first.random_init
    assert first.identity() == {"model": "resnet-tiny", "arch": "resnet-tiny", "weights": "random-init",
                                "init_seed": 0}
    assert all(torch.equal(a, b) for a, b in zip(first.module.state_dict().values(),
                                                  second.module.state_dict().values()))
    assert load_model("resnet-tiny", init_seed=1).identity()["init_seed"] == 1


def test_unknown_model_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown model 'resnet-huge'"):
        load_model("resnet-huge")


def _write_card(zoo: Path, name: str, checkpoint: Path | None, sha: str | None, **extra: str) -> None:
    lines = ["[arguments]", "num_classes = 10"]
    if checkpoint is not None:
        lines += ["[checkpoint]", f'path = "{checkpoint}"']
        if sha:
            lines.append(f'sha256 = "{sha}"')
        lines += [f'{k} = "{v}"' for k, v in extra.items()]
    write_card(zoo, name, "\n".join(lines) + "\n")


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MGBENCH_ZOO", str(tmp_path))
    return tmp_path


def test_card_loads_checkpoint_and_checks_sha(zoo: Path) -> None:
    source = create_model("resnet-tiny")
    ckpt = zoo / "w.pt"
    torch.save(source.state_dict(), ckpt)
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    _write_card(zoo, "tiny.test", ckpt, sha)
    loaded = load_model("tiny.test")
    assert loaded.weights == sha and loaded.card is not None and "tiny.test" in list_cards()
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded.module.eval()(x), source.eval()(x))

    _write_card(zoo, "tiny.badsha", ckpt, "0" * 64)
    with pytest.raises(InputError, match="tiny.badsha.*sha256"):
        load_model("tiny.badsha")


def test_card_errors_name_the_card_and_keys(zoo: Path) -> None:
    _write_card(zoo, "tiny.missing", zoo / "absent.pt", None)
    with pytest.raises(InputError, match="tiny.missing.*does not exist"):
        load_model("tiny.missing")

    state = create_model("resnet-tiny").state_dict()
    state.pop("net.fc.bias")
    state["net.extra.weight"] = torch.zeros(1)
    torch.save(state, zoo / "partial.pt")
    _write_card(zoo, "tiny.keys", zoo / "partial.pt", None)
    with pytest.raises(InputError, match=r"tiny\.keys.*missing keys net\.fc\.bias.*unexpected keys net\.extra"):
        load_model("tiny.keys")

    (zoo / "junk.pt").write_bytes(b"\x00 definitely not a checkpoint")
    _write_card(zoo, "tiny.junk", zoo / "junk.pt", None)
    with pytest.raises(InputError, match="tiny.junk.*not a loadable state_dict") as info:
        load_model("tiny.junk")
    assert "weights_only" not in str(info.value)  # torch's advice to load unsafely is never passed on


def test_checkpoints_load_weights_only(zoo: Path) -> None:
    """A pickle carrying arbitrary objects is refused (weights_only=True), not executed."""
    torch.save({"state_dict": create_model("resnet-tiny").state_dict(), "fn": Path("x")}, zoo / "evil.pt")
    _write_card(zoo, "tiny.evil", zoo / "evil.pt", None)
    with pytest.raises(InputError, match=r"not a loadable state_dict \(it holds Python objects besides tensors "
                                         r"\(pathlib\.\w*Path\)\)") as info:
        load_model("tiny.evil")
    assert "weights_only" not in str(info.value)


def test_a_refused_checkpoint_brings_no_torch_warnings(zoo: Path, recwarn: pytest.WarningsRecorder) -> None:
    (zoo / "protocol4.pt").write_bytes(pickle.dumps({"w": 1}, protocol=4))
    _write_card(zoo, "tiny.p4", zoo / "protocol4.pt", None)
    with pytest.raises(InputError, match="tiny.p4.*not a loadable state_dict"):
        load_model("tiny.p4")
    assert [str(w.message) for w in recwarn] == []


def test_architecture_arguments_are_checked() -> None:
    with pytest.raises(InputError, match=r"architecture resnet-tiny takes no argument 'bogus' \(it takes: num_classes"):
        load_model("resnet-tiny", bogus=3)
    with pytest.raises(InputError, match="architecture resnet-tiny raised TypeError"):
        load_model("resnet-tiny", num_classes="ten")


def test_torchvision_imagenet1k_weights_are_sliced_to_the_class_list(zoo: Path, tmp_path: Path) -> None:
    full = torchvision.models.resnet18(num_classes=1000)
    torch.save(full.state_dict(), zoo / "tv.pth")
    card = ['name = "r18.tv"', 'architecture = "resnet18"', 'dataset = "imagenet100-mgnet"',
            "[checkpoint]", 'path = "tv.pth"', 'format = "torchvision-imagenet1k"', 'class_list = "mgnet"']
    (zoo / "r18.tv.toml").write_text("\n".join(card) + "\n")
    model = load_model("r18.tv").module.eval()
    assert torch.equal(model.net.fc.weight, full.fc.weight[:100])
    x = torch.rand(1, 3, 64, 64)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(model(x), full.eval()((x - mean) / std)[:, :100], atol=1e-5)

    # The CMC list needs the 1000 sorted WNIDs, read from the user's full train folder.
    (zoo / "r18.cmc.toml").write_text("\n".join(card).replace("r18.tv", "r18.cmc").replace('"mgnet"', '"cmc"') + "\n")
    with pytest.raises(InputError, match="needs the 1000 WNIDs"):
        load_model("r18.cmc")
    from mgbench.data import class_list

    train = tmp_path / "train"
    wnids = sorted(set(class_list("cmc")) | {f"n9{i:07d}" for i in range(1000)})[:1000]
    assert set(class_list("cmc")) <= set(wnids)
    for wnid in wnids:
        (train / wnid).mkdir(parents=True)
    with open(zoo / "r18.cmc.toml", "a") as handle:
        handle.write(f'[training]\nimagenet1k_train = "{train}"\n')
    sliced = load_model("r18.cmc").module
    expected = [wnids.index(w) for w in class_list("cmc")]
    assert torch.equal(sliced.net.fc.weight, full.fc.weight[expected])


def test_user_factory_from_file_and_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "mymodel.py"
    source.write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))\n"
        "def not_a_model():\n"
        "    return 3\n"
    )
    loaded = load_model(f"{source}:build")
    assert loaded.architecture == "user" and loaded.weights.startswith("user:")
    assert loaded.module(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model("mymodel:build").module(torch.rand(1, 3, 8, 8)).shape == (1, 4)
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        load_model(f"{source}:not_a_model")
    with pytest.raises(InputError, match="has no callable 'nope'"):
        load_model(f"{source}:nope")
    with pytest.raises(InputError, match="does not exist"):
        load_model(f"{tmp_path / 'absent.py'}:build")
