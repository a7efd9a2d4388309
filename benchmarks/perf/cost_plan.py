"""The full ImageNet100 protocol's cost, planned from per-image costs measured on this device.

Measures, for ResNet-50 and MGNet-R50 at 224x224 (random weights: cost does not depend on them),
the seconds per image of an evaluation forward pass and of one attack step (forward + backward
to the input), then multiplies them by the work of the complete protocol:

- clean: 5,000 validation images, one forward each;
- corruptions: 15 corruptions x 5 severities x 5,000 images, one forward each (pre-generated
  ImageNet100-C read from disk; generating it is a separate one-off CPU job, see docs);
- FGSM and the default PGD at 1, 2, 4 and 8/255: one step per FGSM image; PGD with the
  cross-entropy and with the margin loss, 100 steps x 2 restarts each, on the images still robust
  (mgbench stops attacking an example once it is fooled; ``--robust-share`` of them, 0.5 by
  default, near 0 for an undefended ResNet);
- APGD-CE (100 steps on every image) + APGD-T (9 x 100 steps on the survivors) at 1, 2 and 8/255;
- AutoAttack standard at 4/255: APGD-CE, then APGD-T, FAB-T (9 x 100 steps, about 2 passes
  each) and Square (5,000 forwards) on the survivors;
- the verdict's probe cells at every eps: noise (10 forwards), Square (1,000 queries on the
  survivors), a second seed of the strongest attack (counted as APGD-CE+T), and once the
  chance-level PGD (20 steps);
- MGNet: every gradient attack twice (its gradient rescaler on and off).

Prints the plan per model and writes ``results/perf/cost-plan-<device>.csv``. On a GPU, run it
there: the per-image costs are what change.

    python benchmarks/perf/cost_plan.py                   # this device
    python benchmarks/perf/cost_plan.py --device cuda --batch-size 128 --precision bf16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mgbench.device import resolve_device  # noqa: E402
from mgbench.models import load_model  # noqa: E402
from mgbench.perf import interleaved_medians, write_results  # noqa: E402
from mgbench.runner import RunOptions  # noqa: E402

N = 5000
EPS_SWEEP = 4


def protocol_work(robust_share: float) -> dict[str, tuple[float, float]]:
    """Per phase: (forward passes, attack steps) per validation image."""
    aa_survivors = robust_share
    return {
        "clean": (1, 0),
        "corruptions (75 cells)": (75, 0),
        "FGSM x4 eps": (EPS_SWEEP, EPS_SWEEP * 1),
        "PGD CE+margin 100x2 x4 eps": (EPS_SWEEP, EPS_SWEEP * 2 * 2 * 100 * aa_survivors),
        "APGD-CE+T x3 eps": (EPS_SWEEP - 1, (EPS_SWEEP - 1) * (100 + aa_survivors * 900)),
        "AutoAttack standard": (1 + aa_survivors * 5000, 100 + aa_survivors * (900 + 1800)),
        "verdict probes x4 eps": (EPS_SWEEP * (1 + 1000 * aa_survivors + 10),
                                  EPS_SWEEP * (100 + aa_survivors * 900) + 20),
    }


GRADIENT_PHASES = ("FGSM x4 eps", "PGD CE+margin 100x2 x4 eps", "APGD-CE+T x3 eps", "AutoAttack standard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--robust-share", type=float, default=0.5,
                        help="share of images AutoAttack's later stages still run on")
    parser.add_argument("--quick", action="store_true", help="batch of 4, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.batch_size, args.repeats = 4, 1
    device = resolve_device(args.device)
    options = RunOptions(device=str(device), precision=args.precision)
    rows = []
    for name in ("resnet50", "mgnet-r50"):
        model = options.prepare(load_model(name).module, device)
        x = torch.rand(args.batch_size, 3, 224, 224, device=device)
        y = torch.zeros(args.batch_size, dtype=torch.long, device=device)

        @torch.no_grad()
        def forward() -> None:
            with options.autocast(device):
                model(x)

        def attack_step() -> None:
            adv = x.clone().requires_grad_(True)
            with options.autocast(device):
                loss = F.cross_entropy(model(adv), y)
            torch.autograd.grad(loss, adv)

        forward()
        attack_step()  # warm-up
        medians = interleaved_medians({"forward": forward, "attack step": attack_step}, device, args.repeats)
        per_image = {k: v / args.batch_size for k, v in medians.items()}
        total = 0.0
        for phase, (forwards, steps) in protocol_work(args.robust_share).items():
            if name.startswith("mgnet") and phase in GRADIENT_PHASES:  # rescaler on and off
                forwards, steps = 2 * forwards, 2 * steps
            seconds = N * (forwards * per_image["forward"] + steps * per_image["attack step"])
            total += seconds
            rows.append({"model": name, "phase": phase, "forwards_per_image": forwards, "steps_per_image": steps,
                         "s_per_forward": per_image["forward"], "s_per_step": per_image["attack step"],
                         "hours": seconds / 3600})
        rows.append({"model": name, "phase": "total", "hours": total / 3600})
    frame = pd.DataFrame(rows)
    path = write_results("cost-plan", frame, device, {"images": N, "robust_share": args.robust_share,
                                                      "batch_size": args.batch_size, "precision": args.precision})
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\n-> {path}")


if __name__ == "__main__":
    main()
