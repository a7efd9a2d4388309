"""The tidy results store: one SQLite file, one row per model x dataset x condition x metric.

A *cell* is one model x dataset x condition evaluated once; its rows are written in a single
transaction together with the cell's provenance, so a run killed at any moment (even SIGKILL)
leaves either the whole cell or nothing. Re-running a suite skips cells whose key is already
stored, unless ``force`` is set, in which case the old rows are replaced in the same
transaction. Leaderboards, exports and the regression guard read from :meth:`Store.frame`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mgbench.errors import InputError

DEFAULT_STORE = Path("results") / "mgbench.sqlite"

# Condition columns: what was done to the inputs. Unused ones stay NULL.
CONDITION_COLUMNS = (
    "threat",        # clean | corruption | linf | l2 | compute
    "corruption", "severity", "backend",
    "attack", "protocol", "variant", "norm", "eps", "eps_str", "steps", "step_size", "restarts",
    "random_start",
)

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
    runtime_s REAL
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
    threat TEXT NOT NULL,
    corruption TEXT,
    severity INTEGER,
    backend TEXT,
    attack TEXT,
    protocol TEXT,
    variant TEXT,
    norm TEXT,
    eps REAL,
    eps_str TEXT,
    steps INTEGER,
    step_size REAL,
    restarts INTEGER,
    random_start INTEGER,
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
"""

RESULT_COLUMNS = (
    "cell_key", "model", "arch", "weights", "params", "dataset", "split", "preprocessing", "subset",
    *CONDITION_COLUMNS, "step", "metric", "value", "ci_low", "ci_high", "n", "detail",
)
CELL_COLUMNS = (
    "cell_key", "suite", "model", "dataset", "config", "config_hash", "seed", "mgbench_version",
    "git_sha", "torch_version", "versions", "device", "started_at", "finished_at", "runtime_s",
)


@dataclass
class MetricRow:
    """One measured number. ``step`` is the glimpse/step t for anytime models (None = final)."""

    metric: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    step: int | None = None
    detail: dict[str, Any] | None = None


@dataclass
class CellRecord:
    """Everything written for one finished cell."""

    cell_key: str
    suite: str
    identity: dict[str, Any]     # model, arch, weights, params
    data: dict[str, Any]         # dataset, split, preprocessing, subset
    condition: dict[str, Any]    # a subset of CONDITION_COLUMNS
    config: dict[str, Any]       # the full configuration that produced the numbers
    provenance: dict[str, Any]   # seed, versions, git_sha, device, times
    rows: list[MetricRow] = field(default_factory=list)


class Store:
    """A results database. Opening creates the file and schema if needed."""

    def __init__(self, path: str | Path = DEFAULT_STORE):
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise InputError(f"results store {self.path} is a folder: pass a file path with --store")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA foreign_keys = ON")
            # WAL: readers never block the writer, and a commit is one append. With
            # synchronous=NORMAL a killed process loses no committed cell (only a power cut could
            # lose the last ones) and a cell is never torn.
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"results store {self.path} is not an mgbench SQLite file ({exc})") from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_cell(self, cell_key: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM cells WHERE cell_key = ?", (cell_key,)).fetchone()
        return row is not None

    def write_cell(self, record: CellRecord, *, replace: bool = False) -> None:
        """Write a cell and its rows atomically (one transaction)."""
        prov = record.provenance
        cell_values = {
            "cell_key": record.cell_key,
            "suite": record.suite,
            "model": record.identity["model"],
            "dataset": record.data["dataset"],
            "config": json.dumps(record.config, sort_keys=True, default=str),
            "config_hash": prov["config_hash"],
            "seed": prov.get("seed"),
            "mgbench_version": prov["versions"]["mgbench"],
            "git_sha": prov["git_sha"],
            "torch_version": prov["versions"]["torch"],
            "versions": json.dumps(prov["versions"], sort_keys=True),
            "device": prov["device"],
            "started_at": prov["started_at"],
            "finished_at": prov["finished_at"],
            "runtime_s": prov["runtime_s"],
        }
        base = {**record.identity, **record.data, **record.condition, "cell_key": record.cell_key}
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
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if replace:
                conn.execute("DELETE FROM results WHERE cell_key = ?", (record.cell_key,))
                conn.execute("DELETE FROM cells WHERE cell_key = ?", (record.cell_key,))
            conn.execute(
                f"INSERT INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({', '.join('?' * len(CELL_COLUMNS))})",
                tuple(cell_values[c] for c in CELL_COLUMNS),
            )
            conn.executemany(
                f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) VALUES ({', '.join('?' * len(RESULT_COLUMNS))})",
                result_rows,
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def frame(self, **filters: Any) -> pd.DataFrame:
        """All result rows joined with their cell's provenance, optionally filtered by
        equality on any column (a list value means "one of")."""
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

    def cell_keys(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT cell_key FROM cells")]

    def counts(self) -> tuple[int, int]:
        cells = self._conn.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
        rows = self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return cells, rows


def export(frame: pd.DataFrame, out: Path, fmt: str) -> Path:
    """Write a results frame as CSV or Parquet (via a temporary file, then rename)."""
    if fmt not in ("csv", "parquet"):
        raise InputError(f"unknown export format {fmt!r}: use csv or parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    return out

