"""Shared plumbing of the speed benchmarks in ``benchmarks/perf/``: timing, machine facts, and
writing ``results/perf/<name>-<device>.csv`` with a JSON of the machine beside it.

Goals are checked by ratios measured side by side in one run (never by timed assertions in
tests), so each benchmark interleaves the two contenders and reports medians.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from mgbench.provenance import REPO_ROOT, git_sha, library_versions, now_iso

PERF_DIR = REPO_ROOT / "results" / "perf"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call of ``fn``, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved_medians(
    contenders: dict[str, Callable[[], Any]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Median seconds per contender, the contenders taking turns ``repeats`` times, so that a
    change of load on the machine hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": now_iso(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "git_sha": git_sha(),
        "versions": library_versions(),
        "load_average": os.getloadavg(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gb"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    return info


def write_results(name: str, frame: pd.DataFrame, device: torch.device, extra: dict[str, Any] | None = None) -> Path:
    """``results/perf/<name>-<device type>.csv`` plus ``.json`` with the machine and ``extra``."""
    PERF_DIR.mkdir(parents=True, exist_ok=True)
    stem = PERF_DIR / f"{name}-{device.type}"
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".json").write_text(json.dumps({**machine_info(device), **(extra or {})}, indent=2))
    return stem.with_suffix(".csv")
