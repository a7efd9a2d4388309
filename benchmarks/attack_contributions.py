"""What each attack added to a model's robust worst case at one eps, read from the stored cells.

For each model, the attack cells at L-inf ``--eps`` (honest protocol) on the attacks suites'
500-image subset are read with sqlite3 (per-example correctness of every cell). On the examples
every cell evaluated, the per-example worst case is recomputed here, and each group of attacks
is credited with the examples that it alone broke (correct under every other group):

- PGD (cross-entropy and margin), APGD-CE+T (its reseeded probe included), AutoAttack standard,
  Square (the probe), noise, FGSM, each on the model as it is;
- rescaler-off: every attack run with MGNet's gradient rescaler off;
- per-glimpse: the attacks aimed at an earlier glimpse (they count for the final prediction too).

Inside APGD-CE+T and AutoAttack standard the cascade's own rows (robust accuracy after APGD-CE,
APGD-T, FAB-T, Square) say what each of its attacks added on its images. Writes
``results/independent/contributions.csv``.

    python benchmarks/attack_contributions.py                               # the five seed-0 cards
    python benchmarks/attack_contributions.py --model resnet-tiny.digits.s0 --eps 8/255
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stored import detail, per_example, query, write_rows  # noqa: E402

SUBSET = 500
SEED0 = ["resnet-tiny.digits.s0", "mgnet-tiny.digits.s0", "ltpa-tiny.digits.s0", "tdam-tiny.digits.s0",
         "gwi-resnet-tiny.digits.s0"]
CASCADE = ("clean", "apgd-ce", "apgd-t", "fab-t", "square")
CASCADES = {"autoattack-custom:apgd-ce+apgd-t": "APGD-CE+T", "autoattack-standard": "AutoAttack standard"}
FAMILIES = {"pgd": "PGD", "pgd-margin": "PGD", "fgsm": "FGSM", "noise": "noise", "autoattack-custom:square": "Square",
            **CASCADES}


def group_of(attack: str, variant: str) -> str:
    """The group a stored attack cell is credited to."""
    tokens = set(variant.split("+")) if variant not in ("", "default") else set()
    if any(t.startswith("glimpse=") for t in tokens):
        return "per-glimpse"
    if "rescaler-off" in tokens:
        return "rescaler-off"
    return FAMILIES.get(attack, attack)


def contributions(store: Path, model: str, eps: str) -> list[dict[str, object]]:
    rows = query(store, "SELECT r.attack, r.variant, r.detail FROM results r JOIN cells c ON r.cell_key = c.cell_key "
                        "WHERE c.model = ? AND r.metric = 'per_example' AND r.eps_str = ? AND r.norm = 'linf' "
                        "AND r.protocol = 'honest' AND r.attack NOT LIKE 'worst-case%' "
                        "AND json_extract(c.data_json, '$.n_images') = ? AND r.eps < 0.5", model, eps, SUBSET)
    if not rows:
        return []
    groups: dict[str, list[dict[int, bool]]] = {}
    for attack, variant, text in rows:
        groups.setdefault(group_of(attack, variant or "default"), []).append(per_example(detail(text)))
    common = set.intersection(*(set(cell) for cells in groups.values() for cell in cells))
    survives = {name: {i for i in common if all(cell[i] for cell in cells)} for name, cells in groups.items()}
    worst = set.intersection(*survives.values())
    out = []
    for name, kept in sorted(survives.items()):
        others = set.intersection(*(v for k, v in survives.items() if k != name)) if len(survives) > 1 else common
        out.append({"model": model, "eps": eps, "n": len(common), "group": name, "cells": len(groups[name]),
                    "group_robust": len(kept), "broken_only_by_group": len(others - kept),
                    "worst_case_robust": len(worst)})
    for attack, name in CASCADES.items():
        stages = query(store, "SELECT r.metric, r.value, r.n FROM results r JOIN cells c ON r.cell_key = c.cell_key "
                              "WHERE c.model = ? AND r.attack = ? AND r.variant = 'default' AND r.eps_str = ? "
                              "AND r.metric LIKE 'autoattack:%' AND json_extract(c.data_json, '$.n_images') = ?",
                       model, attack, eps, SUBSET)
        after = {metric.split(":", 1)[1]: round(value * n) for metric, value, n in stages}
        previous = None
        for stage in (s for s in CASCADE if s in after):
            if previous is not None:  # what the stage broke of what the earlier stages left
                out.append({"model": model, "eps": eps, "n": SUBSET, "group": f"{name} cascade: {stage}", "cells": 1,
                            "group_robust": after[stage], "broken_only_by_group": after[previous] - after[stage],
                            "worst_case_robust": len(worst)})
            previous = stage
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="zoo card (repeatable; default: the five seed-0 cards)")
    parser.add_argument("--eps", default="4/255")
    parser.add_argument("--store", type=Path, default=ROOT / "results" / "reference.sqlite")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "independent" / "contributions.csv")
    args = parser.parse_args()
    if not args.store.is_file():
        parser.exit(2, f"error: no results store at {args.store}: pass an existing --store\n")
    rows = [row for model in (args.model or SEED0) for row in contributions(args.store, model, args.eps)]
    for row in rows:
        print(f"{row['model']:<26} {row['group']:<28} robust {row['group_robust']:>4}/{row['n']}  "
              f"added {row['broken_only_by_group']:>3}  (worst case {row['worst_case_robust']}/{row['n']})")
    if not rows:
        print(f"no attack cells at {args.eps} on the {SUBSET}-image subset in {args.store}")
        return
    models = set(args.model or SEED0)  # other models' and other eps' rows are kept
    write_rows(args.out, rows, lambda row: row["model"] in models and row["eps"] == args.eps)


if __name__ == "__main__":
    main()
