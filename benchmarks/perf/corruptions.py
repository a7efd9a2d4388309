"""Speed of the torch corruption backend against imagecorruptions (the reference backend).

Both run on the same synthetic 224 x 224 images in the same run, every corruption at every
chosen severity; the reference runs in one process (imagecorruptions is single-threaded), the
torch backend batched with ``--threads`` intra-op threads (default 1: a per-core comparison).
Prints images/s per corruption and the ratio, and the suite-wide ratio (total reference time
over total torch time) for the 15 common corruptions and for all 19; writes
``results/perf/corruptions-<device>.csv`` and a JSON with the machine.

    python benchmarks/perf/corruptions.py              # 16 images, severities 1-5
    python benchmarks/perf/corruptions.py --quick      # 4 images, severities 1-5
    python benchmarks/perf/corruptions.py --device cuda --images 256 --batch 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from mgbench.corruptions import ALL, COMMON, ReferenceBackend, TorchBackend, parse_corruptions, parse_severities  # noqa: E402
from mgbench.corruptions.fidelity import synthetic_images  # noqa: E402
from mgbench.corruptions.reference import from_uint8  # noqa: E402
from mgbench.perf import cpu_name  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--severities", default="1-5")
    parser.add_argument("--corruptions", default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--quick", action="store_true", help="4 images (for a smoke run)")
    parser.add_argument("--out", default=str(ROOT / "results" / "perf"))
    args = parser.parse_args()

    count = 4 if args.quick else args.images
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    names = parse_corruptions(args.corruptions)
    severities = parse_severities(args.severities)
    images = synthetic_images(count, args.size)
    x_all = from_uint8(images, torch.zeros(())).to(device)
    ids = list(range(count))
    reference, fast = ReferenceBackend(workers=0), TorchBackend()

    # Warm-up, untimed: numba compiles glass blur, caches (frost pictures, kernels) fill.
    for name in names:
        reference(x_all[:1].cpu(), ids[:1], name, 1)
        fast(x_all[:1], ids[:1], name, 1)
    _sync(device)

    rows = []
    for name in names:
        ref_s = fast_s = 0.0
        for severity in severities:
            clock = time.perf_counter()
            reference(x_all.cpu(), ids, name, severity)
            ref_s += time.perf_counter() - clock
            clock = time.perf_counter()
            for start in range(0, count, args.batch):
                fast(x_all[start:start + args.batch], ids[start:start + args.batch], name, severity)
            _sync(device)
            fast_s += time.perf_counter() - clock
        done = count * len(severities)
        rows.append({"corruption": name, "images": done, "reference_s": ref_s, "torch_s": fast_s,
                     "reference_img_per_s": done / ref_s, "torch_img_per_s": done / fast_s,
                     "ratio": ref_s / fast_s})
        print(f"{name:18s} reference {done / ref_s:8.1f} img/s   torch {done / fast_s:8.1f} img/s"
              f"   x{ref_s / fast_s:6.1f}", flush=True)
    frame = pd.DataFrame(rows)

    summary = {}
    for label, group in (("common", COMMON), ("all", ALL)):
        part = frame[frame["corruption"].isin(group)]
        if len(part) == len(group):
            summary[label] = float(part["reference_s"].sum() / part["torch_s"].sum())
            print(f"suite-wide ratio ({label}, {len(group)} corruptions): x{summary[label]:.1f}")
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / f"corruptions-{device.type}.csv", index=False, float_format="%.4g")
    machine = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": args.threads,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "images": count, "size": args.size, "batch": args.batch, "severities": severities,
        "suite_ratio": summary, "peak_gpu_bytes": peak,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    (out / f"corruptions-{device.type}.json").write_text(json.dumps(machine, indent=2) + "\n")
    print(f"wrote {out / f'corruptions-{device.type}.csv'}")


if __name__ == "__main__":
    main()
