"""Attack speed, measured side by side in one run (ratios, never absolute goals).

1. PGD per-step throughput: mgbench's PGD doing exactly torchattacks' work (random start, no
   early stop, final iterate: ``keep="last"``) vs ``torchattacks.PGD`` on the same model, batch
   and device; the two alternate repeat by repeat so machine load hits both alike. Goal: ratio
   (ours / theirs, steps per second) >= 1.0.
2. PGD as mgbench runs it by default (``keep="first-success"``: examples leave the batch once
   fooled) vs torchattacks, as wall time for the whole attack, with both robust accuracies (the
   speed must not come from a weaker attack).
3. AutoAttack (pyautoattack, the cascade as mgbench drives it): seconds per example.

The model is the zoo's ``resnet-tiny.digits.s0`` when present (real weights, true labels); otherwise
the same architecture randomly initialised and attacked on its own predictions (so every example
starts correctly classified), which the output says. Writes ``results/perf/attacks-<device>.csv``
and ``results/perf/attacks-<device>-machine.json``.

    python benchmarks/perf/attacks.py --quick --device cpu
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torchattacks  # noqa: E402

from mgbench.attacks.autoattack import run_autoattack  # noqa: E402
from mgbench.attacks.gradient import pgd  # noqa: E402
from mgbench.data import DataSpec, open_dataset  # noqa: E402
from mgbench.device import resolve_device  # noqa: E402
from mgbench.models import list_cards, load_model  # noqa: E402
from mgbench.provenance import device_name, git_sha, library_versions  # noqa: E402

EPS = 4 / 255


def load(device: torch.device, n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    trained = "resnet-tiny.digits.s0" in list_cards()
    torch.manual_seed(0)  # the same random initialisation in every run when there is no card
    model = load_model("resnet-tiny.digits.s0" if trained else "resnet-tiny").module.to(device).eval()
    opened = open_dataset(DataSpec("digits", limit=n))
    images = torch.stack([opened.dataset[i][0] for i in range(n)]).to(device).float().div(255)
    if trained:
        labels = torch.tensor([opened.dataset[i][1] for i in range(n)], device=device)
        note = "resnet-tiny.digits.s0 (trained), true labels"
    else:
        with torch.no_grad():
            labels = model(images).argmax(dim=1)
        note = "resnet-tiny random init (no zoo card), attacked on its own predictions"
    return model, images, labels, note


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def side_by_side(device: torch.device, repeats: int, ours: Callable[[], torch.Tensor],
                 theirs: Callable[[], torch.Tensor]) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Median seconds of each (alternating, after one warm-up each) and their last outputs."""
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    outputs: dict[str, torch.Tensor] = {}
    for name, fn in (("ours", ours), ("theirs", theirs)):
        outputs[name] = fn()  # warm-up
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            sync(device)
            start = time.perf_counter()
            outputs[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    median = {name: sorted(values)[len(values) // 2] for name, values in times.items()}
    return median["ours"], median["theirs"], outputs["ours"], outputs["theirs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few repeats (a minute on a CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=str(ROOT / "results" / "perf"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    batch, steps, repeats, aa_n = (32, 10, 5, 8) if args.quick else (256, 20, 5, 64)
    model, x, y, note = load(device, batch)
    alpha = 2.5 * EPS / steps
    rows = []

    def accuracy(images: torch.Tensor) -> float:
        with torch.no_grad():
            return (model(images).argmax(dim=1) == y).float().mean().item()

    torchattacks_pgd = torchattacks.PGD(model, eps=EPS, alpha=alpha, steps=steps, random_start=True)
    for mode in ("last", "first-success"):
        ours_s, theirs_s, ours_x, theirs_x = side_by_side(
            device, repeats,
            lambda: pgd(model, x, y, norm="linf", eps=EPS, steps=steps, step_size=alpha, keep=mode),
            lambda: torchattacks_pgd(x, y),
        )
        name = "pgd steps/s (same work as torchattacks)" if mode == "last" else "pgd attack time (mgbench default)"
        rows.append({
            "benchmark": name, "mode": mode, "batch": batch, "steps": steps, "eps": "4/255",
            "ours_s": round(ours_s, 4), "theirs_s": round(theirs_s, 4),
            "ours_steps_per_s": round(steps / ours_s, 2), "theirs_steps_per_s": round(steps / theirs_s, 2),
            "ratio": round(theirs_s / ours_s, 3),
            "ours_robust_acc": round(accuracy(ours_x), 4), "theirs_robust_acc": round(accuracy(theirs_x), 4),
        })

    start = time.perf_counter()
    result = run_autoattack(model, x[:aa_n], y[:aa_n], norm="linf", eps=EPS, version="standard", seed=0)
    sync(device)
    seconds = time.perf_counter() - start
    rows.append({
        "benchmark": "autoattack standard s/example", "mode": "cascade", "batch": aa_n, "steps": "",
        "eps": "4/255", "ours_s": round(seconds / aa_n, 4), "theirs_s": "", "ours_steps_per_s": "",
        "theirs_steps_per_s": "", "ratio": "",
        "ours_robust_acc": round(result.robust["square"].float().mean().item(), 4), "theirs_robust_acc": "",
    })

    label = device.type
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"attacks-{label}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    machine = {
        "device": device_name(device), "platform": platform.platform(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": {**library_versions(), "torchattacks": torchattacks.__version__},
        "git_sha": git_sha(), "quick": args.quick, "model": note, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (out / f"attacks-{label}-machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    print(f"model: {note}; device {machine['device']}; load average {machine['load_average']}")
    for row in rows:
        ratio = f"  ratio (torchattacks time / ours) {row['ratio']}" if row["ratio"] != "" else ""
        theirs = f"  torchattacks {row['theirs_s']} s (acc {row['theirs_robust_acc']})" if row["theirs_s"] != "" else ""
        print(f"{row['benchmark']}: ours {row['ours_s']} s (acc {row['ours_robust_acc']}){theirs}{ratio}")


if __name__ == "__main__":
    main()
