"""The compute counter's plumbing, against hand counts: exact integer totals (no rounding of the
unit), the stored rows, the CPU copy that leaves the caller's model alone, per-step counts, and
which input size and glimpse count a model is counted at."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.nn as nn

from mgbench.errors import InputError
from mgbench.flops import (
    CONVENTION,
    ComputeProfile,
    _cpu_attention_flops,
    compare,
    counting_model,
    fvcore_gmacs,
    profile,
    torch_gflops,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# a 3x3 convolution 3 -> 64 then 64 -> 64 channels on 256 x 256 (padding 1, no bias): MACs by hand
SIDE = 256
MACS = 3 * 64 * 9 * SIDE * SIDE + 64 * 64 * 9 * SIDE * SIDE


def _convs() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.Conv2d(64, 64, 3, padding=1, bias=False))


def test_totals_are_exact_multiply_adds_in_units_of_1e9(capsys: pytest.CaptureFixture[str]) -> None:
    model = _convs().eval()
    assert MACS > 2e9  # large enough that a unit off by one part in 1e9 moves the integer
    assert round(fvcore_gmacs(model, SIDE) * 1e9) == MACS
    assert round(torch_gflops(model, SIDE) * 1e9) == 2 * MACS
    assert capsys.readouterr().out == ""  # FlopCounterMode prints no table


def test_attention_formula_by_hand() -> None:
    # B=2, H=3 heads, L_q=5, L_k=11, E=7, E_v=13: scores 2*3*5*11*7 MACs, weighted sum 2*3*5*11*13
    assert _cpu_attention_flops((2, 3, 5, 7), (2, 3, 11, 7), (2, 3, 11, 13)) == 2 * (2 * 3 * 5 * 11 * (7 + 13))


def test_profile_rows() -> None:
    detail = {"convention": CONVENTION, "tool": "fvcore"}
    one = ComputeProfile(1234, [0.5]).rows()
    assert [(r.metric, r.value, r.step, r.detail) for r in one] == [
        ("params", 1234.0, None, {"unit": "parameters"}), ("gmacs", 0.5, None, detail)]
    two = ComputeProfile(10, [0.1, 0.3]).rows()
    assert [(r.metric, r.value, r.step, r.detail) for r in two] == [
        ("params", 10.0, None, {"unit": "parameters"}), ("gmacs", 0.3, None, detail),
        ("gmacs", 0.1, 1, detail), ("gmacs", 0.3, 2, detail)]


def test_counting_leaves_the_callers_model_in_train_mode() -> None:
    model = _convs().train()
    counted = profile(model, 8)
    assert model.training and all(m.training for m in model.modules())
    assert counted.params == 3 * 64 * 9 + 64 * 64 * 9
    both = compare(model, 8)
    assert model.training and all(m.training for m in model.modules())
    assert both.params == counted.params and both.gmacs == counted.gmacs
    assert both.torch_gflops[-1] == pytest.approx(2 * both.gmacs[-1])


def test_a_two_glimpse_model_is_counted_after_each_glimpse() -> None:
    loaded, size = counting_model("mgnet-tiny", glimpses=2)
    counted = profile(loaded.module, size)
    assert len(counted.gmacs) == 2 and counted.gmacs[0] < counted.gmacs[1]


def _factory(tmp_path: Path, input_size: int | None) -> str:
    path = tmp_path / "net.py"
    attribute = f"    model.input_size = {input_size}\n" if input_size else ""
    path.write_text("import torch.nn as nn\n\ndef build():\n"
                    "    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))\n"
                    f"{attribute}    return model\n")
    return f"{path}:build"


def test_input_size_comes_from_the_option_then_the_model_then_the_registry(tmp_path: Path) -> None:
    factory = _factory(tmp_path, 40)
    assert counting_model(factory)[1] == 40  # the model's own attribute
    assert counting_model(factory, input_size=48)[1] == 48  # the option wins
    assert counting_model("mgnet-tiny.digits.s0")[1] == 64  # a card: its architecture's default
    assert counting_model("resnet-tiny")[1] == 64


@pytest.mark.parametrize("call, message", [
    (lambda f: counting_model(f), "{factory} does not say its input size: pass --input"),
    (lambda f: counting_model(f, glimpses=2, input_size=32),
     "--glimpses needs a registered architecture or card, not the factory {factory}"),
    (lambda f: counting_model("resnet-tiny", glimpses=2),
     "resnet-tiny takes no glimpses (it is not a glimpse model): drop --glimpses"),
])
def test_counting_errors_name_the_model_and_the_fix(tmp_path: Path, call, message: str) -> None:
    factory = _factory(tmp_path, None)
    with pytest.raises(InputError) as info:
        call(factory)
    assert str(info.value) == message.format(factory=factory)
