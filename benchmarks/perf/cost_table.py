"""Seconds per image of every cell type, per model family, read from the cells a store holds.

Every cell the runner computes records, beside its ``images_per_s``, its wall seconds, batch
size, torch threads, the load average before and after, and ``cpu_share`` (the process's CPU
time over wall time x threads). A cell whose share is at least ``mgbench.plan.UNCONTENDED`` had
its cores to itself: its seconds per image are a timing of that cell at the suite's batch size,
not of whatever ran beside it. This prints those timings grouped by architecture, cell type,
device, threads and batch size (median, range, the cells and images behind them, the lowest
share and the load averages they ran at), and counts the cells left out as contended.

The CPU reference runs as two one-thread processes on the 2-core machine, so its cells' load
average is about 2 with nothing else running (each process's own thread); ``cpu_share`` is what
says whether anything else took their cores. A model-free pass (clean, corruptions) is shared by
every model of the suite: its per-cell seconds are the pass's conditioning plus that model's
forward passes.

    python benchmarks/perf/cost_table.py                                 # results/reference.sqlite
    python benchmarks/perf/cost_table.py --store results/local.sqlite --out results/perf/cost-cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mgbench.plan import UNCONTENDED, cell_type  # noqa: E402
from mgbench.store import Store  # noqa: E402

HEADER = ("family", "cell type", "device", "threads", "batch", "cells", "images", "s/image median",
          "s/image range", "min cpu_share", "load before", "load after")


def cost_rows(timings: list[dict[str, Any]]) -> tuple[list[tuple[Any, ...]], int]:
    """Rows of the table (uncontended timings only), and how many timings were left out
    (contended, or stored before the runner recorded its CPU share)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    left_out = 0
    for timing in timings:
        if timing.get("cpu_share", 0.0) < UNCONTENDED or not timing.get("images"):
            left_out += 1
            continue
        key = (timing["arch"], cell_type(timing["condition"]), timing["device"], timing["threads"],
               timing.get("batch_size"))
        groups.setdefault(key, []).append(timing)
    rows = []
    for key, group in sorted(groups.items(), key=lambda item: tuple(str(part) for part in item[0])):
        per_image = [t["seconds"] / t["images"] for t in group]
        loads_before = [t["load_before"] for t in group]
        loads_after = [t["load_after"] for t in group]
        rows.append((*key, len(group), sum(t["images"] for t in group), f"{statistics.median(per_image):.4g}",
                     f"{min(per_image):.3g}-{max(per_image):.3g}", f"{min(t['cpu_share'] for t in group):.2f}",
                     f"{min(loads_before):.2f}-{max(loads_before):.2f}",
                     f"{min(loads_after):.2f}-{max(loads_after):.2f}"))
    return rows, left_out


def markdown(rows: list[tuple[Any, ...]], left_out: int, store: Path) -> str:
    lines = [f"Cell timings taken alone (cpu_share >= {UNCONTENDED}) in {store}; {left_out} timing(s) left out "
             "(contended, or stored before the runner recorded its CPU share).", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join("-" if value is None else str(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("results/reference.sqlite"))
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    if not args.store.is_file():
        parser.exit(2, f"error: no results store at {args.store}: pass an existing --store\n")
    with Store(args.store, readonly=True) as store:
        rows, left_out = cost_rows(store.timings())
    text = markdown(rows, left_out, args.store)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
