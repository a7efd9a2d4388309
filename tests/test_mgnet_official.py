"""Official MGNet checkpoints: the key map, strictness, and that the converted model is the same function.

The official module names come from the official code's module definitions (``mgnet.py``:
``MGNet.backbone``, ``feat_fusion`` = FeatureFusionModule(``mha``, ``norm``), ``loc_network``
= LocalizationNetwork(``fc``), ``global_fc`` / ``glimpse_fc`` = Classifier(``fc``); the
LitModule holds it as ``model``). ``_OfficialLayout`` below rebuilds that layout of parameters
(no behaviour) to produce checkpoints with the official keys and shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from support import one_line_error

from mgbench.models import create_model
from mgbench.models._builder import load_state
from mgbench.models.official import convert_official, to_official
from mgbench.models.resnet import resnet_backbone

# kernels: compares floats across implementations; .ci/run repeats it on a second CPU kernel path.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.kernels]


class _Fc(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.fc = nn.Linear(dim_in, dim_out)


class _Fusion(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, 1)
        self.relu = nn.ReLU()
        self.norm = nn.LayerNorm(dim)


class _OfficialLayout(nn.Module):
    def __init__(self, backbone: str, classes: int, aux: bool = True):
        super().__init__()
        self.backbone, dim = resnet_backbone(backbone)
        self.feat_fusion = _Fusion(dim + 3)
        self.loc_network = _Fc(dim + 3, 3)
        self.global_fc = _Fc(dim + 3, classes)
        if aux:
            self.glimpse_fc = _Fc(dim, classes)


def _official_checkpoint(path: Path, backbone: str = "resnet18", classes: int = 100, aux: bool = True,
                         extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A Lightning-style checkpoint with random weights under the official names; returns its state_dict."""
    torch.manual_seed(7)
    layout = _OfficialLayout(backbone, classes, aux)
    state = {f"model.{k}": (torch.randn_like(v) if v.is_floating_point() else v.clone())
             for k, v in layout.state_dict().items()}
    state.update({"accs.0.correct": torch.tensor(3), "accs.0.total": torch.tensor(10)})  # Lightning metric states
    state.update(extra or {})
    torch.save({"epoch": 400, "global_step": 19600, "state_dict": state}, path)
    return state


def test_official_names_map_onto_ours(tmp_path: Path) -> None:
    official = _official_checkpoint(tmp_path / "ours.ckpt")
    converted = convert_official(tmp_path / "ours.ckpt", "mgnet-r18")
    model = converted.model
    pairs = [
        (model.backbone.conv1.weight, "model.backbone.conv1.weight"),
        (model.backbone.layer4[1].bn2.running_var, "model.backbone.layer4.1.bn2.running_var"),
        (model.fusion.attention.in_proj_weight, "model.feat_fusion.mha.in_proj_weight"),
        (model.fusion.attention.in_proj_bias, "model.feat_fusion.mha.in_proj_bias"),
        (model.fusion.attention.out_proj.weight, "model.feat_fusion.mha.out_proj.weight"),
        (model.fusion.norm.weight, "model.feat_fusion.norm.weight"),
        (model.localization.weight, "model.loc_network.fc.weight"),
        (model.global_fc.bias, "model.global_fc.fc.bias"),
        (model.glimpse_fc.weight, "model.glimpse_fc.fc.weight"),
    ]
    for ours, key in pairs:
        assert torch.equal(ours, official[key]), key
    assert converted.arguments == {"num_classes": 100}
    # Every official model key was used (the map is one to one) and the load was strict.
    assert len(model.state_dict()) == len([k for k in official if k.startswith("model.")])


def test_converted_model_is_the_same_function(tmp_path: Path, run_cli) -> None:
    original = create_model("mgnet-tiny").eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # weights no fresh model has: the final equality needs the load
        for value in original.state_dict().values():
            if value.is_floating_point():
                value.add_(0.01 * torch.randn(value.shape, generator=generator))
    torch.save({"state_dict": to_official(original.state_dict())}, tmp_path / "tiny.ckpt")
    code, out, err = run_cli("convert", "--from-official", str(tmp_path / "tiny.ckpt"), "--model", "mgnet-tiny",
                             "--out", str(tmp_path / "tiny.pt"))
    assert code == 0, err
    assert "sha256" in out and 'architecture = "mgnet-tiny"' in out
    fresh = create_model("mgnet-tiny").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = fresh.forward_steps(x)
    load_state(fresh, torch.load(tmp_path / "tiny.pt", weights_only=True), "test")
    with torch.no_grad():
        a, b = original.forward_steps(x), fresh.forward_steps(x)
    assert not torch.allclose(before.logits, a.logits, atol=1e-4)  # without the load they differ
    assert torch.equal(a.logits, b.logits) and torch.equal(a.boxes, b.boxes)


def test_baseline_drops_the_unused_location_layer(tmp_path: Path) -> None:
    official = _official_checkpoint(tmp_path / "base.ckpt", aux=False)
    model = convert_official(tmp_path / "base.ckpt", "mgnet-baseline-r18").model
    assert torch.equal(model.global_fc.weight, official["model.global_fc.fc.weight"])


def test_checkpoint_without_auxiliary_head_gives_alpha_zero(tmp_path: Path) -> None:
    _official_checkpoint(tmp_path / "noaux.ckpt", backbone="resnet-tiny", classes=10, aux=False)
    converted = convert_official(tmp_path / "noaux.ckpt", "mgnet-tiny")
    assert converted.arguments == {"num_classes": 10, "alpha": 0.0}
    assert converted.model.glimpse_fc is None


class Unpicklable:
    """A custom class: weights_only loading must refuse it."""


@pytest.mark.parametrize(
    "case, message",
    [
        ("unmatched", "no counterpart in MGNet: extra.weight"),
        ("stray", "no counterpart in MGNet: stray.weight"),
        ("missing-file", "does not exist"),
        ("not-mgnet", "not an MGNet architecture"),
        ("wrong-backbone", "does not fit the architecture"),
        ("unsafe", "Unpicklable"),
        ("bad-out", "must end in .pt"),
    ],
)
def test_convert_bad_input(tmp_path: Path, run_cli, case: str, message: str) -> None:
    ckpt, model, out = tmp_path / "x.ckpt", "mgnet-tiny", tmp_path / "x.pt"
    extra = {"unmatched": {"model.extra.weight": torch.zeros(2)}, "stray": {"stray.weight": torch.zeros(2)}}.get(case)
    _official_checkpoint(ckpt, backbone="resnet-tiny", classes=10, extra=extra)
    if case == "missing-file":
        ckpt = tmp_path / "absent.ckpt"
    elif case == "not-mgnet":
        model = "resnet18"
    elif case == "wrong-backbone":
        model = "mgnet-r18"
    elif case == "unsafe":
        torch.save({"state_dict": {}, "callback": Unpicklable()}, ckpt)
    elif case == "bad-out":
        out = tmp_path / "x.ckpt2"
    code, stdout, err = run_cli("convert", "--from-official", str(ckpt), "--model", model, "--out", str(out))
    one_line_error(code, err, message)
    assert not out.exists()
