"""Progress reporting: log lines off a terminal, bars on one, nothing with --quiet or by default."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from rich.console import Console

from mgbench import progress


def test_log_lines_name_every_open_task_outermost_first() -> None:
    stream = io.StringIO()
    with progress.reporting(progress.LogReporter(stream, interval=0)):
        with progress.task("suite x: cell", total=4) as cells:
            cells.advance(status="m: fog s1")
            for _ in progress.track(range(3), "batches"):
                pass
    lines = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in stream.getvalue().splitlines()]
    assert lines[0] == "suite x: cell 0/4"
    assert "suite x: cell 1/4, m: fog s1, ETA 0s | batches 2/3, ETA 0s" in lines
    assert lines[-1].startswith("suite x: cell 1/4, m: fog s1") and lines[-1].endswith("done in 0s")


def test_short_work_and_failures_print_nothing_and_the_default_is_silent(capsys: pytest.CaptureFixture) -> None:
    stream = io.StringIO()
    with progress.reporting(progress.LogReporter(stream, interval=60)):
        with progress.task("quick", total=2) as bar:
            bar.advance()
        with pytest.raises(ValueError), progress.task("broken"):
            raise ValueError("x")
    assert stream.getvalue() == ""
    with progress.task("nobody listens", total=1) as bar:
        bar.advance()
    assert capsys.readouterr() == ("", "")


def test_for_console_picks_bars_lines_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    plain = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(progress.for_console(terminal), progress.RichReporter)
    assert isinstance(progress.for_console(plain), progress.LogReporter)
    assert type(progress.for_console(plain, quiet=True)) is progress.Reporter
    bars = progress.for_console(terminal)
    with progress.reporting(bars), progress.task("outer", total=2) as outer:
        with progress.task("inner", total=3) as inner:
            inner.advance(status="working")
        outer.advance()
    assert not bars.ids  # every bar removed when its task ended
    monkeypatch.setenv("MGBENCH_PROGRESS_SECONDS", "soon")
    from mgbench.errors import InputError

    with pytest.raises(InputError, match="MGBENCH_PROGRESS_SECONDS"):
        progress.for_console(plain)


def test_pgd_reports_restarts_steps_and_survivors() -> None:
    from mgbench.attacks.gradient import pgd

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x, y = torch.rand(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    stream = io.StringIO()
    with progress.reporting(progress.LogReporter(stream, interval=0)):
        pgd(model, x, y, norm="linf", eps=0.01, steps=3, step_size=0.005, restarts=2, keep="last")
    text = stream.getvalue()
    assert "gradient step 0/6, restart 1/2, 5 of 5 not yet broken" in text
    assert "restart 2/2" in text


def test_cli_log_lines_and_quiet(run_cli, store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGBENCH_PROGRESS_SECONDS", "0")
    args = ("run", "--suite", "clean", "--model", "resnet-tiny", "--limit", "8", "--store", str(store_path),
            "--batch-size", "4")
    code, _, err = run_cli(*args)
    assert code == 0, err
    assert "suite clean: cell 0/1" in err and "resnet-tiny: clean | batches 2/2" in err and "done in" in err
    code, _, err = run_cli(*args, "--force", "--quiet")
    assert code == 0 and err == ""


def test_building_the_digits_reports_each_split() -> None:
    from mgbench.data.digits import DigitsSpec, build_digits

    spec = DigitsSpec(test_digits_per_class=1, train_canvases_per_digit=0, test_canvases_per_digit=1)
    stream = io.StringIO()
    with progress.reporting(progress.LogReporter(stream, interval=0)):
        arrays = build_digits(spec)
    assert len(arrays["test_labels"]) == 10
    assert "building the digits (test split, cached after) 10/10" in stream.getvalue()
    assert "building the digits (train split" in stream.getvalue()


def test_the_cell_count_leaves_out_conditions_a_model_has_no_cell_for(
        run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FGSM's rescaler-off variant applies to MGNet only: resnet-tiny + mgnet-tiny have 2 clean,
    2 default FGSM and 1 rescaler-off cell, so the count (and the ETA it drives) ends at 5/5,
    not short of a total of 6."""
    monkeypatch.setenv("MGBENCH_PROGRESS_SECONDS", "0")
    suite = tmp_path / "count.toml"
    suite.write_text('name = "count"\ndataset = "digits"\nlimit = 4\n[[conditions]]\ntype = "clean"\n'
                     '[[conditions]]\ntype = "attack"\nattack = "fgsm"\nnorm = "linf"\neps = "4/255"\nchecks = false\n')
    code, _, err = run_cli("run", "--suite", str(suite), "--model", "resnet-tiny,mgnet-tiny",
                           "--store", str(tmp_path / "s.sqlite"))
    assert code == 0, err
    assert "rescaler-off" in err
    counts = set(re.findall(r"suite count: cell \d+/(\d+)", err))
    assert counts == {"5"}, counts
    assert re.search(r"suite count: cell 5/5, [^\n]*done in", err)
