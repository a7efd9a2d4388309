"""Seconds per image against ``--batch-size`` on one CPU thread, every image attacked.

The runner's default batch (256) is sized for GPUs. On one CPU core a batch's activations can
outgrow the caches, so a smaller batch may cost less per image. For each card this times, at
each batch size, taken in turns (so a change of load hits every size alike):

- ``forward``: a forward pass without gradients (clean and corruption cells, Square, noise);
- ``forward+backward``: a forward and backward pass to the input, parameters frozen (the unit of
  every gradient attack: FGSM, PGD, APGD, FAB);
- ``apgd-ce``: pyautoattack's own APGD-CE (``--apgd-iters`` iterations, one restart) on the same
  256 images split into batches of that size: what the attack's own tensor work adds.

and prints each against the default batch (the ratio is default / this size: above 1 means this
size is faster). Every image is attacked here; an attack cell mostly attacks the examples still
robust, a fraction of its batch, so its cost need not follow these ratios (docs/attacks.md,
"Batch size on one CPU thread"). Start it on an idle machine (``uptime`` below 0.5) with one torch
thread, as the reference lanes run. Writes ``results/perf/batch-size-cpu.csv`` (and ``.json``: the machine and
the load averages before and after).

    OMP_NUM_THREADS=1 python benchmarks/perf/batch_size.py
    OMP_NUM_THREADS=1 python benchmarks/perf/batch_size.py --model resnet-tiny.digits.s0 --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from pyautoattack.autopgd_base import APGDAttack  # noqa: E402

from mgbench.data import DataSpec  # noqa: E402
from mgbench.models import load_model  # noqa: E402
from mgbench.perf import write_results  # noqa: E402
from mgbench.runner import RunOptions  # noqa: E402

CARDS = ["resnet-tiny.digits.s0", "mgnet-tiny.digits.s0", "ltpa-tiny.digits.s0", "tdam-tiny.digits.s0",
         "gwi-resnet-tiny.digits.s0"]
IMAGES = 256  # the images each timing covers, split into batches of the size under test


def logits_of(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The final logits (MGNet also returns its per-glimpse logits)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out[0] if isinstance(out, tuple) else out
    return forward


def seconds_per_image(kind: str, forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                      y: torch.Tensor, batch: int, apgd_iters: int) -> float:
    """One timing of ``kind`` over ``x`` in batches of ``batch``."""
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        if kind == "forward":
            with torch.no_grad():
                forward(xb)
        elif kind == "forward+backward":
            images = xb.clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(forward(images), yb).backward()
        else:
            APGDAttack(forward, norm="Linf", eps=4 / 255, n_iter=apgd_iters, n_restarts=1, seed=0,
                       device="cpu").perturb(xb, yb)
    return (time.perf_counter() - start) / len(x)


def main(argv: list[str] | None = None) -> Path | None:
    default = RunOptions().batch_size
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="zoo card (repeatable; default: the five seed-0 cards)")
    parser.add_argument("--batch", type=int, action="append",
                        help=f"batch size to time (repeatable; default: 32, 64, 128 and {default})")
    parser.add_argument("--rounds", type=int, default=2, help="turns over the batch sizes (the median is kept)")
    parser.add_argument("--apgd-iters", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 round, APGD-CE 2 iterations")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rounds, iters = (1, 2) if args.quick else (args.rounds, args.apgd_iters)
    batches = sorted(set(args.batch or [32, 64, 128]) | {default})
    load_before = os.getloadavg()
    rows = []
    for card in args.model or CARDS:
        model = load_model(card).module.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        forward = logits_of(model)
        size = DataSpec("digits").input_size  # the cards are digits cards
        x = torch.rand(IMAGES, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            y = forward(x).argmax(1)  # every image starts correctly classified: APGD attacks them all
        times: dict[tuple[str, int], list[float]] = {}
        for kind in ("forward", "forward+backward", "apgd-ce"):
            seconds_per_image(kind, forward, x[:batches[0]], y[:batches[0]], batches[0], 1)  # warm-up
            for _ in range(rounds):
                for batch in batches:
                    times.setdefault((kind, batch), []).append(
                        seconds_per_image(kind, forward, x, y, batch, iters))
        for (kind, batch), values in times.items():
            reference = statistics.median(times[(kind, default)])
            median = statistics.median(values)
            rows.append({"model": card, "kind": kind, "batch_size": batch, "s_per_image": median,
                         "vs_default": reference / median, "rounds": len(values), "images": IMAGES})
            print(f"{card:<26} {kind:<17} batch {batch:>4}: {1000 * median:8.2f} ms/image  "
                  f"x{reference / median:.2f} against batch {default}", flush=True)
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    return write_results("batch-size", pd.DataFrame(rows), torch.device("cpu"),
                         {"load_before": load_before, "load_after": load_after, "rounds": rounds,
                          "apgd_iters": iters, "images": IMAGES, "default_batch_size": default})


if __name__ == "__main__":
    main()
