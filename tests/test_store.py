"""The tidy results store: atomic cells, no duplicates, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from support import one_line_error, snapshot

from mgbench.cellkey import CellKey
from mgbench.errors import InputError
from mgbench.rows import CellRecord, MetricRow
from mgbench.store import Store, export

PROVENANCE = {
    "config_hash": "abc", "seed": 0, "versions": {"mgbench": "0", "torch": "t"}, "git_sha": "sha",
    "device": "cpu", "started_at": "t0", "finished_at": "t1", "runtime_s": 1.0,
}


def cell_key(name: str, model: str = "m") -> CellKey:
    """A corruption cell's key; ``name`` stands for a parameter that tells cells apart."""
    return CellKey({"type": "corruption", "version": 1, "threat": "corruption", "corruption": "fog", "severity": 3,
                    "backend": "torch", "tag": name},
                   {"dataset": "digits", "split": "test", "preprocessing": "none", "subset": "h", "n_images": 100},
                   {"model": model, "arch": "a", "weights": "w"}, {"precision": "fp32", "seed": 0})


def record(name: str, rows: list[MetricRow], model: str = "m") -> CellRecord:
    return CellRecord(cell_key(name, model), suite="s", params=1, config={"k": name}, provenance=PROVENANCE,
                      rows=rows)


def test_write_read_and_filters(store_path: Path) -> None:
    with Store(store_path) as store:
        store.write_cell(record("c1", [MetricRow("top1", 0.5, 0.4, 0.6, 100), MetricRow("top1", 0.4, step=1)]))
        store.write_cell(record("c2", [MetricRow("top1", 0.7)], model="other"))
        assert store.has_cell(cell_key("c1").hash) and not store.has_cell(cell_key("c3").hash)
        frame = store.frame()
        assert len(frame) == 3 and set(frame["model"]) == {"m", "other"}
        assert frame.loc[frame["cell_key"] == cell_key("c1").hash, "git_sha"].tolist() == ["sha", "sha"]
        # the canonical columns hold every parameter, also those without a wide column
        assert frame["condition_json"].str.contains('"tag":"c1"').sum() == 2
        only = store.frame(model="other")
        assert only["value"].tolist() == [0.7]
        assert len(store.frame(model=["m", "other"], metric="top1")) == 3
        with pytest.raises(InputError):
            store.frame(colour="red")


def test_duplicates_are_kept_once_and_replace_is_atomic(store_path: Path) -> None:
    with Store(store_path) as store:
        assert store.write_cell(record("c1", [MetricRow("top1", 0.5)]))
        # a second writer's copy of a finished cell is not written (and raises nothing)
        assert not store.write_cell(record("c1", [MetricRow("top1", 0.9)]))
        assert store.frame()["value"].tolist() == [0.5]
        store.write_cell(record("c1", [MetricRow("top1", 0.9), MetricRow("top5", 1.0)]), replace=True)
        assert sorted(store.frame()["value"].tolist()) == [0.9, 1.0]
        assert store.counts() == (1, 2)


def test_a_failing_cell_leaves_nothing(store_path: Path) -> None:
    with Store(store_path) as store:
        bad = record("c1", [MetricRow("top1", 0.5), MetricRow("top5", object())])  # unbindable value
        with pytest.raises(sqlite3.Error):
            store.write_cell(bad)
        assert store.counts() == (0, 0)


def test_store_path_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just text" * 100)
    with pytest.raises(InputError, match="not an mgbench SQLite file"):
        Store(junk)


def test_export_csv_and_parquet(store_path: Path, tmp_path: Path) -> None:
    with Store(store_path) as store:
        store.write_cell(record("c1", [MetricRow("top1", 0.5, 0.4, 0.6, 100)]))
        frame = store.frame()
    csv = export(frame, tmp_path / "out.csv", "csv")
    parquet = export(frame, tmp_path / "out.parquet", "parquet")
    assert pd.read_csv(csv)["value"].tolist() == [0.5]
    assert pd.read_parquet(parquet)["corruption"].tolist() == ["fog"]
    with pytest.raises(InputError):
        export(frame, tmp_path / "out.xlsx", "xlsx")


WRITER = textwrap.dedent("""
    import sys
    from mgbench.cellkey import CellKey
    from mgbench.rows import CellRecord, MetricRow
    from mgbench.store import Store
    path, start = sys.argv[1], int(sys.argv[2])
    prov = {"config_hash": "h", "seed": 0, "versions": {"mgbench": "0", "torch": "t"}, "git_sha": "s",
            "device": "cpu", "started_at": "a", "finished_at": "b", "runtime_s": 0.0}
    with Store(path) as store:
        for i in range(start, 1000):
            key = CellKey({"type": "clean", "version": 1, "threat": "clean", "i": i}, {"dataset": "d"},
                          {"model": "m"}, {})
            if store.has_cell(key.hash):
                continue
            rows = [MetricRow(f"m{j}", float(i)) for j in range(100)]
            store.write_cell(CellRecord(key, "s", None, {}, prov, rows))
            print(i, flush=True)
""")


def test_sigkill_mid_run_loses_nothing_and_duplicates_nothing(store_path: Path, tmp_path: Path) -> None:
    """Kill the writer hard several times while it writes 100-row cells; after a final uninterrupted
    run every cell is present exactly once with all of its rows."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    stored = []
    for written_before_kill in (25, 50):
        proc = subprocess.Popen([sys.executable, str(script), str(store_path), "0"], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        for _ in range(written_before_kill):  # wait until this run is busy writing cells
            proc.stdout.readline()
        time.sleep(0.0005 * written_before_kill)  # land the kill at varying points of a write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with Store(store_path) as store:
            frame = store.frame()
        per_cell = frame.groupby("cell_key").size()
        assert (per_cell == 100).all(), "a killed run left a partial cell"
        stored.append(len(per_cell))
    assert stored[0] < stored[1] < 1000, stored  # each run resumed and was cut short
    subprocess.run([sys.executable, str(script), str(store_path), "0"], check=True, capture_output=True)
    with Store(store_path) as store:
        frame = store.frame()
        assert store.counts() == (1000, 1000 * 100)
    assert frame.groupby("cell_key").size().eq(100).all()
    assert not frame.duplicated(["cell_key", "metric"]).any()


@pytest.mark.parametrize("command", [
    ["run", "--suite", "clean", "--model", "resnet-tiny.digits.s0", "--limit", "8", "--device", "cpu"],
    ["results", "show"],
    ["leaderboard"],
])
def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path, run_cli, command: list[str]) -> None:
    foreign = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('keep me')")
    conn.commit()
    conn.close()
    before = snapshot(foreign)
    out_dir = ["--out", str(tmp_path / "board")] if command[0] == "leaderboard" else []
    code, _, err = run_cli(*command, "--store", str(foreign), *out_dir)
    one_line_error(code, err, "another program")
    assert snapshot(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]  # no -wal, no -shm, no board


def test_a_store_under_a_file_or_in_a_read_only_folder_is_one_line(tmp_path: Path, run_cli) -> None:
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    run = ["run", "--suite", "clean", "--model", "resnet-tiny.digits.s0", "--limit", "8", "--device", "cpu"]
    code, _, err = run_cli(*run, "--store", str(regular / "sub" / "r.sqlite"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is a file" in err, err
    if os.geteuid() == 0:
        return  # root writes into read-only folders
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run_cli(*run, "--store", str(locked / "r.sqlite"))
    finally:
        locked.chmod(0o755)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not writable" in err, err
