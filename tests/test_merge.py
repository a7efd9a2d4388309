"""`mgbench results merge`: stores of separate jobs become one; identical cells once,
conflicting copies reported, summaries the sources disagree on dropped for a rerun."""

from __future__ import annotations

import hashlib
import sqlite3
import textwrap
from pathlib import Path

import pytest

from mgbench.data import DataSpec
from mgbench.runner import RunOptions, evaluate
from mgbench.store import Store
from mgbench.suites import Suite

pytestmark = pytest.mark.usefixtures("one_thread")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shard(tmp_path: Path, store: Path, models: list[str]) -> None:
    suite = tmp_path / "shard.toml"
    suite.write_text(textwrap.dedent("""
        name = "shard"
        dataset = "digits"
        models = []

        [[conditions]]
        type = "clean"

        [[conditions]]
        type = "corruption"
        corruptions = "fog"
        severities = "1"
    """))
    evaluate(Suite.read(suite), models=models, data=DataSpec(limit=20), store=store,
             options=RunOptions(device="cpu", batch_size=20))


def test_merge_shards(tmp_path: Path, run_cli) -> None:
    a, b, merged = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "merged.sqlite"
    _shard(tmp_path, a, ["resnet-tiny.digits.s0"])
    _shard(tmp_path, b, ["resnet-tiny.digits.s0", "ltpa-tiny.digits.s0"])  # resnet's cells twice
    # a job whose clean cell of ltpa disagrees with b's, and whose fog summary of ltpa too
    c = tmp_path / "c.sqlite"
    _shard(tmp_path, c, ["ltpa-tiny.digits.s0"])
    conn = sqlite3.connect(c)
    conn.execute("UPDATE results SET value = value / 2 WHERE threat = 'clean' AND metric = 'top1'")
    conn.execute("UPDATE results SET value = value / 2 WHERE corruption = 'mean' AND severity IS NULL")
    conn.commit()
    conn.close()
    with Store(b) as store:
        cells_b = store.counts()[0]
    digests = {p: _digest(p) for p in (a, b, c)}

    code, out, err = run_cli("results", "merge", str(a), str(b), str(c), "--into", str(merged))
    assert code == 0, err
    assert {p: _digest(p) for p in (a, b, c)} == digests  # sources only read
    conflicts = [line for line in err.splitlines() if line.startswith("conflict:")]
    dropped = [line for line in err.splitlines() if line.startswith("summary dropped")]
    assert len(conflicts) == 1 and "ltpa-tiny.digits.s0" in conflicts[0] and "clean" in conflicts[0]
    assert len(dropped) == 1 and "ltpa-tiny.digits.s0" in dropped[0]
    with Store(merged) as store:
        frame = store.frame()
    # b holds every cell: all of them once, less the summary the sources disagree on
    assert frame["cell_key"].nunique() == cells_b - 1
    assert not frame.duplicated(["cell_key", "metric", "step"]).any()
    clean = frame[(frame["threat"] == "clean") & (frame["metric"] == "top1") & frame["step"].isna()]
    with Store(b) as store:
        original = store.frame(threat="clean", metric="top1")
    assert sorted(clean["value"]) == sorted(original[original["step"].isna()]["value"])  # the first copy kept
    assert "2 conflict" not in out and "1 conflict(s)" in out

    # a rerun of the suite on the merged store recomputes the dropped summary, computing no cell
    _shard(tmp_path, merged, ["ltpa-tiny.digits.s0"])
    with Store(merged) as store:
        assert store.counts()[0] == cells_b


def test_merge_refuses_bad_sources(tmp_path: Path, run_cli) -> None:
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    code, _, err = run_cli("results", "merge", str(foreign), "--into", str(tmp_path / "m.sqlite"))
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.sqlite").exists()
    code, _, err = run_cli("results", "merge", str(tmp_path / "missing.sqlite"), "--into", str(tmp_path / "m.sqlite"))
    assert code == 2 and "no results store" in err
