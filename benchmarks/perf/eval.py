"""mgbench clean evaluation against a bare ``model(x)`` loop on the same data (goal: overhead < 5%).

Both contenders read the same DataLoader over the same images and count top-1 on the same device;
they run interleaved, ``--repeats`` times each, and the medians are compared. ``mgbench cell`` is
``runner.evaluate_condition`` (what one cell of a suite costs: loader, per-step counting, top-5,
intervals); ``mgbench run`` is the whole ``runner.evaluate`` of the clean suite into a fresh store
(two cells: the fvcore compute count and the clean cell, with their transactions). On a GPU the
images/s are also set against the compute bound ``peak FLOP/s / (2 x MACs per image)``.

    python benchmarks/perf/eval.py                         # resnet-tiny on 2,000 digits
    python benchmarks/perf/eval.py --quick                 # 500 images, 2 repeats
    python benchmarks/perf/eval.py --device cuda --model resnet50 --data imagenet100 --data-root ... \\
        --peak-tflops 989 --precision bf16 --channels-last
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from mgbench import flops  # noqa: E402
from mgbench.conditions import Clean  # noqa: E402
from mgbench.data import DataSpec, make_loader, open_dataset  # noqa: E402
from mgbench.device import resolve_device, to_unit  # noqa: E402
from mgbench.models import list_cards, load_model  # noqa: E402
from mgbench.perf import interleaved_medians, peak_rss_mb, write_results  # noqa: E402
from mgbench.runner import RunOptions, evaluate_condition, run_suite  # noqa: E402
from mgbench.suites import load_suite  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the resnet-tiny.digits.s0 card (else resnet-tiny)")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for the bound")
    parser.add_argument("--quick", action="store_true", help="500 images, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.repeats = 500, 2

    device = resolve_device(args.device)
    name = args.model or ("resnet-tiny.digits.s0" if "resnet-tiny.digits.s0" in list_cards() else "resnet-tiny")
    data = DataSpec(name=args.data, root=args.data_root, limit=args.limit)
    opened = open_dataset(data)
    loaded = load_model(name)
    model = loaded.module.to(device).eval()
    options = RunOptions(device=str(device), batch_size=args.batch_size)
    workers = 0 if args.data == "digits" else None
    loader = make_loader(opened.dataset, args.batch_size, device=device, workers=workers)

    @torch.no_grad()
    def bare() -> None:
        correct = 0
        for images, labels, _, _ in loader:
            correct += int(model(to_unit(images, device)).argmax(1).eq(labels.to(device)).sum())

    def cell() -> None:
        evaluate_condition([model], opened, Clean(), data.num_classes, device, options)

    def whole_run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            run_suite(load_suite("clean"), models=[name], data=data, store=Path(folder) / "s.sqlite", options=options)

    bare()  # warm-up (allocator, first-call dispatch)
    medians = interleaved_medians(
        {"bare model(x) loop": bare, "mgbench cell": cell, "mgbench run": whole_run}, device, args.repeats
    )
    base = medians["bare model(x) loop"]
    gmacs = flops.profile(loaded.module, data.input_size).gmacs[-1]
    rows = []
    for contender, seconds in medians.items():
        row = {
            "contender": contender, "model": name, "images": opened.n, "batch_size": args.batch_size,
            "median_s": seconds, "images_per_s": opened.n / seconds, "ratio_to_bare": seconds / base,
            "overhead_pct": 100 * (seconds / base - 1), "gmacs_per_image": gmacs,
        }
        if args.peak_tflops:
            bound = args.peak_tflops * 1e12 / (2 * gmacs * 1e9)
            row["compute_bound_images_per_s"] = bound
            row["fraction_of_bound"] = row["images_per_s"] / bound
        rows.append(row)
    frame = pd.DataFrame(rows)
    extra = {"peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        extra["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    path = write_results("eval", frame, device, extra)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    cell_overhead = float(frame.loc[frame.contender == "mgbench cell", "overhead_pct"].iloc[0])
    print(f"\nmgbench cell overhead vs bare loop: {cell_overhead:+.1f}% (goal < 5%)   -> {path}")


if __name__ == "__main__":
    main()
