"""The MGNet commands end to end: flops, glimpses (clean and under a condition), and bad input."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from mgbench import conditions
from mgbench.conditions import register_condition_type
from mgbench.models import create_model
from mgbench.report.glimpses import observe, one_condition, parse_condition
from mgbench.store import MetricRow

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Blackout:
    """A test condition: every image becomes black."""

    key: dict[str, Any] = field(default_factory=lambda: {"threat": "blackout"})
    needs_grad: bool = False

    def apply(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def extra_rows(self) -> list[MetricRow]:
        return []


def _expand_blackout(table: dict[str, Any]) -> list[Blackout]:
    return [Blackout() for _ in range(int(table.get("copies", 1)))]


@pytest.fixture(autouse=True)
def blackout_type() -> Iterator[None]:
    """Register the test condition type for this module's tests only."""
    register_condition_type("test-blackout")(_expand_blackout)
    yield
    conditions._TYPES.pop("test-blackout")


def _numbers(line: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+", line)]


def test_flops_plain_resnet(run_cli) -> None:
    code, out, err = run_cli("flops", "--model", "resnet18")
    assert code == 0, err
    assert "1 multiply-add = 1 FLOP" in out and "2 FLOPs per multiply-add" in out
    assert "11.23M parameters" in out
    row = next(line for line in out.splitlines() if re.search(r"\ball\b", line))
    fvcore_step, fvcore_total, torch_step, torch_total, _ = _numbers(row)
    assert fvcore_total == pytest.approx(1.819, rel=1e-2)  # the reference's plain ResNet-18
    assert torch_total / 2 == pytest.approx(fvcore_total, rel=1e-2)


def test_flops_glimpses_option(run_cli) -> None:
    code, out, err = run_cli("flops", "--model", "mgnet-tiny", "--glimpses", "2")
    assert code == 0, err
    rows = [_numbers(line) for line in out.splitlines() if re.match(r"\W+[12] ", line)]
    assert len(rows) == 2
    (step1, total1, *_), (step2, total2, *_) = rows
    assert total1 == pytest.approx(step1) and total2 == pytest.approx(step1 + step2, abs=2e-4)
    assert step2 > step1  # the second glimpse also attends over two tokens


@pytest.mark.parametrize(
    "args, message",
    [
        (("flops", "--model", "no-such-model"), "unknown model 'no-such-model'"),
        (("flops", "--model", "resnet18", "--glimpses", "2"), "takes no glimpses"),
        (("flops", "--model", "mgnet-tiny", "--input", "8"), "--input"),
        (("glimpses", "--model", "no-such-model", "--out", "x.png"), "unknown model 'no-such-model'"),
        (("glimpses", "--model", "mgnet-tiny", "--out", "x.txt"), "must end in .png"),
        (("glimpses", "--model", "mgnet-tiny", "--n", "0", "--out", "x.png"), "--n must lie in"),
        (("glimpses", "--model", "mgnet-tiny", "--condition", "nope:1", "--out", "x.png"),
         "unknown condition type 'nope'"),
        (("glimpses", "--model", "mgnet-tiny", "--condition", "test-blackout:copies=2", "--out", "x.png"),
         "expands to 2 conditions"),
        (("glimpses", "--model", "mgnet-r18", "--out", "x.png"), "input_size=64"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      args: tuple[str, ...], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_glimpses_clean_and_under_a_condition(run_cli, tmp_path: Path) -> None:
    for condition in (None, "test-blackout"):
        out = tmp_path / f"{condition or 'clean'}.png"
        args = ["glimpses", "--model", "mgnet-tiny", "--n", "4", "--out", str(out)]
        code, stdout, err = run_cli(*(args + (["--condition", condition] if condition else [])))
        assert code == 0, err
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_figure_shows_what_the_condition_returned() -> None:
    model = create_model("mgnet-tiny")
    x, y = torch.rand(3, 3, 64, 64), torch.tensor([1, 2, 3])
    batch = observe(model, one_condition("test-blackout"), x, y, torch.arange(3))
    assert torch.equal(batch.images, torch.zeros_like(x))
    assert batch.predictions.shape == (4, 3) and batch.boxes.shape == (4, 3, 4)


def test_condition_shorthand(monkeypatch: pytest.MonkeyPatch) -> None:
    # The colleagues' corruption and attack types may not be registered on this branch.
    for kind in ("corruption", "attack"):
        monkeypatch.setitem(conditions._TYPES, kind, _expand_blackout)
    assert parse_condition("corruption:fog:3") == {"type": "corruption", "corruptions": ["fog"], "severities": [3]}
    assert parse_condition("attack:pgd:4/255") == {"type": "attack", "attack": "pgd", "eps": "4/255"}
    assert parse_condition("attack:pgd:4/255:steps=20:protocol=honest") == {
        "type": "attack", "attack": "pgd", "eps": "4/255", "steps": 20, "protocol": "honest"}
    assert parse_condition("clean") == {"type": "clean"}
