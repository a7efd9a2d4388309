"""The committed worst case at 4/255 checked against the official AutoAttack code called directly.

For each model, ``pyautoattack.AutoAttack(model, norm="Linf", eps=4/255, version="standard")
.run_standard_evaluation`` runs on the first ``--n`` images of the reference's 500-image subset,
outside mgbench.attacks (no cascade of ours, no bookkeeping of ours); models with a gradient
rescaler (MGNet) are attacked twice, with the rescaler on and off, and an example counts as
robust only if both adversarial images are still classified correctly. Robust accuracy is
recomputed here by a fresh forward pass on adversarial images asserted to lie in the ball and in
[0, 1]. The store is read with sqlite3, not with mgbench's store code.

The committed number passes when, on the same images, the store's per-example worst case leaves
at most ``n / 100`` more examples correct than this independent run (one in a hundred): a worst
case above that would mean mgbench's attacks are weaker than the official code.

    python benchmarks/independent_autoattack.py                       # both seed-0 cards, 200 images
    python benchmarks/independent_autoattack.py --model resnet-tiny.digits.s0 --n 50

Rows of models not run this time are kept in ``--out``; each row records the torch threads and
the load average before and after (its seconds are a cost figure only on an idle machine). Each
setting's finished run is kept under ``autoattack-runs/`` beside ``--out`` and read back by a
later run, so MGNet's two settings may run in different sessions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyautoattack import AutoAttack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mgbench  # noqa: E402
from benchmarks.stored import detail, per_example, query, write_rows  # noqa: E402
from mgbench.data import DataSpec, open_dataset  # noqa: E402

EPS = 4 / 255
SUBSET = 500  # the attacks suites' subset


def first_images(n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The first ``n`` images (ascending dataset index) of the 500-image subset, in [0, 1]."""
    dataset = open_dataset(DataSpec("digits", limit=SUBSET)).dataset
    items = [dataset[i] for i in range(n)]
    images = torch.stack([torch.as_tensor(item[0]) for item in items]).float().div(255)
    labels = torch.tensor([int(item[1]) for item in items])
    ids = np.array([int(item[2]) for item in items])
    assert np.all(np.diff(ids) > 0), "the subset is read in ascending index order"
    return images, labels, ids


def official_autoattack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
    """Per-example correctness after AutoAttack standard, recomputed on its images."""
    attack = AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=seed, device=x.device)
    x_adv, _ = attack.run_standard_evaluation(x, y, batch_size=len(y))
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6, "an adversarial image outside the eps-ball"
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, "an adversarial image outside [0, 1]"
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def committed_worst_case(store: Path, model: str, ids: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """The stored worst case at 4/255 on ``ids`` (None when the store has none) and its attacks."""
    rows = query(store, "SELECT r.detail FROM results r JOIN cells c ON r.cell_key = c.cell_key "
                        "WHERE c.model = ? AND r.metric = 'top1' AND r.step IS NULL "
                        "AND json_extract(c.condition_json, '$.attack') = 'worst-case' "
                        "AND json_extract(c.condition_json, '$.eps_str') = '4/255' "
                        "AND json_extract(c.condition_json, '$.norm') = 'linf' "
                        f"AND json_extract(c.data_json, '$.n_images') = {SUBSET}", model)
    if not rows:
        return None, []
    record = detail(rows[0][0])
    lookup = per_example(record["examples"])
    missing = [i for i in ids.tolist() if i not in lookup]
    if missing:
        raise SystemExit(f"the stored worst case of {model} lacks {len(missing)} of the images")
    return np.array([lookup[i] for i in ids.tolist()]), record["attacks"]


def setting_run(model: torch.nn.Module, name: str, setting: str, x: torch.Tensor, y: torch.Tensor, ids: np.ndarray,
                seed: int, runs: Path) -> dict[str, Any]:
    """One setting's official AutoAttack run (``robust`` per image, its seconds, torch threads and
    load averages), kept in ``runs`` as ``<model>.<setting>.n<N>.seed<S>.npz``: a run that finished
    is read back, not redone, so a check of several settings (MGNet: hours each on a CPU) can be
    spread over several sessions, as the reference's cells are."""
    path = runs / f"{name}.{setting.replace(' ', '-')}.n{len(ids)}.seed{seed}.npz"
    if path.exists():
        with np.load(path) as saved:
            if np.array_equal(saved["ids"], ids):
                return {key: saved[key] for key in ("robust", "seconds", "threads", "load_before", "load_after")}
    load_before, started = os.getloadavg()[0], time.perf_counter()
    with model.gradient_rescaler(False) if setting == "rescaler off" else contextlib.nullcontext():
        robust = official_autoattack(model, x, y, seed).numpy()
    found = {"robust": robust, "seconds": time.perf_counter() - started, "threads": torch.get_num_threads(),
             "load_before": load_before, "load_after": os.getloadavg()[0]}
    runs.mkdir(parents=True, exist_ok=True)
    np.savez(path, ids=ids, **found)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="zoo card (repeatable; default: the two seed-0 cards)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=ROOT / "results" / "reference.sqlite")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "independent" / "autoattack.csv")
    args = parser.parse_args()
    models = args.model or ["resnet-tiny.digits.s0", "mgnet-tiny.digits.s0"]
    x, y, ids = first_images(args.n)
    rows, failed = [], []
    for name in models:
        model = mgbench.create_model(name).eval()
        settings = ["rescaler on", "rescaler off"] if hasattr(model, "gradient_rescaler") else ["the model as it is"]
        runs = [setting_run(model, name, setting, x, y, ids, args.seed, args.out.parent / "autoattack-runs")
                for setting in settings]
        robust = np.logical_and.reduce([run["robust"] for run in runs])  # robust only if no setting broke it
        seconds = sum(float(run["seconds"]) for run in runs)
        committed, attacks = committed_worst_case(args.store, name, ids)
        ours = None if committed is None else int(committed.sum())
        allowed = args.n // 100
        verdict = "no stored worst case" if ours is None else (
            "pass" if ours - int(robust.sum()) <= allowed else "FAIL")
        if verdict == "FAIL":
            failed.append(name)
        rows.append({"model": name, "n": args.n, "official_autoattack_robust": int(robust.sum()),
                     "settings": " + ".join(settings), "committed_worst_case_robust": ours,
                     "allowed_excess": allowed, "verdict": verdict, "seconds": round(seconds, 1),
                     "torch_threads": int(max(run["threads"] for run in runs)),
                     "load_before": round(float(max(run["load_before"] for run in runs)), 2),
                     "load_after": round(float(max(run["load_after"] for run in runs)), 2),
                     "committed_attacks": "; ".join(attacks)})
        stored = "has no stored worst case at 4/255" if ours is None else f"leaves {ours}/{args.n} on the same images"
        print(f"{name}: official AutoAttack standard ({' + '.join(settings)}) leaves {int(robust.sum())}/{args.n}; "
              f"the committed worst case {stored}: {verdict} ({seconds:.0f} s)", flush=True)
    write_rows(args.out, rows, lambda row: row["model"] in models)  # other models' rows are kept
    if failed:
        raise SystemExit(f"the committed worst case is weaker than the official AutoAttack for {', '.join(failed)}")


if __name__ == "__main__":
    main()
