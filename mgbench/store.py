"""The tidy results store: one SQLite file, one row per model x dataset x condition x metric.

A *cell* is one model x dataset x condition evaluated once; its rows are written in a single
transaction together with the cell's provenance, so a run killed at any moment (even SIGKILL)
leaves either the whole cell or nothing. A cell's identity is its :class:`~mgbench.cellkey.CellKey`:
the ``cells`` table keeps the key's canonical JSON columns (condition, data, model, run
options), which are the truth; the wide condition columns of ``results`` are a copy for pandas
users. Re-running a suite skips cells whose key is already stored, unless ``force`` is set, in
which case the old rows are replaced in the same transaction.

Several writers may share a store (processes, ranks, jobs on a file system with SQLite
locking): WAL journal, a busy timeout, and a cell finished by another writer in the meantime
is kept, never written twice. The schema's version is ``PRAGMA user_version``; older mgbench
stores are migrated in place when opened, and a SQLite file that is not an mgbench store is
refused untouched.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from mgbench.cellkey import CONDITION_COLUMN_TYPES, CONDITION_COLUMNS, CellKey, compute_key, run_options, summary_key
from mgbench.errors import InputError, refuse_under_a_file
from mgbench.provenance import REPO_ROOT
from mgbench.rows import CellRecord, MetricRow

# A git-ignored local store: a trial run never touches the committed reference results
# (results/reference.sqlite, written only by `make reference`).
DEFAULT_STORE = Path("results") / "local.sqlite"
REFERENCE_STORE = REPO_ROOT / "results" / "reference.sqlite"

SCHEMA_VERSION = 2  # 0/1: mgbench <= 0.x stores without canonical key columns

# The results table's condition columns are written from CONDITION_COLUMN_TYPES, so that they
# cannot drift from the key's wide columns.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    cell_key TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    seed INTEGER,
    mgbench_version TEXT,
    git_sha TEXT,
    torch_version TEXT,
    versions TEXT,
    device TEXT,
    started_at TEXT,
    finished_at TEXT,
    runtime_s REAL,
    condition_json TEXT,
    data_json TEXT,
    model_json TEXT,
    options_json TEXT,
    cell_group TEXT,
    precision TEXT
);
CREATE TABLE IF NOT EXISTS results (
    cell_key TEXT NOT NULL REFERENCES cells(cell_key) ON DELETE CASCADE,
    model TEXT NOT NULL,
    arch TEXT,
    weights TEXT,
    params INTEGER,
    dataset TEXT NOT NULL,
    split TEXT,
    preprocessing TEXT,
    subset TEXT,
{condition_columns}
    step INTEGER,
    metric TEXT NOT NULL,
    value REAL,
    ci_low REAL,
    ci_high REAL,
    n INTEGER,
    detail TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS results_unique ON results(cell_key, metric, IFNULL(step, -1));
CREATE INDEX IF NOT EXISTS results_model ON results(model, dataset, threat);
""".format(condition_columns="\n".join(f"    {name} {sql}," for name, sql in CONDITION_COLUMN_TYPES.items()))

# Columns that schema 2 added to the cells table (the migration adds them to older stores).
KEY_COLUMNS = ("condition_json", "data_json", "model_json", "options_json", "cell_group", "precision")

RESULT_COLUMNS = (
    "cell_key", "model", "arch", "weights", "params", "dataset", "split", "preprocessing", "subset",
    *CONDITION_COLUMNS, "step", "metric", "value", "ci_low", "ci_high", "n", "detail",
)
CELL_COLUMNS = (
    "cell_key", "suite", "model", "dataset", "config", "config_hash", "seed", "mgbench_version",
    "git_sha", "torch_version", "versions", "device", "started_at", "finished_at", "runtime_s", *KEY_COLUMNS,
)


_DATA_COLUMNS = ("dataset", "split", "preprocessing", "subset")


class Store:
    """A results database. Opening creates the file and schema if needed and migrates an older
    mgbench store; ``readonly`` never writes to the file (an older store is migrated in a
    temporary copy)."""

    def __init__(self, path: str | Path = DEFAULT_STORE, *, readonly: bool = False):
        self.path = Path(path)
        self._temp: Path | None = None
        if readonly:
            self._conn = self._open_readonly()
            return
        _check_writable(self.path)
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"results store {self.path} cannot be opened ({exc}): pass a writable --store") from exc
        try:
            version = _inspect(self._conn, self.path)
            # WAL: readers never block the writer, and a commit is one append. With
            # synchronous=NORMAL a killed process loses no committed cell (only a power cut could
            # lose the last ones) and a cell is never torn.
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if version < SCHEMA_VERSION:
                _create_or_migrate(self._conn)
        except sqlite3.OperationalError as exc:
            self._conn.close()
            raise InputError(f"results store {self.path} cannot be written ({exc}): pass a writable --store") from exc
        except BaseException:
            self._conn.close()
            raise

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise InputError(f"no results store at {self.path}: check the path")
        conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, timeout=60, isolation_level=None)
        try:
            version = _inspect(conn, self.path)
        except BaseException:
            conn.close()
            raise
        if version >= SCHEMA_VERSION:
            return conn
        conn.close()
        folder = Path(tempfile.mkdtemp(prefix="mgbench-store-"))
        self._temp = folder / self.path.name
        shutil.copyfile(self.path, self._temp)
        conn = sqlite3.connect(self._temp, timeout=60, isolation_level=None)
        _create_or_migrate(conn)
        return conn

    @property
    def version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._conn.close()
        if self._temp is not None:
            shutil.rmtree(self._temp.parent, ignore_errors=True)
            self._temp = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_cell(self, cell_key: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM cells WHERE cell_key = ?", (cell_key,)).fetchone()
        return row is not None

    def write_cell(self, record: CellRecord, *, replace: bool = False) -> bool:
        """Write a cell and its rows atomically (one transaction). Without ``replace``, a cell
        that another writer stored in the meantime is kept as it is: returns False."""
        key = record.key
        cell_values = {
            "cell_key": key.hash,
            "suite": record.suite,
            "model": key.model["model"],
            "dataset": key.data["dataset"],
            "config": json.dumps(record.config, sort_keys=True, default=str),
            "seed": key.options.get("seed"),
            "precision": key.options.get("precision"),
            **_provenance_columns(record.provenance),
            **key.canonical(),
        }
        base = {**key.model, "params": record.params, **{k: key.data.get(k) for k in _DATA_COLUMNS},
                **key.columns(), "cell_key": key.hash}
        result_rows = []
        for row in record.rows:
            values = {
                **base,
                "step": row.step,
                "metric": row.metric,
                "value": row.value,
                "ci_low": row.ci_low,
                "ci_high": row.ci_high,
                "n": row.n,
                "detail": json.dumps(row.detail, sort_keys=True, default=str) if row.detail else None,
            }
            result_rows.append(tuple(values.get(c) for c in RESULT_COLUMNS))
        with self._transaction() as conn:
            if self.has_cell(key.hash):
                if not replace:
                    return False
                conn.execute("DELETE FROM results WHERE cell_key = ?", (key.hash,))
                conn.execute("DELETE FROM cells WHERE cell_key = ?", (key.hash,))
            self._insert(cell_values, result_rows)
        return True

    def _insert(self, cell_values: dict[str, Any], result_rows: list[tuple[Any, ...]]) -> None:
        self._conn.execute(
            f"INSERT INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({', '.join('?' * len(CELL_COLUMNS))})",
            tuple(cell_values.get(c) for c in CELL_COLUMNS),
        )
        self._conn.executemany(
            f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) VALUES ({', '.join('?' * len(RESULT_COLUMNS))})",
            result_rows,
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; taken at once (IMMEDIATE) so two writers queue, not deadlock."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(conn)
            if not _disk_error(exc):
                raise
            raise _disk_full(self.path, exc) from exc
        except BaseException:
            _rollback(conn)
            raise

    def raw_cell(self, cell_key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A stored cell's row of the cells table and its result rows, as stored (for merging)."""
        self._conn.row_factory = sqlite3.Row
        try:
            cell = dict(self._conn.execute("SELECT * FROM cells WHERE cell_key = ?", (cell_key,)).fetchone())
            rows = [dict(r) for r in self._conn.execute(
                "SELECT * FROM results WHERE cell_key = ? ORDER BY rowid", (cell_key,))]
        finally:
            self._conn.row_factory = None
        return cell, rows

    def insert_raw(self, cell: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
        """Copy a cell read by :meth:`raw_cell` (False when its key is stored already)."""
        with self._transaction():
            if self.has_cell(cell["cell_key"]):
                return False
            self._insert(cell, [tuple(r.get(c) for c in RESULT_COLUMNS) for r in rows])
        return True

    def same_rows(self, cell_key: str, rows: list[MetricRow]) -> bool:
        """Whether the stored cell holds exactly these numbers (and details)."""
        stored = self._conn.execute("SELECT metric, step, value, n, detail FROM results WHERE cell_key = ?",
                                    (cell_key,)).fetchall()
        mine = [(r.metric, r.step, r.value, r.n, json.dumps(r.detail, sort_keys=True, default=str) if r.detail
                 else None) for r in rows]
        return bool(stored) and signature(stored) == signature(mine)

    def drop_superseded(self, key: CellKey) -> int:
        """Delete the cells that ``key`` supersedes: the same condition, model, data and run
        options under another version of the code (for derived cells, which are recomputed)."""
        canonical = key.canonical()
        with self._transaction() as conn:
            old = [row[0] for row in conn.execute(
                "SELECT cell_key FROM cells WHERE cell_group = ? AND model_json = ? AND data_json = ? "
                "AND options_json = ? AND cell_key != ?",
                (canonical["cell_group"], canonical["model_json"], canonical["data_json"], canonical["options_json"],
                 key.hash))]
            for cell_key in old:
                conn.execute("DELETE FROM results WHERE cell_key = ?", (cell_key,))
                conn.execute("DELETE FROM cells WHERE cell_key = ?", (cell_key,))
        return len(old)

    def delete_cell(self, cell_key: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM results WHERE cell_key = ?", (cell_key,))
            conn.execute("DELETE FROM cells WHERE cell_key = ?", (cell_key,))

    def frame(self, **filters: Any) -> pd.DataFrame:
        """All result rows joined with their cell's provenance and canonical key columns,
        optionally filtered by equality on any column (a list value means "one of")."""
        columns = [f"r.{c}" for c in RESULT_COLUMNS] + [
            f"c.{c}" for c in CELL_COLUMNS if c not in ("cell_key", "model", "dataset")
        ]
        where, params = [], []
        for key, value in filters.items():
            if value is None:
                continue
            if key not in RESULT_COLUMNS and key not in CELL_COLUMNS:
                raise InputError(f"cannot filter results by {key!r}")
            table = "r" if key in RESULT_COLUMNS else "c"
            values = list(value) if isinstance(value, (list, tuple, set)) else [value]
            where.append(f"{table}.{key} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        sql = f"SELECT {', '.join(columns)} FROM results r JOIN cells c USING (cell_key)"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY c.finished_at, r.rowid"
        return pd.read_sql_query(sql, self._conn, params=params)

    def summary_cells(self, data_json: str, options_json: str) -> list[tuple[str, dict[str, Any], str]]:
        """(cell key, condition, model JSON) of every stored summary cell on this data under
        these run options, oldest first."""
        found = self._conn.execute(
            "SELECT cell_key, condition_json, model_json FROM cells WHERE data_json = ? AND options_json = ? "
            "AND condition_json LIKE '%\"type\":\"summary\"%' ORDER BY finished_at", (data_json, options_json))
        out = []
        for cell_key, condition_json, model_json in found:
            condition = json.loads(condition_json)
            if condition.get("type") == "summary":
                out.append((cell_key, condition, model_json))
        return out

    def timings(self) -> list[dict[str, Any]]:
        """Every stored cell's timing: its model's architecture, its condition key, its image
        count and the ``images_per_s`` row's detail (seconds, threads, batch size, load, CPU share)."""
        query = ("SELECT r.arch, c.condition_json, c.device, r.n, r.detail FROM cells c JOIN results r "
                 "USING (cell_key) WHERE r.metric = 'images_per_s' AND c.condition_json IS NOT NULL")
        return [{"arch": arch, "condition": json.loads(condition), "device": device, "images": n,
                 **json.loads(detail or "{}")}
                for arch, condition, device, n, detail in self._conn.execute(query)]

    def cell_keys(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT cell_key FROM cells ORDER BY finished_at")]

    def counts(self) -> tuple[int, int]:
        cells = self._conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        rows = self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return cells, rows


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so (it does after some
    errors of COMMIT itself)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _disk_full(path: Path, exc: sqlite3.OperationalError) -> InputError:
    return InputError(f"results store {path} cannot be written ({exc}; is the disk full?): the store is intact, "
                      "with every cell finished before this one; free space and rerun the same command, which "
                      "resumes there")


def _disk_error(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed to write the file (full disk, file size limit, I/O error)."""
    text = str(exc).lower()
    return "disk" in text or "full" in text or "i/o" in text


def signature(rows: list[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """What must agree for two copies of a cell to be the same result: (metric, step, value, n,
    ...) per row, values rounded to 9 digits, throughput (a timing) left out."""
    def rounded(value: Any) -> Any:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 9)

    return {(row[0], row[1], rounded(row[2]), *row[3:]) for row in rows if row[0] != "images_per_s"}


def _provenance_columns(prov: dict[str, Any]) -> dict[str, Any]:
    return {
        "config_hash": prov["config_hash"],
        "mgbench_version": prov["versions"]["mgbench"],
        "git_sha": prov["git_sha"],
        "torch_version": prov["versions"]["torch"],
        "versions": json.dumps(prov["versions"], sort_keys=True),
        "device": prov["device"],
        "started_at": prov["started_at"],
        "finished_at": prov["finished_at"],
        "runtime_s": prov["runtime_s"],
    }


def _check_writable(path: Path) -> None:
    """One-line errors for a store path that cannot hold a file, before SQLite is asked."""
    try:
        if path.is_dir():
            raise InputError(f"results store {path} is a folder: pass a file path with --store")
        refuse_under_a_file(path, f"results store {path}", "another --store")
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # also from the checks: a name too long for the file system, a loop of links
        raise InputError(f"results store {path} cannot be created ({exc.strerror}): pass a writable --store") from exc
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"results store {path} is not writable (read-only file or folder): "
                         "pass a writable --store")


def _inspect(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of an mgbench store (0 for an empty file); anything else is refused
    without a single write."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if _disk_error(exc):
            raise _disk_full(path, exc) from exc
        raise InputError(f"results store {path} is not an mgbench SQLite file ({exc}): pass another --store") \
            from exc
    except sqlite3.DatabaseError as exc:
        raise InputError(f"results store {path} is not an mgbench SQLite file ({exc}): pass another --store") \
            from exc
    if not tables:
        return 0
    columns = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
    if not {"cells", "results"} <= tables or not {"cell_key", "config", "suite"} <= columns:
        raise InputError(f"results store {path} is a SQLite file of another program (tables: "
                         f"{', '.join(sorted(tables))}): pass an mgbench store or a new file with --store")
    if version > SCHEMA_VERSION:
        raise InputError(f"results store {path} has schema {version}, newer than this mgbench's "
                         f"{SCHEMA_VERSION}: update mgbench")
    return version


def _create_or_migrate(conn: sqlite3.Connection) -> None:
    """Create the schema, or migrate an older store to it (in one transaction; a second writer
    that opens the store meanwhile waits and then finds it migrated)."""
    conn.execute("PRAGMA foreign_keys = OFF")  # cell keys change in both tables
    conn.execute("BEGIN IMMEDIATE")
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
            existing = {row[1] for row in conn.execute("PRAGMA table_info(cells)")}
            if existing:
                for column in KEY_COLUMNS:
                    if column not in existing:
                        conn.execute(f"ALTER TABLE cells ADD COLUMN {column} TEXT")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if existing:
                _rekey(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    conn.execute("PRAGMA foreign_keys = ON")


# Before schema 2, no condition type had a version: its cells are those of version 1.
_LEGACY_VERSION = 1


def legacy_key(config: dict[str, Any]) -> CellKey:
    """The key of a cell written before schema 2, from its stored configuration."""
    condition = dict(config["condition"])
    model, data = config["model"], config["data"]
    options = run_options(config.get("precision", "fp32"), config.get("seed"))
    threat = condition.get("threat")
    if threat == "compute":
        return compute_key(model, data)
    if "corruptions" in condition:
        return summary_key("corruption", _LEGACY_VERSION, condition, model, data, options)
    if condition.get("attack") in ("worst-case", "verdict"):
        return summary_key("attack", _LEGACY_VERSION, condition, model, data, options)
    kind = threat if threat in ("clean", "corruption") else "attack"
    return CellKey({"type": kind, "version": _LEGACY_VERSION, **condition}, data, model, options)


def _rekey(conn: sqlite3.Connection) -> None:
    """Give every cell of an older store its schema-2 key and canonical columns. Two old cells
    with one new key (impossible for cells written by mgbench, kept for safety) keep the newest."""
    cells = conn.execute("SELECT cell_key, config, finished_at FROM cells ORDER BY finished_at").fetchall()
    seen: set[str] = set()
    for old, config, _ in cells:
        try:
            key = legacy_key(json.loads(config))
        except (ValueError, KeyError, TypeError) as exc:  # not a configuration mgbench wrote
            raise InputError(f"cell {old} of this older results store has an unreadable configuration "
                             f"({exc.__class__.__name__}: {exc}), so the store cannot be migrated: "
                             "pass another --store") from exc
        new = key.hash
        if new in seen:
            conn.execute("DELETE FROM results WHERE cell_key = ?", (new,))
            conn.execute("DELETE FROM cells WHERE cell_key = ?", (new,))
        seen.add(new)
        canonical = key.canonical()
        conn.execute(
            f"UPDATE cells SET cell_key = ?, precision = ?, {', '.join(f'{c} = ?' for c in canonical)} "
            "WHERE cell_key = ?",
            (new, key.options.get("precision"), *canonical.values(), old),
        )
        conn.execute("UPDATE results SET cell_key = ? WHERE cell_key = ?", (new, old))


def export(frame: pd.DataFrame, out: Path, fmt: str) -> Path:
    """Write a results frame as CSV or Parquet (via a temporary file, then rename; a failure
    removes the temporary file and leaves ``out`` as it was)."""
    if fmt not in ("csv", "parquet"):
        raise InputError(f"unknown export format {fmt!r}: use csv or parquet")
    if str(out) in ("", "."):
        raise InputError("--out names no file: pass a file path")
    try:
        if out.is_dir():
            raise InputError(f"--out {out} is a folder: pass a file path, e.g. {out / ('results.' + fmt)}")
        refuse_under_a_file(out, f"--out {out}", "another file path")
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out} cannot be created ({exc.strerror}): pass a writable file path") from exc
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    except OSError as exc:
        raise InputError(f"--out {out} cannot be written ({exc.strerror or exc}): pass a writable file path") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out
