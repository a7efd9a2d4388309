"""The ImageNet100 recipe's throughput on a GPU, on generated real-size images (no downloads).

Writes 1,000 photo-like JPEGs at ImageNet's usual sizes (500x375, 375x500, 500x333, ...)
into a temporary ImageNet-style folder (``val/WNID/`` for the 100 WNIDs of the shipped ``mgnet``
list), then, for randomly initialised ``resnet50`` and ``mgnet-r50`` (cost does not depend on
the weights) and for fp32 and bf16 + channels-last, measures:

- through mgbench's own runner (``mgbench.runner.evaluate``: DataLoader workers decoding JPEGs,
  Resize 256 + CenterCrop 224, the store), one cell each of: clean evaluation, one corruption
  on the fly (torch backend), a PGD attack (L-inf 4/255, honest protocol, no verdict probes).
  Images/s is the runner's own ``images_per_s`` row. Untrained models misclassify nearly every
  image, so their PGD cell stops after the first step (white-box attacks keep the first
  success): its images/s is not an attack cost;
- on a batch resident on the device: the model's forward (images/s) and PGD with every step on
  every image (``keep="last"``, as a trained model's survivors cost): attack steps/s, i.e.
  image x step forward-backward passes per second; these two are what docs/scaling.md's cost
  plan multiplies.

Each measurement follows a warm-up on the same shapes; peak GPU memory is recorded per
measurement. Writes ``results/perf/gpu-recipe.csv`` and ``.json`` (device, GPU, CUDA, cuDNN,
library versions), rewritten after every model x config. Sized for about 3 minutes on one H200,
data generation included (an estimate until it has run there); ``--budget-s`` (200 s) starts no
further model x config after that time and lists the rest as not measured.

    python benchmarks/perf/gpu_recipe.py                 # on the GPU
    python benchmarks/perf/gpu_recipe.py --quick         # tiny sizes and ResNet-18s on the CPU (under a
                                                         # minute): the script works; writes gpu-recipe-quick.*
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mgbench.attacks.gradient import pgd  # noqa: E402
from mgbench.data import DataSpec, class_list  # noqa: E402
from mgbench.device import resolve_device  # noqa: E402
from mgbench.models import load_model  # noqa: E402
from mgbench.perf import PERF_DIR, interleaved_medians, machine_info, peak_rss_mb  # noqa: E402
from mgbench.runner import RunOptions, run_suite  # noqa: E402
from mgbench.suites import Suite  # noqa: E402

SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (320, 250))  # width x height, as in ImageNet val
EPS = 4 / 255


def _write_image(root: str, index: int, seed: int) -> None:
    """One photo-like JPEG (smooth colour gradients plus noise, quality 90), the ``index``-th."""
    rng = np.random.default_rng([seed, index])
    width, height = SIZES[index % len(SIZES)]
    rows, columns = np.mgrid[0:height, 0:width]
    base = np.stack([(rows * (1 + index % 3) + index) % 256, (columns * 0.7 + 5 * index) % 256,
                     (rows + columns) % 256], -1)
    picture = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    wnids = class_list("mgnet")
    name = f"ILSVRC2012_val_{index + 1:08d}.JPEG"
    Image.fromarray(picture).save(Path(root) / "val" / wnids[index % len(wnids)] / name, quality=90)


def write_imagenet_folder(root: Path, images: int, seed: int = 0) -> Path:
    """``root/val/WNID/ILSVRC2012_val_*.JPEG``: ``images`` photo-like JPEGs spread round-robin over
    the 100 classes of the mgnet list, written by one process per core (before any CUDA work)."""
    for wnid in class_list("mgnet"):
        (root / "val" / wnid).mkdir(parents=True, exist_ok=True)
    if images < 64:
        for index in range(images):
            _write_image(str(root), index, seed)
        return root
    with ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=get_context("fork")) as pool:
        list(pool.map(_write_image, [str(root)] * images, range(images), [seed] * images, chunksize=16))
    return root


def _peak_gpu_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def runner_cells(
    model: str, data_root: Path, store: Path, options: RunOptions, conditions: dict[str, dict[str, Any]],
    warmup: int | None,
) -> list[dict[str, Any]]:
    """One runner cell per condition on every generated image, each after a warm-up cell on a
    seeded subset of ``warmup`` of them (fewer, so another cell, never one skipped as stored)."""
    device = resolve_device(options.device)
    rows = []
    for phase, table in conditions.items():
        suite = Suite(name=f"gpu-recipe-{phase}", description="benchmarks/perf/gpu_recipe.py", dataset="imagenet100",
                      models=[model], conditions=[table], source=Path(__file__))
        for limit in ([] if warmup is None else [warmup]) + [None]:
            _reset_peak(device)
            started = time.perf_counter()
            outcomes = run_suite(suite, models=[model], data=DataSpec(name="imagenet100", root=str(data_root),
                                                                     limit=limit),
                                store=store, options=options)
            wall = time.perf_counter() - started
        cell = [o for o in outcomes if o.condition.get("threat") != "compute"][0]
        metrics = {row.metric: row for row in cell.rows if row.step is None}
        skipped = metrics["skipped_images"].value if "skipped_images" in metrics else 0
        rows.append({"phase": f"{phase} (runner)", "images": int(metrics["top1"].n), "skipped": int(skipped),
                     "images_per_s": metrics["images_per_s"].value, "attack_steps_per_s": None,
                     "call_wall_s": wall, "peak_gpu_mb": _peak_gpu_mb(device)})
    return rows


def resident_batch(
    model_name: str, options: RunOptions, batch: int, steps: int, repeats: int, warm_up: bool
) -> list[dict[str, Any]]:
    """Forward images/s and PGD steps/s (every step on every image) on a batch already on the device."""
    device = resolve_device(options.device)
    model = options.prepare(load_model(model_name).module, device)
    x = torch.rand(batch, 3, 224, 224, device=device)
    if options.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(batch, dtype=torch.long, device=device)

    @torch.no_grad()
    def forward() -> None:
        with options.autocast(device):
            model(x)

    def attack() -> None:
        with options.autocast(device):
            pgd(model, x, y, norm="linf", eps=EPS, steps=steps, step_size=2.5 * EPS / steps, keep="last")

    rows = []
    for phase, fn in (("forward (resident batch)", forward), (f"pgd-{steps} keep=last (resident batch)", attack)):
        if warm_up:
            fn()
        _reset_peak(device)
        seconds = interleaved_medians({phase: fn}, device, repeats)[phase]
        per_s = batch / seconds
        rows.append({"phase": phase, "images": batch, "skipped": 0,
                     "images_per_s": per_s, "attack_steps_per_s": per_s * steps if "pgd" in phase else None,
                     "call_wall_s": seconds, "peak_gpu_mb": _peak_gpu_mb(device)})
    model.cpu()
    return rows


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=1000, help="generated validation images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the resident-batch measurements")
    parser.add_argument("--models", default="resnet50,mgnet-r50")
    parser.add_argument("--corruption", default="fog", help="the on-the-fly corruption cell (torch backend)")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: sized to the machine)")
    parser.add_argument("--budget-s", type=float, default=200.0,
                        help="start no further model x config after this many seconds (the rest is listed as "
                             "not measured); results are written after each one")
    parser.add_argument("--out", type=Path, default=PERF_DIR, help="folder for gpu-recipe.csv and .json")
    parser.add_argument("--quick", action="store_true",
                        help="CPU-sized, to check the script works: resnet18 and mgnet-r18, 3 images, batch 2, "
                             "PGD 2 steps, fp32 only, no warm-ups, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.batch_size, args.steps, args.repeats = 3, 2, 2, 1
        args.models = "resnet18,mgnet-r18"
    if args.images < 2:
        parser.error("--images must be at least 2 (a warm-up subset and the measured set)")
    configs: dict[str, dict[str, Any]] = {"fp32": {}}
    if not args.quick:
        configs["bf16+channels_last"] = {"precision": "bf16", "channels_last": True}
    conditions = {
        "clean": {"type": "clean"},
        f"{args.corruption} s{args.severity} torch": {"type": "corruption", "corruptions": args.corruption,
                                                     "severities": str(args.severity), "backend": "torch"},
        f"pgd-{args.steps} first-success": {"type": "attack", "attack": "pgd", "eps": "4/255", "norm": "linf",
                                            "steps": args.steps, "checks": False},
    }
    started = time.perf_counter()
    stem = args.out / ("gpu-recipe-quick" if args.quick else "gpu-recipe")
    rows: list[dict[str, Any]] = []
    not_measured: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mgbench-gpu-recipe-") as folder:
        clock = time.perf_counter()
        data_root = write_imagenet_folder(Path(folder) / "imagenet", args.images)  # forks: before any CUDA work
        generation_s = time.perf_counter() - clock
        print(f"{args.images} JPEGs generated in {generation_s:.1f} s", flush=True)
        device = resolve_device(args.device)
        facts = {
            "script": "benchmarks/perf/gpu_recipe.py", "quick": args.quick, "images": args.images,
            "image_sizes": [f"{w}x{h}" for w, h in SIZES], "batch_size": args.batch_size, "pgd_steps": args.steps,
            "eps": "4/255", "repeats": args.repeats, "generation_s": generation_s, "configs": configs,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            **machine_info(device),
        }
        warmup = None if args.quick else min(args.batch_size, args.images - 1)
        for config, settings in configs.items():
            options = RunOptions(device=str(device), batch_size=args.batch_size, workers=args.workers, **settings)
            for model in args.models.split(","):
                if time.perf_counter() - started > args.budget_s:
                    not_measured.append(f"{model} {config}")
                    print(f"{model} {config}: not measured (--budget-s {args.budget_s:.0f} s spent)", flush=True)
                    continue
                measured = runner_cells(model, data_root, Path(folder) / "store.sqlite", options, conditions,
                                        warmup)
                measured += resident_batch(model, options, args.batch_size, args.steps, args.repeats,
                                           warm_up=not args.quick)
                for row in measured:
                    rows.append({"model": model, "config": config, "batch_size": args.batch_size, **row})
                    print(_line(rows[-1]), flush=True)
                _write(stem, rows, facts, not_measured, time.perf_counter() - started)
    _write(stem, rows, facts, not_measured, time.perf_counter() - started)
    print(f"\n{len(rows)} measurements in {time.perf_counter() - started:.0f} s -> {stem.with_suffix('.csv')}")
    return stem.with_suffix(".csv")


def _write(stem: Path, rows: list[dict[str, Any]], facts: dict[str, Any], not_measured: list[str],
           total_s: float) -> None:
    """The CSV of the measurements so far and the JSON of the machine and settings (rewritten
    after every model x config, so a run cut short keeps what it measured)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(stem.with_suffix(".csv"), index=False)
    record = {**facts, "total_s": total_s, "peak_rss_mb": peak_rss_mb(), "not_measured": not_measured}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))


def _line(row: dict[str, Any]) -> str:
    fmt: Callable[[Any], str] = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    return (f"{row['model']:<10} {row['config']:<19} {row['phase']:<40} images/s {fmt(row['images_per_s']):>9}  "
            f"steps/s {fmt(row['attack_steps_per_s']):>9}  peak GPU MB {fmt(row['peak_gpu_mb']):>8}")


if __name__ == "__main__":
    main()
