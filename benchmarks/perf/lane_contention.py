"""How much a one-thread reference lane slows down when the other lane runs on the other core.

The CPU reference runs as two niced one-thread processes on the 2-core machine, and the cost
table (``cost_table.py``) reads its cells' timings, taken with ``cpu_share`` >= 0.9: each lane
had its core, but the two share the caches and the memory bus. This measures that sharing on the
unit of every gradient attack's cost: one forward and backward pass to the input (parameters
frozen) at the suite's batch size, one torch thread, for each card, taken in turns

- alone: nothing else running (start it with the machine idle: ``uptime`` below 0.5), and
- alongside a twin: a second process running the same passes on the other core, as the other lane does.

The ratio (alongside / alone) is what the lanes' seconds per image overstate an idle
one-thread cell by. Writes ``results/perf/lane-contention-cpu.csv`` (and ``.json``: the
machine, the load averages before and after).

    python benchmarks/perf/lane_contention.py              # resnet-tiny and mgnet-tiny seed 0
    python benchmarks/perf/lane_contention.py --quick      # 2 rounds of 3 passes
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from mgbench.data import DataSpec  # noqa: E402
from mgbench.models import load_model  # noqa: E402
from mgbench.perf import write_results  # noqa: E402

CARDS = ["resnet-tiny.digits.s0", "mgnet-tiny.digits.s0"]


def passes(card: str, batch: int, count: int) -> list[float]:
    """Seconds per image of ``count`` forward + backward passes to the input, one thread."""
    model = load_model(card).module.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    size = DataSpec("digits").input_size  # the reference's data: the cards are digits cards
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    out: list[float] = []
    for _ in range(count):
        images = x.clone().requires_grad_(True)
        start = time.perf_counter()
        logits = model(images)
        logits = logits[0] if isinstance(logits, tuple) else logits
        torch.nn.functional.cross_entropy(logits, y).backward()
        out.append((time.perf_counter() - start) / batch)
    return out


def main(argv: list[str] | None = None) -> Path | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help=f"zoo card (repeatable; default: {', '.join(CARDS)})")
    parser.add_argument("--batch-size", type=int, default=256, help="the reference suites' batch size")
    parser.add_argument("--rounds", type=int, default=5, help="alone/alongside turns per card")
    parser.add_argument("--passes", type=int, default=8, help="passes per turn (the median is kept)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 passes")
    parser.add_argument("--twin", help=argparse.SUPPRESS)  # internal: the process on the other core
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.twin:  # run passes until killed
        while True:
            passes(args.twin, args.batch_size, 4)
    rounds, count = (2, 3) if args.quick else (args.rounds, args.passes)
    load_before = os.getloadavg()
    rows = []
    for card in args.model or CARDS:
        passes(card, args.batch_size, 1)  # warm-up: weights read, kernels chosen
        for turn in range(rounds):
            alone = statistics.median(passes(card, args.batch_size, count))
            twin = subprocess.Popen([sys.executable, __file__, "--twin", card, "--batch-size", str(args.batch_size)],
                                    env={**os.environ, "OMP_NUM_THREADS": "1"})
            time.sleep(3)  # its start-up (imports, model load) done
            try:
                alongside = statistics.median(passes(card, args.batch_size, count))
            finally:
                twin.kill()
                twin.wait()
            rows.append({"model": card, "turn": turn, "batch_size": args.batch_size,
                         "alone_s_per_image": alone, "alongside_s_per_image": alongside,
                         "ratio": alongside / alone})
            print(f"{card} turn {turn}: alone {1000 * alone:.2f} ms/image, alongside a twin "
                  f"{1000 * alongside:.2f} ms/image (x{alongside / alone:.2f})", flush=True)
    frame = pd.DataFrame(rows)
    for card, group in frame.groupby("model"):
        print(f"{card}: median ratio x{group['ratio'].median():.2f} (alongside / alone, {len(group)} turns)")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    return write_results("lane-contention", frame, torch.device("cpu"),
                         {"load_before": load_before, "load_after": os.getloadavg(), "rounds": rounds,
                          "passes": count})


if __name__ == "__main__":
    main()
