"""The results store, column by column, read back with sqlite3 itself (not through the store).

What a cell's rows say, which cell supersedes which, how two copies of a cell are compared when
stores merge, how an older store is migrated (read-only: in a copy) and every one-line error:
expected values are written out here, and JSON text is rebuilt with ``json`` in the test.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mgbench.cellkey import CellKey, canonical_json
from mgbench.errors import InputError
from mgbench.provenance import REPO_ROOT
from mgbench.rows import CellRecord, MetricRow
from mgbench.store import (
    CELL_COLUMNS,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    Store,
    _create_or_migrate,
    export,
    legacy_key,
    signature,
)

PROVENANCE = {
    "config_hash": "cfg", "seed": 3, "versions": {"torch": "2.x", "mgbench": "0.9"}, "git_sha": "abc123",
    "device": "cpu", "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:01:00", "runtime_s": 60.5,
}
DATA = {"dataset": "digits", "split": "test", "preprocessing": "none", "subset": "feed", "n_images": 8}
MODEL = {"model": "net", "arch": "resnet", "weights": "w0"}


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _key(tag: str = "a", version: int = 1, model: dict | None = None, data: dict | None = None,
         options: dict | None = None) -> CellKey:
    condition = {"type": "attack", "version": version, "threat": "linf", "attack": "pgd", "eps": 0.25,
                 "eps_str": "1/4", "steps": 5, "tag": tag}
    return CellKey(condition, data or DATA, model or MODEL, options or {"precision": "bf16", "seed": 3})


def _record(key: CellKey, rows: list[MetricRow], finished: str = "2026-01-01T00:01:00") -> CellRecord:
    return CellRecord(key, suite="attacks", params=1234, config={"z": Path("/d/x"), "a": [2, 3]},
                      provenance={**PROVENANCE, "finished_at": finished}, rows=rows)


def _sql(path: Path, query: str) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(query)]
    finally:
        conn.close()


def test_a_cell_is_stored_column_by_column(store_path: Path) -> None:
    key = _key()
    rows = [MetricRow("robust_top1", 0.25, 0.1, 0.5, 8, step=None, detail={"z": np.int64(1), "b": [0, 1]}),
            MetricRow("robust_top1", 0.5, n=8, step=2), MetricRow("images_per_s", 99.0, detail={})]
    with Store(store_path) as store:
        assert store.write_cell(_record(key, rows))
    [cell] = _sql(store_path, "SELECT * FROM cells")
    assert cell == {
        "cell_key": key.hash, "suite": "attacks", "model": "net", "dataset": "digits",
        "config": '{"a": [2, 3], "z": "/d/x"}', "config_hash": "cfg", "seed": 3, "mgbench_version": "0.9",
        "git_sha": "abc123", "torch_version": "2.x", "versions": '{"mgbench": "0.9", "torch": "2.x"}',
        "device": "cpu", "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:01:00", "runtime_s": 60.5,
        "condition_json": _canonical(key.condition), "data_json": _canonical(DATA), "model_json": _canonical(MODEL),
        "options_json": '{"precision":"bf16","seed":3}', "cell_group": key.group, "precision": "bf16",
    }
    stored = _sql(store_path, "SELECT * FROM results ORDER BY rowid")
    common = {"cell_key": key.hash, "model": "net", "arch": "resnet", "weights": "w0", "params": 1234,
              "dataset": "digits", "split": "test", "preprocessing": "none", "subset": "feed", "threat": "linf",
              "corruption": None, "severity": None, "backend": None, "attack": "pgd", "protocol": None,
              "variant": None, "norm": None, "eps": 0.25, "eps_str": "1/4", "steps": 5, "step_size": None,
              "restarts": None, "random_start": None}
    assert stored == [
        {**common, "step": None, "metric": "robust_top1", "value": 0.25, "ci_low": 0.1, "ci_high": 0.5, "n": 8,
         "detail": '{"b": [0, 1], "z": "1"}'},  # what JSON cannot hold is written as text
        {**common, "step": 2, "metric": "robust_top1", "value": 0.5, "ci_low": None, "ci_high": None, "n": 8,
         "detail": None},
        {**common, "step": None, "metric": "images_per_s", "value": 99.0, "ci_low": None, "ci_high": None,
         "n": None, "detail": None},
    ]


def test_the_joined_frame_its_filters_and_order(store_path: Path) -> None:
    late, early = _key("late"), _key("early", model={**MODEL, "model": "other"})
    with Store(store_path) as store:
        store.write_cell(_record(late, [MetricRow("top1", 0.1), MetricRow("top5", 0.2)],
                                 finished="2026-01-02T00:00:00"))
        store.write_cell(_record(early, [MetricRow("top1", 0.3)], finished="2026-01-01T00:00:00"))
        frame = store.frame()
        assert list(frame.columns) == list(RESULT_COLUMNS) + [
            c for c in CELL_COLUMNS if c not in ("cell_key", "model", "dataset")]
        assert frame["value"].tolist() == [0.3, 0.1, 0.2]  # by finish time, then as written
        assert store.frame(model="net", metric=["top5", "top1"])["value"].tolist() == [0.1, 0.2]
        assert store.frame(model=None, metric="top5")["value"].tolist() == [0.2]  # None: no filter on that column
        assert store.frame(suite="attacks")["value"].tolist() == [0.3, 0.1, 0.2]
        assert store.frame(model=("other",))["value"].tolist() == [0.3]
        assert store.frame(model={"none"}).empty
        assert store.cell_keys() == [early.hash, late.hash]
        assert store.counts() == (2, 3)
        assert store.has_cell(late.hash) and not store.has_cell(_key("absent").hash)
        with pytest.raises(InputError) as error:
            store.frame(colour="red")
        assert str(error.value) == "cannot filter results by 'colour'"


def test_replacing_a_cell_replaces_all_its_rows(store_path: Path) -> None:
    with Store(store_path) as store:
        store.write_cell(_record(_key(), [MetricRow("top1", 0.1), MetricRow("top5", 0.2)]))
        assert not store.write_cell(_record(_key(), [MetricRow("top1", 0.9)]))
        assert store.write_cell(_record(_key(), [MetricRow("top1", 0.9)]), replace=True)
        assert store.frame()[["metric", "value"]].values.tolist() == [["top1", 0.9]]
        assert store.counts() == (1, 1)


def test_copying_a_cell_between_stores(tmp_path: Path) -> None:
    key = _key()
    rows = [MetricRow("top1", 0.5, 0.25, 0.75, 4, detail={"ids": "x"}), MetricRow("top1", 0.25, step=1)]
    with Store(tmp_path / "a.sqlite") as source, Store(tmp_path / "b.sqlite") as target:
        source.write_cell(_record(key, rows))
        cell, stored = source.raw_cell(key.hash)
        assert cell == _sql(tmp_path / "a.sqlite", "SELECT * FROM cells")[0]
        assert stored == _sql(tmp_path / "a.sqlite", "SELECT * FROM results ORDER BY rowid")
        assert source.same_rows(key.hash, rows)  # the connection reads plain tuples again after raw_cell
        assert target.insert_raw(cell, stored)
        assert not target.insert_raw(cell, stored)
        assert target.raw_cell(key.hash) == (cell, stored)
        assert target.counts() == (1, 2)


def test_two_copies_of_a_cell_are_the_same_result_when_their_numbers_are() -> None:
    assert signature([("top1", None, 0.1 + 0.2, 8, None), ("images_per_s", None, 5.0, None, None),
                      ("top1", 1, float("nan"), 8, "{}")]) == {("top1", None, 0.3, 8, None),
                                                                 ("top1", 1, None, 8, "{}")}
    assert signature([("top1", None, None, 1, None)]) == {("top1", None, None, 1, None)}
    assert signature([("top1", None, 0.1234567894, 1)]) == {("top1", None, 0.123456789, 1)}


def test_same_rows_compares_numbers_steps_counts_and_details(store_path: Path) -> None:
    key = _key()
    rows = [MetricRow("top1", 0.5, n=8, detail={"a": 1}), MetricRow("top1", 0.25, n=8, step=1),
            MetricRow("images_per_s", 10.0)]
    with Store(store_path) as store:
        store.write_cell(_record(key, rows))
        assert store.same_rows(key.hash, list(reversed(rows)))
        numpy_detail = _key("numpy")
        store.write_cell(_record(numpy_detail, [MetricRow("top1", 0.5, detail={"ids": np.int64(7)})]))
        assert store.same_rows(numpy_detail.hash, [MetricRow("top1", 0.5, detail={"ids": np.int64(7)})])
        assert store.same_rows(key.hash, [MetricRow("top1", 0.5 + 1e-12, n=8, detail={"a": 1}), rows[1],
                                          MetricRow("images_per_s", 99.0)])  # timing and round-off aside
        for changed in (MetricRow("top1", 0.5, n=7, detail={"a": 1}), MetricRow("top1", 0.5, n=8, detail={"a": 2}),
                        MetricRow("top1", 0.5, n=8, detail={"a": 1}, step=2), MetricRow("top5", 0.5, n=8,
                                                                                           detail={"a": 1}),
                        MetricRow("top1", 0.51, n=8, detail={"a": 1}), MetricRow("top1", 0.5, n=8)):
            assert not store.same_rows(key.hash, [changed, rows[1]]), changed
        assert not store.same_rows(_key("absent").hash, [])  # nothing stored is never "the same"


def test_a_new_code_version_supersedes_only_its_own_cell(store_path: Path) -> None:
    old, new = _key(version=1), _key(version=2)
    neighbours = [_key(version=1, model={**MODEL, "weights": "w1"}), _key(version=1, data={**DATA, "subset": "x"}),
                  _key(version=1, options={"precision": "fp32", "seed": 3}), _key("other", version=1)]
    with Store(store_path) as store:
        for key in [old, *neighbours, new]:
            store.write_cell(_record(key, [MetricRow("top1", 0.5), MetricRow("top5", 0.9)]))
        assert store.drop_superseded(new) == 1
        assert set(store.cell_keys()) == {new.hash, *(k.hash for k in neighbours)}
        assert store.counts() == (5, 10)
        assert store.drop_superseded(new) == 0
        store.delete_cell(new.hash)
        assert store.counts() == (4, 8) and not store.has_cell(new.hash)
    assert _sql(store_path, f"SELECT COUNT(*) AS n FROM results WHERE cell_key = '{new.hash}'") == [{"n": 0}]


def test_a_new_store_file(store_path: Path) -> None:
    with Store(store_path) as store:
        assert store.version == SCHEMA_VERSION == 2
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {r["name"] for r in _sql(store_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"cells", "results"}
    columns = [r["name"] for r in _sql(store_path, "PRAGMA table_info(cells)")]
    assert columns == list(CELL_COLUMNS[:15]) + ["condition_json", "data_json", "model_json", "options_json",
                                                   "cell_group", "precision"]
    assert [r["name"] for r in _sql(store_path, "PRAGMA table_info(results)")] == list(RESULT_COLUMNS)
    empty = store_path.with_name("empty.sqlite")
    empty.touch()
    with Store(empty) as store:  # an empty file is a new store
        assert store.version == 2 and store.counts() == (0, 0)


def _schema(path: Path) -> dict[str, list[tuple]]:
    """Per table: the table and its indexes as SQLite keeps them (the text ``.schema`` prints) and
    every column's name, type, NOT NULL and default; opened immutable, so a committed store is
    never written."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return {table: [*conn.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? ORDER BY name",
                                      (table,)), *conn.execute(f"PRAGMA table_info({table})")]
                for table in ("cells", "results")}
    finally:
        conn.close()


def test_a_new_store_has_the_schema_of_the_committed_stores(store_path: Path) -> None:
    """The results table (its condition columns written from ``CONDITION_COLUMNS``) is the one of
    the schema-1 fixture, and the whole schema the one of the committed reference store."""
    Store(store_path).close()
    new = _schema(store_path)
    assert new["results"] == _schema(Path(__file__).parent / "data" / "store_v1_mgnet.sqlite")["results"]
    reference = REPO_ROOT / "results" / "reference.sqlite"
    if not reference.exists():
        pytest.skip("no results/reference.sqlite in this checkout")
    assert new == _schema(reference)


OLD_CONDITION = {"threat": "linf", "attack": "pgd", "eps": 0.25, "steps": 5}


def _old_store(path: Path, configs: list[tuple[str, dict, str]]) -> None:
    """A schema-0 store: the cells table without the key columns, cells keyed by old hashes."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE cells (cell_key TEXT PRIMARY KEY, suite TEXT NOT NULL, model TEXT NOT NULL, "
                 "dataset TEXT NOT NULL, config TEXT NOT NULL, config_hash TEXT NOT NULL, seed INTEGER, "
                 "mgbench_version TEXT, git_sha TEXT, torch_version TEXT, versions TEXT, device TEXT, "
                 "started_at TEXT, finished_at TEXT, runtime_s REAL)")
    conn.execute(f"CREATE TABLE results ({', '.join(RESULT_COLUMNS)})")
    for old, config, finished in configs:
        conn.execute("INSERT INTO cells (cell_key, suite, model, dataset, config, config_hash, finished_at) "
                     "VALUES (?, 's', 'net', 'digits', ?, 'h', ?)", (old, json.dumps(config), finished))
        conn.execute("INSERT INTO results (cell_key, model, dataset, threat, metric, value) "
                     "VALUES (?, 'net', 'digits', 'linf', 'top1', ?)", (old, float(len(old))))
    conn.commit()
    conn.close()


def test_legacy_keys_of_every_kind_of_old_cell() -> None:
    old_options = {"precision": "fp32", "seed": None}
    base = {"model": MODEL, "data": DATA}
    assert legacy_key({**base, "condition": OLD_CONDITION}) == CellKey(
        {"type": "attack", "version": 1, **OLD_CONDITION}, DATA, MODEL, old_options)
    assert legacy_key({**base, "condition": {"threat": "clean"}, "precision": "bf16", "seed": 2}) == CellKey(
        {"type": "clean", "version": 1, "threat": "clean"}, DATA, MODEL, {"precision": "bf16", "seed": 2})
    corruption = {"threat": "corruption", "corruption": "fog", "severity": 1}
    assert legacy_key({**base, "condition": corruption}) == CellKey(
        {"type": "corruption", "version": 1, **corruption}, DATA, MODEL, old_options)
    assert legacy_key({**base, "condition": {"threat": "compute"}}) == CellKey(
        {"type": "compute", "version": 1, "threat": "compute"}, DATA, MODEL, {})
    means = {"threat": "corruption", "corruptions": "fog,snow"}
    assert legacy_key({**base, "condition": means}) == CellKey(
        {"type": "summary", "of": "corruption", "version": 1, **means}, DATA, MODEL, old_options)
    for attack in ("worst-case", "verdict"):
        summary = {"threat": "linf", "attack": attack, "eps": 0.25}
        assert legacy_key({**base, "condition": summary}) == CellKey(
            {"type": "summary", "of": "attack", "version": 1, **summary}, DATA, MODEL, old_options)


def test_an_old_store_is_rekeyed_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    config = {"model": MODEL, "data": DATA, "condition": OLD_CONDITION}
    other = {"model": MODEL, "data": DATA, "condition": {**OLD_CONDITION, "eps": 0.5}}
    # two old cells with one new key (not written by mgbench, handled anyway): the newest stays
    _old_store(path, [("old-b", config, "2026-01-02"), ("old-aa", config, "2026-01-01"), ("o3", other, "2026-01-03")])
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
    new, third = legacy_key(config), legacy_key(other)
    cells = _sql(path, "SELECT cell_key, finished_at, condition_json, data_json, model_json, options_json, "
                       "cell_group, precision FROM cells ORDER BY finished_at")
    assert cells == [
        {"cell_key": key.hash, "finished_at": finished, "condition_json": _canonical(key.condition),
         "data_json": _canonical(DATA), "model_json": _canonical(MODEL),
         "options_json": '{"precision":"fp32","seed":null}', "cell_group": key.group, "precision": "fp32"}
        for key, finished in ((new, "2026-01-02"), (third, "2026-01-03"))]
    assert _sql(path, "SELECT cell_key, value FROM results ORDER BY rowid") == [
        {"cell_key": new.hash, "value": 5.0}, {"cell_key": third.hash, "value": 2.0}]


def test_an_old_store_opened_read_only_is_migrated_in_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    config = {"model": MODEL, "data": DATA, "condition": OLD_CONDITION}
    _old_store(path, [("old", config, "2026-01-01")])
    before = path.read_bytes()
    store = Store(path, readonly=True)
    copy = store._temp
    assert copy is not None and copy.name == "old.sqlite" and copy.parent.name.startswith("mgbench-store-")
    assert store.version == SCHEMA_VERSION and store.cell_keys() == [legacy_key(config).hash]
    store.close()
    assert not copy.parent.exists() and store._temp is None
    again = Store(path, readonly=True)
    shutil.rmtree(again._temp.parent)  # the temporary copy removed by someone else: closing still works
    again.close()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["old.sqlite"]


def test_a_current_store_opened_read_only_refuses_writes(store_path: Path) -> None:
    with Store(store_path) as store:
        store.write_cell(_record(_key(), [MetricRow("top1", 0.5)]))
    with Store(store_path, readonly=True) as store:
        assert store._temp is None and store.counts() == (1, 1)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.delete_cell(_key().hash)
    with pytest.raises(InputError) as error:
        Store(store_path.with_name("absent.sqlite"), readonly=True)
    assert str(error.value) == f"no results store at {store_path.with_name('absent.sqlite')}: check the path"


def test_files_that_are_not_stores_are_refused_with_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (id INTEGER)")
    conn.execute("CREATE TABLE cells (id INTEGER)")
    conn.commit()
    conn.close()
    for readonly in (False, True):
        with pytest.raises(InputError) as error:
            Store(foreign, readonly=readonly)
        assert str(error.value) == (f"results store {foreign} is a SQLite file of another program (tables: cells, "
                                    "notes): pass an mgbench store or a new file with --store")
    half = tmp_path / "half.sqlite"  # the right tables, not the right columns
    conn = sqlite3.connect(half)
    conn.execute("CREATE TABLE cells (cell_key TEXT, config TEXT)")
    conn.execute("CREATE TABLE results (x INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(InputError, match="of another program"):
        Store(half)
    newer = tmp_path / "newer.sqlite"
    with Store(newer):
        pass
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    with pytest.raises(InputError) as error:
        Store(newer)
    assert str(error.value) == f"results store {newer} has schema 3, newer than this mgbench's 2: update mgbench"
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"plain text, no database" * 100)
    with pytest.raises(InputError) as error:
        Store(junk)
    assert str(error.value) == (f"results store {junk} is not an mgbench SQLite file (file is not a database): "
                                "pass another --store")


def test_store_paths_that_cannot_hold_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def message(path: Path) -> str:
        with pytest.raises(InputError) as error:
            Store(path)
        return str(error.value)

    assert message(tmp_path) == f"results store {tmp_path} is a folder: pass a file path with --store"
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    deep = regular / "a" / "b.sqlite"
    assert message(deep) == f"results store {deep} is under {regular}, which is a file: pass another --store"
    long = tmp_path / ("x" * 300) / "r.sqlite"
    # the file system refuses the name (checking it raises, not only creating it)
    assert message(long) == f"results store {long} cannot be created (File name too long): pass a writable --store"
    if Path("/proc/self").is_dir():  # Linux: no folder can be made in /proc, not even by root
        inside = Path("/proc/mgbench-test/r.sqlite")
        assert message(inside) == f"results store {inside} cannot be created (No such file or directory): " \
                                  "pass a writable --store"
    nested = tmp_path / "new" / "er" / "r.sqlite"
    with Store(nested):  # missing folders are made
        pass
    assert nested.is_file()
    # root may write anywhere, so a read-only folder or file is simulated through os.access
    readonly = "results store {} is not writable (read-only file or folder): pass a writable --store"
    monkeypatch.setattr("mgbench.store.os.access", lambda path, mode: Path(path) != tmp_path / "locked")
    (tmp_path / "locked").mkdir()
    assert message(tmp_path / "locked" / "r.sqlite") == readonly.format(tmp_path / "locked" / "r.sqlite")
    monkeypatch.setattr("mgbench.store.os.access", lambda path, mode: Path(path) != nested)
    assert message(nested) == readonly.format(nested)
    fresh = tmp_path / "fresh.sqlite"
    with Store(fresh):  # a file that does not exist yet is not asked about
        pass


def test_export_writes_through_a_temporary_file(tmp_path: Path) -> None:
    frame = pd.DataFrame({"model": ["a", "b"], "value": [0.5, math.pi]})
    out = export(frame, tmp_path / "new" / "er" / "t.csv", "csv")
    assert out == tmp_path / "new" / "er" / "t.csv"
    assert out.read_text() == f"model,value\na,0.5\nb,{math.pi!r}\n"
    parquet = export(frame, tmp_path / "t.parquet", "parquet")
    assert pd.read_parquet(parquet).equals(frame)
    assert pq.read_schema(parquet).names == ["model", "value"]  # no index column
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "t.parquet"]
    assert [p.name for p in (tmp_path / "new" / "er").iterdir()] == ["t.csv"]
    with pytest.raises(InputError) as error:
        export(frame, tmp_path / "t.xlsx", "xlsx")
    assert str(error.value) == "unknown export format 'xlsx': use csv or parquet"
    assert not (tmp_path / "t.xlsx").exists()


def test_a_migration_runs_once_and_an_unreadable_old_store_is_left_as_it_was(tmp_path: Path) -> None:
    """A second writer that opened an old store while the first migrated it finds it migrated
    (the version is checked again inside the migration's transaction); an old store with a cell
    whose configuration cannot be read is refused with one line and left untouched."""
    path = tmp_path / "new.sqlite"
    with Store(path) as store:
        store.write_cell(_record(_key(), [MetricRow("top1", 0.5)]))
        keys = store.cell_keys()
    conn = sqlite3.connect(path, isolation_level=None)
    _create_or_migrate(conn)  # as a writer that waited for the first one's migration
    conn.close()
    with Store(path) as store:
        assert store.cell_keys() == keys
    bad = tmp_path / "bad.sqlite"
    _old_store(bad, [("good", {"model": MODEL, "data": DATA, "condition": OLD_CONDITION}, "2026-01-01"),
                     ("odd", {"model": MODEL}, "2026-01-02")])
    with pytest.raises(InputError) as error:
        Store(bad)
    assert str(error.value) == ("cell odd of this older results store has an unreadable configuration "
                                "(KeyError: 'condition'), so the store cannot be migrated: pass another --store")
    assert [r["name"] for r in _sql(bad, "PRAGMA table_info(cells)")][-1] == "runtime_s"  # no column added
    assert _sql(bad, "SELECT cell_key FROM cells ORDER BY finished_at") == [{"cell_key": "good"}, {"cell_key": "odd"}]
    assert _sql(bad, "PRAGMA user_version") == [{"user_version": 0}]


@pytest.mark.parametrize("target, error, message", [
    ("mgbench.store.sqlite3.connect", "unable to open database file",
     "cannot be opened (unable to open database file)"),
    ("mgbench.store._create_or_migrate", "attempt to write a readonly database",
     "cannot be written (attempt to write a readonly database)"),
])
def test_a_store_sqlite_cannot_open_or_write_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str,
                                                        error: str, message: str) -> None:
    def refuse(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError(error)

    monkeypatch.setattr(target, refuse)
    with pytest.raises(InputError) as raised:
        Store(tmp_path / "r.sqlite")
    assert str(raised.value) == f"results store {tmp_path / 'r.sqlite'} {message}: pass a writable --store"


def test_canonical_json_is_key_order_free_compact_and_writes_other_values_as_text() -> None:
    """Cell keys hash this text: equal objects in any key order give equal text; values JSON
    cannot hold (a path, a numpy integer) are written as their text instead of failing."""
    assert canonical_json({"b": Path("/d/x"), "a": [np.int64(3), 0.5]}) == '{"a":["3",0.5],"b":"/d/x"}'
    assert canonical_json({"z": 1, "y": {"b": 2, "a": 1}}) == canonical_json({"y": {"a": 1, "b": 2}, "z": 1})
