"""ImageNet100 at real size, end to end through the CLI, as a researcher runs it: an ImageNet-style
folder of real-size JPEGs (100 WNID folders of the shipped mgnet list, 320 x 250 pixels),
``corruptions generate --limit N``, the corruptions suite (clean and the folder backend) with the
same ``--limit N``, an attack with its verdict, FLOPs, and the leaderboard, for resnet18 and
mgnet-r18 with untrained weights. A handful of images and two PGD steps: it checks shapes, counts
and that nothing is skipped or passed off silently, not accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mgbench.data import DataSpec, class_list, open_dataset, open_imagenet_c
from mgbench.store import Store

LIMIT = 3
MODELS = ("resnet18", "mgnet-r18")
STEPS = {"resnet18": 0, "mgnet-r18": 4}  # stored per-step rows: MGNet-R18 takes 4 glimpses
CORRUPTIONS, SEVERITIES = ("fog", "jpeg_compression"), (1, 5)


def _imagenet_folder(root: Path) -> None:
    """val/WNID/ILSVRC2012_val_*.JPEG: one 320 x 250 photo-like JPEG per class (smooth colour
    gradients plus noise, so that JPEG and the corruptions have structure to work on)."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:250, 0:320]
    for index, wnid in enumerate(class_list("mgnet")):
        base = np.stack([(rows + index) % 256, (columns * 0.8) % 256, np.full_like(rows, 3 * index % 256)], -1)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        folder = root / "val" / wnid
        folder.mkdir(parents=True)
        Image.fromarray(noisy).save(folder / f"ILSVRC2012_val_{index + 1:08d}.JPEG", quality=90)


def _cells(frame: pd.DataFrame, model: str, **where: object) -> pd.DataFrame:
    rows = frame[frame["model"] == model]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows


def test_imagenet100_real_size_end_to_end(tmp_path: Path, run_cli, one_thread) -> None:
    imagenet, imagenet_c, store = tmp_path / "imagenet", tmp_path / "imagenet-c", tmp_path / "results.sqlite"
    _imagenet_folder(imagenet)
    common = ["--data", "imagenet100", "--data-root", str(imagenet), "--limit", str(LIMIT), "--store", str(store),
              "--device", "cpu", "--workers", "0"]
    spec = DataSpec(name="imagenet100", root=str(imagenet), limit=LIMIT)

    # The standard transform turns the 320 x 250 files into 224 x 224 images.
    clean = open_dataset(spec)
    assert clean.n == LIMIT and clean.dataset[0][0].shape == (3, 224, 224)

    # ImageNet100-C for exactly the seeded subset that `run --limit` evaluates.
    code, out, err = run_cli("corruptions", "generate", "--data-root", str(imagenet), "--out", str(imagenet_c),
                             "--corruptions", ",".join(CORRUPTIONS), "--severities", "1,5", "--limit", str(LIMIT),
                             "--workers", "0")
    assert code == 0, err
    files = sorted(imagenet_c.glob("*/*/*/*.JPEG"))
    assert len(files) == LIMIT * len(CORRUPTIONS) * len(SEVERITIES)
    chosen = {f"{p.parts[-2]}/{p.name}" for p in files}
    assert chosen == {clean.dataset.dataset.relative_paths()[i] for i in clean.dataset.indices}
    for path in files:
        with Image.open(path) as picture:
            assert picture.size == (224, 224)
    assert open_imagenet_c(spec, imagenet_c, "fog", 5).dataset[0][0].shape == (3, 224, 224)

    # Clean, the corruptions through the folder backend (mCE against resnet18), FLOPs: one suite.
    code, out, err = run_cli("run", "--suite", "corruptions", "--model", ",".join(MODELS), "--backend", "folder",
                             "--imagenet-c-root", str(imagenet_c), "--corruptions", ",".join(CORRUPTIONS),
                             "--severities", "1,5", "--mce-baseline", "resnet18", *common)
    assert code == 0, err
    assert "resnet18 (random-init)" in out and "mgnet-r18 (random-init)" in out

    # An attack with its verdict.
    code, out, err = run_cli("attack", "--model", ",".join(MODELS), "--eps", "4/255", "--attack", "pgd",
                             "--steps", "2", "--square-queries", "10", *common)
    assert code == 0, err
    assert "gradient-masking verdicts" in out

    with Store(store) as db:
        frame = db.frame()
    assert set(frame["weights"]) == {"random-init"}  # untrained, and the store says so
    assert "skipped_images" not in set(frame["metric"])  # nothing dropped silently
    for model in MODELS:
        steps = STEPS[model]
        compute = _cells(frame, model, threat="compute")
        gmacs = compute[compute["metric"] == "gmacs"]
        assert len(gmacs) == 1 + steps and set(compute["metric"]) == {"params", "gmacs"}
        assert json.loads(compute["config"].iloc[0])["data"]["input_size"] == 224
        top1 = frame[(frame["model"] == model) & (frame["metric"] == "top1")]
        clean_rows = top1[top1["threat"] == "clean"]
        assert len(clean_rows) == 1 + steps and set(clean_rows["n"]) == {LIMIT}
        cells = top1[(top1["threat"] == "corruption") & top1["severity"].notna()]
        assert len(cells) == len(CORRUPTIONS) * len(SEVERITIES) * (1 + steps)
        assert set(cells["backend"]) == {"folder"} and set(cells["n"]) == {LIMIT}
        assert set(cells["preprocessing"]) == {"crop224"}
        summary = _cells(frame, model, threat="corruption", corruption="mean")
        assert {"mean_top1", "mce"} <= set(summary["metric"])
        attacked = top1[(top1["threat"] == "linf") & (top1["attack"] == "pgd")]
        per_cell = attacked.groupby("cell_key").size()  # CE and margin PGD, probes, rescaler-off on MGNet
        assert len(per_cell) >= 2 and (per_cell == 1 + steps).all() and set(attacked["n"]) == {LIMIT}
        verdict = _cells(frame, model, metric="unreliable")
        assert len(verdict) == 1 and verdict["value"].iloc[0] in (0.0, 1.0)
    assert clean_rows["subset"].iloc[0] == clean.ids_hash  # the same seeded subset as open_dataset

    # The export carries the weights; the leaderboard lists untrained models only when asked.
    code, out, err = run_cli("results", "export", "--store", str(store), "--out", str(tmp_path / "rows.csv"))
    assert code == 0, err
    assert set(pd.read_csv(tmp_path / "rows.csv")["weights"]) == {"random-init"}
    board, glimpses = tmp_path / "board", tmp_path / "no-glimpses"
    glimpses.mkdir()
    code, out, err = run_cli("leaderboard", "--store", str(store), "--out", str(board), "--glimpses", str(glimpses))
    assert code == 2 and "--include-random-init" in err and err.strip().count("\n") == 0 and not board.exists()
    code, out, err = run_cli("leaderboard", "--store", str(store), "--out", str(board), "--glimpses", str(glimpses),
                             "--include-random-init")
    assert code == 0, err
    table = pd.read_csv(board / "leaderboard.csv").set_index("model")
    assert sorted(table.index) == sorted(MODELS) and set(table["weights"]) == {"random-init"}
    assert set(table["clean_n"]) == {LIMIT} and table["gmacs"].notna().all()
    assert table.loc["mgnet-r18", "gmacs_per_step"].count("/") == STEPS["mgnet-r18"] - 1
    assert table["corruption_mean_top1"].notna().all() and table["unreliable"].notna().all()

    # A corrupted copy of the subset gone missing: one line naming it and the fix, nothing written.
    files[0].unlink()
    before = len(frame)
    code, out, err = run_cli("run", "--suite", "corruptions", "--model", "resnet18", "--backend", "folder",
                             "--imagenet-c-root", str(imagenet_c), "--corruptions", ",".join(CORRUPTIONS),
                             "--severities", "1,5", "--force", *common)
    assert code == 2 and err.startswith(f"error: {files[0]} is missing") and err.strip().count("\n") == 0
    assert "mgbench corruptions generate" in err and f"--limit {LIMIT}" in err
    with Store(store) as db:
        assert len(db.frame()) == before

