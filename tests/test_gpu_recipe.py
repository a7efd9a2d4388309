"""benchmarks/perf/gpu_recipe.py in its quick mode: the GPU throughput script runs end to end on
the CPU (generated real-size JPEGs, the runner's clean, corruption and PGD cells, the resident-batch
timings) and writes one row per model x phase with the machine's facts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from support import benchmark_script


@pytest.mark.slow
def test_gpu_recipe_quick_mode_writes_every_measurement(tmp_path: Path, one_thread) -> None:
    script = benchmark_script("perf/gpu_recipe.py")
    csv = script.main(["--quick", "--device", "cpu", "--workers", "0", "--out", str(tmp_path)])
    frame = pd.read_csv(csv)
    assert csv == tmp_path / "gpu-recipe-quick.csv"
    assert sorted(frame["model"].unique()) == ["mgnet-r18", "resnet18"]
    phases = {"clean (runner)", "fog s3 torch (runner)", "pgd-2 first-success (runner)", "forward (resident batch)",
              "pgd-2 keep=last (resident batch)"}
    assert len(frame) == 10 and set(frame["phase"]) == phases
    assert (frame["images_per_s"] > 0).all() and (frame["skipped"] == 0).all()
    runner = frame[frame["phase"].str.endswith("(runner)")]
    assert set(runner["images"]) == {3}  # every generated image, none dropped
    attack = frame[frame["phase"] == "pgd-2 keep=last (resident batch)"]
    assert attack["attack_steps_per_s"].tolist() == pytest.approx((attack["images_per_s"] * 2).tolist())
    facts = json.loads((tmp_path / "gpu-recipe-quick.json").read_text())
    assert facts["device"] == "cpu" and facts["quick"] is True and "torch" in facts["versions"]
