"""The default attack's cost per image against the official AutoAttack code called directly.

mgbench's default strong attack ``apgd`` is APGD-CE + APGD-T of ``pyautoattack`` (the official
attack code), driven by mgbench as a cascade with per-example bookkeeping, the ball check and
the stored stages. The same attacks called directly (``pyautoattack.AutoAttack(version="custom",
attacks=["apgd-ce", "apgd-t"]).run_standard_evaluation``) on the same model, images, eps and seed
are the reference: the two take turns (interleaved medians), so machine load hits both alike.
Goal: ratio (theirs / ours, time) >= 1.0, i.e. ours is not slower. Both robust accuracies are
printed (the speed must not come from a weaker attack). Without ``--quick`` AutoAttack standard
is compared the same way, and mgbench's default PGD (CE and margin, 100 steps, 2 restarts) is
timed for the cost table of docs/attacks.md.

    python benchmarks/perf/autoattack.py --quick            # CPU, a few minutes
    python benchmarks/perf/autoattack.py --device cuda --n 500
    python benchmarks/perf/autoattack.py --quick --out results/perf   # also write the CSV
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pyautoattack import AutoAttack  # noqa: E402

from mgbench import perf  # noqa: E402
from mgbench.attacks.eps import parse_eps  # noqa: E402
from mgbench.attacks.spec import make_spec  # noqa: E402
from mgbench.data import DataSpec, open_dataset  # noqa: E402
from mgbench.device import resolve_device  # noqa: E402
from mgbench.models import list_cards, load_model  # noqa: E402

EPS = "4/255"


def load(name: str, device: torch.device, n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    model = load_model(name).module.to(device).eval()
    opened = open_dataset(DataSpec("digits", limit=n))
    images = torch.stack([opened.dataset[i][0] for i in range(n)]).to(device).float().div(255)
    labels = torch.tensor([opened.dataset[i][1] for i in range(n)], device=device)
    return model, images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="8 images, APGD-CE only, 1 repeat (a few CPU minutes); default: APGD-CE+T and standard")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--model", default=None, help="default: resnet-tiny.digits.s0")
    parser.add_argument("--n", type=int, default=None, help="images (default 16 quick, 128 full)")
    parser.add_argument("--repeats", type=int, default=None, help="default 1 quick, 3 full")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", default=None, help="write <out>/autoattack-<device>.csv (+ machine .json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("auto-attack").setLevel(logging.ERROR)  # its per-attack progress lines
    device = resolve_device(args.device)
    n = args.n or (8 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    name = args.model or "resnet-tiny.digits.s0"
    if name not in list_cards():
        raise SystemExit(f"model card {name} not found: this benchmark needs trained weights")
    model, x, y = load(name, device, n)
    eps = parse_eps(EPS)

    def accuracy(images: torch.Tensor) -> float:
        with torch.no_grad():
            return (model(images).argmax(dim=1) == y).float().mean().item()

    def ours(attack: str, **options: object) -> Callable[[], torch.Tensor]:
        spec = make_spec(attack, "linf", eps, **options)  # type: ignore[arg-type]
        return lambda: spec.run(model, x, y, seed=0).x_adv

    outputs: dict[str, torch.Tensor] = {}

    def keeping(name: str, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            outputs[name] = fn()
            return outputs[name]
        return run

    def theirs(version: str, attacks: list[str] | None) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            aa = AutoAttack(model, norm="Linf", eps=eps.value, version=version, attacks=attacks, seed=0,
                            device=device)
            return aa.run_standard_evaluation(x, y, batch_size=n)[0]
        return run

    if args.quick:
        pairs = [("apgd-ce", ours("autoattack", version="custom", aa_attacks=("apgd-ce",)),
                  theirs("custom", ["apgd-ce"]))]
    else:
        pairs = [("apgd-ce+apgd-t (mgbench default)", ours("apgd"), theirs("custom", ["apgd-ce", "apgd-t"])),
                 ("autoattack standard", ours("autoattack"), theirs("standard", None))]
    rows = []
    for label, mine, official in pairs:
        contenders = {"ours": keeping("ours", mine), "theirs": keeping("theirs", official)}
        if device.type == "cuda":
            perf.interleaved_medians(contenders, device, 1)  # warm-up (kernels, allocator)
        medians = perf.interleaved_medians(contenders, device, repeats)
        rows.append({"attack": label, "n": n, "eps": EPS, "ours_s_per_image": medians["ours"] / n,
                     "theirs_s_per_image": medians["theirs"] / n, "ratio": medians["theirs"] / medians["ours"],
                     "ours_robust_acc": accuracy(outputs["ours"]), "theirs_robust_acc": accuracy(outputs["theirs"])})
    if not args.quick:
        for loss in ("ce", "margin"):
            run = ours("pgd", loss=loss)
            seconds = perf.interleaved_medians({"pgd": run}, device, repeats)["pgd"]
            rows.append({"attack": f"pgd {loss} (100 steps of eps/4, 2 restarts)", "n": n, "eps": EPS,
                         "ours_s_per_image": seconds / n, "theirs_s_per_image": None, "ratio": None,
                         "ours_robust_acc": accuracy(run()), "theirs_robust_acc": None})
    frame = pd.DataFrame(rows)
    print(f"model {name}, {n} images, device {device}, load average {perf.machine_info(device)['load_average']}")
    for row in rows:
        line = f"{row['attack']}: ours {row['ours_s_per_image'] * 1e3:.1f} ms/image (acc {row['ours_robust_acc']:.3f})"
        if row["ratio"] is not None:
            line += (f", pyautoattack directly {row['theirs_s_per_image'] * 1e3:.1f} ms/image "
                     f"(acc {row['theirs_robust_acc']:.3f}); ratio theirs/ours {row['ratio']:.3f} (goal >= 1)")
        print(line)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"autoattack-{device.type}"
        frame.to_csv(stem.with_suffix(".csv"), index=False)
        stem.with_suffix(".json").write_text(json.dumps({**perf.machine_info(device), "model": name,
                                                         "quick": args.quick}, indent=2))
        print(f"wrote {stem.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
