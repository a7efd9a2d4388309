"""Issue 28: nothing of the user's is lost, and bad input anywhere ends in one line ``error: ...``
with exit code 2, the store and the folders it names unchanged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from support import one_line_error, snapshot, synthetic_store


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "stores").mkdir()
    return synthetic_store(tmp_path / "stores" / "base.sqlite")


# ----------------------------------------------------------------------------- leaderboard --out

def test_leaderboard_refuses_a_folder_with_foreign_files(run_cli, base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "notes.txt").write_text("x\n")
    folder.chmod(0o751)
    before = snapshot(folder, base)
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(folder))
    one_line_error(code, err, "notes.txt", "--force")
    assert snapshot(folder, base) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "stores"]  # no staging left behind


def test_leaderboard_force_writes_beside_foreign_files_and_keeps_them(run_cli, base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "notes.txt").write_text("x\n")
    folder.chmod(0o751)
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(folder), "--force")
    assert code == 0, err
    assert (folder / "notes.txt").read_text() == "x\n"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o751
    assert {"index.html", "index.md", "leaderboard.csv", ".mgbench-leaderboard"} <= {p.name for p in folder.iterdir()}
    # The folder is now a previous build with one foreign file: a rebuild still needs --force,
    # and then keeps the file again.
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(folder))
    one_line_error(code, err, "notes.txt")
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(folder), "--force")
    assert code == 0, err
    assert (folder / "notes.txt").read_text() == "x\n"


def test_leaderboard_into_the_current_folder(run_cli, base: Path, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / "notes.txt").write_text("x\n")
    monkeypatch.chdir(folder)
    before = snapshot(folder, base)
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", ".")
    one_line_error(code, err, "notes.txt")
    assert snapshot(folder, base) == before
    (folder / "notes.txt").unlink()
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", ".")  # empty: written in place
    assert code == 0, err
    assert (folder / "index.html").is_file() and Path.cwd() == folder


def test_leaderboard_refuses_a_file_as_out(run_cli, base: Path, tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("mine\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(target))
    one_line_error(code, err, "is a file")
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(target / "sub"))
    one_line_error(code, err, "which is a file")
    assert snapshot(tmp_path) == before


def test_leaderboard_rebuild_replaces_only_its_own_files(run_cli, base: Path, tmp_path: Path) -> None:
    """A previous build is recognised by its marker, or, for builds made before the marker (the
    committed results/leaderboard), by index.html + index.md + leaderboard.csv; a new folder gets
    the mode any new folder gets, not mkdtemp's 0700."""
    folder = tmp_path / "board"
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(folder))
    assert code == 0, err
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    (folder / "plots" / "stale.png").write_bytes(b"old")  # inside its own entries: replaced
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(folder))
    assert code == 0, err
    assert not (folder / "plots" / "stale.png").exists()
    (folder / ".mgbench-leaderboard").unlink()  # the legacy layout (or a checkout without the marker) ...
    for name in ("screenshot-1280.png", "screenshot-390.png"):  # ... with the screenshots of make leaderboard
        (folder / name).write_bytes(b"png")
    code, _, err = run_cli("leaderboard", "--store", str(base), "--out", str(folder))
    assert code == 0, err
    assert (folder / ".mgbench-leaderboard").is_file() and not (folder / "screenshot-390.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board", "stores"]


# ----------------------------------------------------------------------------- results export --out

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_refuses_a_folder_and_leaves_no_temporary_file(run_cli, base: Path, tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "mine.txt").write_text("x\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli("results", "export", "--store", str(base), "--format", fmt, "--out", str(folder))
    one_line_error(code, err, "is a folder")
    code, _, err = run_cli("results", "export", "--store", str(base), "--format", fmt,
                           "--out", str(folder / "mine.txt" / "x.csv"))
    one_line_error(code, err, "which is a file")
    assert snapshot(tmp_path) == before


def test_export_that_fails_midway_leaves_the_old_file(base: Path, tmp_path: Path, monkeypatch) -> None:
    import pandas as pd

    from mgbench.errors import InputError
    from mgbench.store import export

    target = tmp_path / "out.csv"
    target.write_text("previous export\n")

    def full_disk(self, path, **kwargs):
        Path(path).write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(InputError, match="No space left"):
        export(pd.DataFrame({"a": [1]}), target, "csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "stores"]
    assert target.read_text() == "previous export\n"


# ----------------------------------------------------------------------------- corruptions generate

def _imagenet_with_bad_jpegs(root: Path) -> list[Path]:
    """One JPEG per class of the mgnet list: 98 readable, one that is no image and one cut off
    after its header; returns the two bad ones."""
    import numpy as np
    from PIL import Image

    from mgbench.data import class_list

    wnids = class_list("mgnet")
    rng = np.random.default_rng(0)
    for index, wnid in enumerate(wnids):
        (root / "val" / wnid).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            root / "val" / wnid / f"ILSVRC2012_val_{index:08d}.JPEG", quality=90)
    not_an_image = root / "val" / wnids[5] / "ILSVRC2012_val_00000005.JPEG"
    not_an_image.write_bytes(b"this is not a JPEG\n" * 50)
    cut = root / "val" / wnids[6] / "ILSVRC2012_val_00000006.JPEG"
    cut.write_bytes(cut.read_bytes()[:400])
    return [not_an_image, cut]


def test_generate_stops_on_an_unreadable_image_before_writing(run_cli, tmp_path: Path) -> None:
    root, out = tmp_path / "imagenet", tmp_path / "imagenet-c"
    bad = _imagenet_with_bad_jpegs(root)
    bad[1].unlink()  # only the file that is no image: its header cannot be read
    before = snapshot(tmp_path)
    code, _, err = run_cli("corruptions", "generate", "--data-root", str(root), "--out", str(out),
                           "--corruptions", "gaussian_noise", "--severities", "1", "--workers", "0", "-q")
    one_line_error(code, err, str(bad[0]), "--on-bad-image skip")
    assert snapshot(tmp_path) == before and not out.exists()


def test_generate_skips_unreadable_images_when_asked(run_cli, tmp_path: Path) -> None:
    root, out = tmp_path / "imagenet", tmp_path / "imagenet-c"
    _imagenet_with_bad_jpegs(root)
    code, text, err = run_cli("corruptions", "generate", "--data-root", str(root), "--out", str(out),
                              "--corruptions", "gaussian_noise", "--severities", "1", "--workers", "0", "-q",
                              "--on-bad-image", "skip")
    assert code == 0, err
    assert "2 unreadable source image(s) skipped" in text
    assert len(list(out.glob("gaussian_noise/1/*/*.JPEG"))) == 98
    assert not list(out.rglob("*.tmp"))


def test_generate_stops_on_an_image_cut_off_after_its_header(run_cli, tmp_path: Path) -> None:
    """A body that cannot be decoded is found only when the image is read: the error names it, and
    the files written before it are whole images, kept for the rerun to resume from."""
    root, out = tmp_path / "imagenet", tmp_path / "imagenet-c"
    bad = _imagenet_with_bad_jpegs(root)
    bad[0].unlink()
    code, _, err = run_cli("corruptions", "generate", "--data-root", str(root), "--out", str(out),
                           "--corruptions", "gaussian_noise", "--severities", "1", "--workers", "0", "-q")
    one_line_error(code, err, str(bad[1]), "--on-bad-image skip")
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(bad[1].name))


# ----------------------------------------------------------------------------- a full disk

def _clean_run(run_cli, store: Path, limit: str) -> tuple[int, str, str]:
    return run_cli("run", "--suite", "clean", "--model", "resnet-tiny.digits.s0", "--limit", limit, "--batch-size",
                   "16", "--workers", "0", "--device", "cpu", "--store", str(store), "-q")


def test_a_full_disk_is_one_line_saying_the_store_is_intact(run_cli, tmp_path: Path, one_thread,
                                                            monkeypatch) -> None:
    """A file size limit (what `ulimit -f` does; Python ignores SIGXFSZ, so a write past it fails
    like one on a full disk), when the store is opened or at the commit of the next cell: one
    line saying the store is intact and the rerun resumes; it does, once there is room."""
    import resource

    from mgbench.store import Store

    store = tmp_path / "s.sqlite"
    code, _, err = _clean_run(run_cli, store, "16")
    assert code == 0, err
    with Store(store, readonly=True) as db:
        before = db.counts()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    insert = Store._insert

    def fill_the_disk(self, *args):  # from the first cell's insert on, the WAL cannot grow
        wal = Path(f"{self.path}-wal")
        resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size if wal.exists() else 0, hard))
        return insert(self, *args)

    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # not even SQLite's shared-memory file fits
        code, _, err = _clean_run(run_cli, store, "32")
        one_line_error(code, err, str(store), "is intact", "resumes")
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        with monkeypatch.context() as patch:
            patch.setattr(Store, "_insert", fill_the_disk)
            code, _, err = _clean_run(run_cli, store, "32")
        one_line_error(code, err, str(store), "is intact", "resumes")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    with Store(store, readonly=True) as db:
        assert db.counts() == before
    code, text, err = _clean_run(run_cli, store, "32")
    assert code == 0, err
    with Store(store, readonly=True) as db:
        assert db.counts()[0] == before[0] + 1  # the clean cell on 32 images; the compute cell is shared


# ----------------------------------------------------------------------------- suite files: one schema

@pytest.mark.parametrize("body, words", [
    ('conditions = 5', ["conditions must be [[conditions]] tables"]),
    ('conditions = [5]', ["must be a table"]),
    ('models = "resnet-tiny.digits.s0"\n[[conditions]]\ntype = "clean"', ["models must be a list"]),
    ('models = ["resnet-tiny.digits.s0", 3]\n[[conditions]]\ntype = "clean"', ["models must be a list"]),
    ('limit = "10"\n[[conditions]]\ntype = "clean"', ["limit must be a whole number"]),
    ('name = 7\n[[conditions]]\ntype = "clean"', ["name must be a string"]),
    ('modles = []\n[[conditions]]\ntype = "clean"', ["unknown key(s) modles"]),
    ('[[conditions]]\ntype = "clean"\nfrobnicate = 3', ["clean table has unknown key(s) frobnicate"]),
    ('[[conditions]]\ntype = "corruption"\nfrobnicate = 3', ["corruption table has unknown key(s) frobnicate"]),
    ('[[conditions]]\ntype = "attack"\neps = "4/255"\nfrobnicate = 3', ["attack table has unknown key(s) frobnicate"]),
    ('[[conditions]]\ntype = 3', ["unknown condition type 3"]),
])
def test_suite_file_schema(run_cli, tmp_path: Path, store_path: Path, body: str, words: list[str]) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(body + "\n")
    before = snapshot(tmp_path)
    code, _, err = run_cli("run", "--suite", str(suite), "--store", str(store_path), "--limit", "8")
    one_line_error(code, err, str(suite), *words)
    assert snapshot(tmp_path) == before and not store_path.exists()


# ----------------------------------------------------------------------------- options and environment

def test_train_out_is_a_file(run_cli, tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("mine\n")
    before = snapshot(tmp_path)
    for out in (target, target / "run"):
        code, _, err = run_cli("train", "--model", "resnet-tiny", "--out", str(out), "--epochs", "1", "--limit", "8")
        one_line_error(code, err, str(out), "a file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("seed", ["100000000000000000000", "-1"])
def test_seed_out_of_range(run_cli, tmp_path: Path, store_path: Path, seed: str) -> None:
    code, _, err = run_cli("run", "--suite", "clean", "--model", "resnet-tiny.digits.s0", "--limit", "8",
                           "--store", str(store_path), "--seed", seed)
    one_line_error(code, err, "--seed", seed)
    code, _, err = run_cli("train", "--model", "resnet-tiny", "--out", str(tmp_path / "run"), "--seed", seed)
    one_line_error(code, err, "--seed", seed)
    assert sorted(tmp_path.iterdir()) == []


def test_cache_that_is_a_file(run_cli, tmp_path: Path, store_path: Path, monkeypatch) -> None:
    from mgbench.data.digits import load_digits

    cache = tmp_path / "cache"
    cache.write_text("not a folder\n")
    monkeypatch.setenv("MGBENCH_CACHE", str(cache))
    load_digits.cache_clear()
    try:
        code, _, err = run_cli("run", "--suite", "clean", "--model", "resnet-tiny.digits.s0", "--limit", "8",
                               "--store", str(store_path))
    finally:
        load_digits.cache_clear()
    one_line_error(code, err, str(cache), "MGBENCH_CACHE")
    assert cache.read_text() == "not a folder\n" and not store_path.exists()


def test_a_torn_digits_cache_is_built_again(tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    from mgbench.data import digits

    spec = digits.DigitsSpec()
    monkeypatch.setenv("MGBENCH_CACHE", str(tmp_path))
    path = tmp_path / f"digits-v{spec.version}-{spec.key()}.npz"
    small = {f"{split}_{part}": np.arange(3) for split in digits.SPLITS for part in ("images", "labels")}
    np.savez_compressed(path, **small)
    path.write_bytes(path.read_bytes()[:40])  # cut off, as a killed copy or a full disk leaves it
    monkeypatch.setattr(digits, "build_digits", lambda spec: small)
    digits.load_digits.cache_clear()
    try:
        arrays = digits.load_digits(spec)
    finally:
        digits.load_digits.cache_clear()
    assert sorted(arrays) == sorted(small)
    with np.load(path) as archive:  # and the cache file is whole again
        assert sorted(archive.files) == sorted(small)


# ----------------------------------------------------------------------------- silently wrong before

def test_unknown_mce_baseline(run_cli, tmp_path: Path, store_path: Path) -> None:
    code, _, err = run_cli("run", "--suite", "corruptions", "--model", "resnet-tiny.digits.s0", "--limit", "8",
                           "--corruptions", "fog", "--severities", "1", "--mce-baseline", "nosuch",
                           "--store", str(store_path))
    one_line_error(code, err, "nosuch", "mgbench models")
    assert not store_path.exists()


def test_empty_model_and_store_names(run_cli, tmp_path: Path, store_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # where --store '' used to write results/local.sqlite
    for args, words in (
        (("--model", "", "--store", str(store_path)), ["--model", "names nothing"]),
        (("--model", " , ", "--store", str(store_path)), ["--model", "names nothing"]),
        (("--model", "resnet-tiny.digits.s0", "--store", ""), ["--store", "empty path"]),
    ):
        code, _, err = run_cli("run", "--suite", "clean", "--limit", "8", *args)
        one_line_error(code, err, *words)
    for command in (("results", "show"), ("results", "export", "--out", "x.csv"), ("leaderboard",)):
        code, _, err = run_cli(*command, "--store", "")
        one_line_error(code, err, "--store", "empty path")
    code, _, err = run_cli("leaderboard", "--store", str(store_path), "--out", "")
    one_line_error(code, err, "--out", "empty path")
    assert sorted(tmp_path.iterdir()) == []


def test_l2_eps_that_allows_any_image(run_cli, store_path: Path) -> None:
    code, _, err = run_cli("attack", "--model", "resnet-tiny.digits.s0", "--norm", "l2", "--eps", "1e9",
                           "--limit", "8", "--store", str(store_path))
    one_line_error(code, err, "L2 eps 1e9", "smaller eps")
    assert not store_path.exists()


def test_results_show_unknown_threat_and_empty_filters(run_cli, base: Path) -> None:
    before = snapshot(base)
    code, _, err = run_cli("results", "show", "--store", str(base), "--threat", "bogus")
    one_line_error(code, err, "--threat", "bogus", "linf")
    code, out, err = run_cli("results", "show", "--store", str(base), "--model", "nosuch")
    assert code == 0, err
    assert "0 cells" in out and "no stored row matches" in out
    assert snapshot(base) == before


def test_glimpses_checks_the_model_outputs(run_cli, tmp_path: Path) -> None:
    factory = tmp_path / "factories.py"
    factory.write_text("import torch.nn as nn\n\n"
                       "class Nan(nn.Module):\n"
                       "    def forward(self, x):\n"
                       "        return x.mean(dim=(2, 3)).repeat(1, 4)[:, :10] * float('nan')\n\n"
                       "def nan():\n    return Nan()\n")
    out = tmp_path / "g.png"
    code, _, err = run_cli("glimpses", "--model", f"{factory}:nan", "--out", str(out), "--device", "cpu")
    one_line_error(code, err, "NaN")
    assert not out.exists()
