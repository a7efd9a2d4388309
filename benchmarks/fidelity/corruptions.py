"""Fidelity of the torch corruption backend to imagecorruptions, measured (not assumed).

On the embedded digits (64 x 64) and on synthetic natural-looking 224 x 224 images, every
corruption at every severity: the mean and largest absolute difference (uint8 levels) when the
torch code replays the reference's random numbers, and the mean change from the clean image
under each backend's own seeding. Writes ``results/fidelity/corruptions.csv`` and prints the
Markdown table of docs/corruptions.md.

    python benchmarks/fidelity/corruptions.py [--images64 4] [--images224 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from mgbench.corruptions import ALL, fidelity  # noqa: E402
from mgbench.data.digits import load_digits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images64", type=int, default=4)
    parser.add_argument("--images224", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "fidelity"))
    args = parser.parse_args()
    severities = [1, 2, 3, 4, 5]
    frame = pd.concat([
        fidelity.measure(load_digits()["test_images"][:args.images64], ALL, severities),
        fidelity.measure(fidelity.synthetic_images(args.images224, 224), ALL, severities),
    ])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "corruptions.csv", index=False, float_format="%.4g")

    table = frame.groupby(["corruption", "size"]).agg(
        mae=("replay_mae", "max"), worst=("replay_max", "max"), ref=("effect_ref", "mean"),
        own=("effect_torch", "mean")).unstack("size")
    print(f"| corruption | replay MAE 64 | replay MAE 224 | largest diff 64 / 224 | change ref / torch 64 "
          f"| change ref / torch 224 |  ({args.images64} + {args.images224} images, severities 1-5)")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ALL:
        row = table.loc[name]
        print(f"| {name} | {row[('mae', 64)]:.3f} | {row[('mae', 224)]:.3f} | {row[('worst', 64)]:.0f} / "
              f"{row[('worst', 224)]:.0f} | {row[('ref', 64)]:.1f} / {row[('own', 64)]:.1f} | "
              f"{row[('ref', 224)]:.1f} / {row[('own', 224)]:.1f} |")


if __name__ == "__main__":
    main()
