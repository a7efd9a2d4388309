"""The MGNet commands end to end: flops, glimpses (clean and under a condition), and bad input."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from support import one_line_error

from mgbench import conditions
from mgbench.conditions import register_condition_type
from mgbench.models import create_model
from mgbench.report.glimpses import observe, one_condition, parse_condition
from mgbench.rows import MetricRow

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
    register_condition_type("test-blackout", keys=("type", "copies"))(_expand_blackout)
    yield
    conditions.CONDITION_TYPES.unregister("test-blackout")


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
    one_line_error(code, err, message)
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


def test_condition_shorthand() -> None:
    assert parse_condition("corruption:fog:3") == {"type": "corruption", "corruptions": ["fog"], "severities": [3]}
    one = {"loss": "ce", "variant": "default", "checks": False}  # one attack, not a suite's sweep
    assert parse_condition("attack:pgd:4/255") == {"type": "attack", "attack": "pgd", "eps": "4/255", **one}
    assert parse_condition("attack:pgd:4/255:steps=20:protocol=honest:loss=margin") == {
        "type": "attack", "attack": "pgd", "eps": "4/255", "steps": 20, "protocol": "honest", **one, "loss": "margin"}
    assert parse_condition("clean") == {"type": "clean"}


def test_location_stats_match_numpy_on_known_glimpses() -> None:
    """Boxes built from known (s, tx, ty) by MGNet's own formula; numpy computes the expected summaries."""
    import numpy as np

    from mgbench.models.mgnet import glimpse_boxes
    from mgbench.report.glimpses import QUANTILES, location_stats, stats_lines

    generator = torch.Generator().manual_seed(0)
    n = 101
    s = torch.cat([torch.full((1, n), 1.0), 0.2 + 0.3 * torch.rand(2, n, generator=generator)])
    s[2, :90] = 0.495  # step 3: 90 of 101 glimpses saturated
    t = 2 * (torch.rand(3, n, 2, generator=generator) - 0.5) * (1 - s[..., None])
    t[0] = 0
    stats = location_stats(glimpse_boxes(torch.cat([s[..., None], t], dim=-1)))
    assert [st.step for st in stats] == [1, 2, 3] and all(st.n == n for st in stats)
    assert stats[0].saturated is None  # the whole-image first glimpse is not a choice
    for step, st in enumerate(stats):
        for values, got in ((s[step], st.s), (t[step, :, 0], st.tx), (t[step, :, 1], st.ty)):
            v = values.double().numpy()
            expected = [v.mean(), *np.quantile(v, QUANTILES)]
            assert got == pytest.approx(expected, abs=1e-6)
    assert stats[1].saturated == pytest.approx(float((s[1] > 0.49).double().mean()))
    assert stats[2].saturated == pytest.approx(90 / 101 + float((s[2, 90:] > 0.49).double().sum()) / 101)
    assert f"s>0.49 {100 * stats[2].saturated:.0f}%" in stats_lines(stats)[2]
    assert stats_lines(stats)[0] == "glimpse 1: the whole image (s = 1)"


def test_glimpses_stats_cli_prints_each_step(run_cli, tmp_path: Path) -> None:
    from mgbench.models import forward_steps, load_model
    from mgbench.report.glimpses import location_stats

    code, out, err = run_cli("glimpses", "--model", "mgnet-tiny.digits.s0", "--stats", "--n", "40", "--device", "cpu",
                             "--out", str(tmp_path / "g.png"))
    assert code == 0, err
    assert "over 40 images" in out and "s > 0.49" in out and (tmp_path / "g.png").is_file()
    # the same 40 images (the fixed seeded subset), the model's own boxes, summarised here
    from mgbench.data import DataSpec, make_loader, open_dataset

    opened = open_dataset(DataSpec(name="digits", limit=40))
    images = next(iter(make_loader(opened.dataset, 40, device=torch.device("cpu"), workers=0)))[0]
    with torch.no_grad():
        boxes = forward_steps(load_model("mgnet-tiny.digits.s0").module.eval(), images.float() / 255).boxes
    expected = location_stats(boxes)
    rows = [line for line in out.splitlines() if re.search(r"[│|]\s+(s|tx|ty)\s+[│|]", line)]
    assert len(rows) == 3 * len(expected)
    for st in expected[1:]:
        row = _numbers(rows[3 * (st.step - 1)])
        assert row[:6] == pytest.approx(st.s, abs=1.5e-3)
        assert row[6] == pytest.approx(100 * st.saturated, abs=0.06)


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet-tiny", "--stats"], "takes no glimpses"),
    (["--model", "mgnet-tiny"], "--stats"),
    (["--model", "mgnet-tiny", "--stats", "--n", "0"], "--n"),
])
def test_glimpses_stats_bad_input(run_cli, args: list[str], message: str) -> None:
    code, _, err = run_cli("glimpses", *args, "--device", "cpu")
    assert code == 2 and message in err
