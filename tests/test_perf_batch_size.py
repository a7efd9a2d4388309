"""benchmarks/perf/batch_size.py: every kind of timing at every batch size asked for and the
default, each against the default measured in the same run, with pyautoattack's real APGD-CE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support import benchmark_script

from mgbench.runner import RunOptions


def test_each_size_is_timed_against_the_default_in_the_same_run(
        monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    script = benchmark_script("perf/batch_size.py")
    written: dict[str, Any] = {}

    def capture(name: str, frame: pd.DataFrame, device: object, extra: dict[str, Any]) -> Path:
        written.update(name=name, frame=frame, extra=extra)
        return Path("unused")

    monkeypatch.setattr(script, "write_results", capture)  # not over the committed results/perf figures
    script.main(["--quick", "--model", "resnet-tiny.digits.s0", "--batch", "128"])
    frame, default = written["frame"], RunOptions().batch_size
    assert written["name"] == "batch-size" and written["extra"]["default_batch_size"] == default
    assert set(zip(frame["kind"], frame["batch_size"])) == {
        (kind, batch) for kind in ("forward", "forward+backward", "apgd-ce") for batch in (128, default)}
    assert (frame["s_per_image"] > 0).all()
    at_default = frame[frame["batch_size"] == default]
    assert (at_default["vs_default"] == 1).all()
    other = frame[frame["batch_size"] == 128].set_index("kind")
    reference = at_default.set_index("kind")["s_per_image"]
    assert (other["vs_default"] - reference / other["s_per_image"]).abs().max() < 1e-12
    # an APGD-CE iteration is a forward and backward pass and more: it cannot cost less than one
    for batch, rows in frame.groupby("batch_size"):
        by_kind = rows.set_index("kind")["s_per_image"]
        assert by_kind["apgd-ce"] > by_kind["forward+backward"], batch
