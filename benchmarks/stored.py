"""Reading the reference store with sqlite3 alone, for the independent checks under benchmarks/
(not with mgbench's store code, so a bug there cannot hide in the check)."""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def per_example(examples: dict[str, Any]) -> dict[int, bool]:
    """A stored per-example bitset (``packbits-base64/v1``: the members of ``size`` dataset
    indices, then whether each member was classified correctly) as {dataset index: correct}."""
    assert examples["encoding"] == "packbits-base64/v1", examples["encoding"]
    size = int(examples["size"])
    members = np.unpackbits(np.frombuffer(base64.b64decode(examples["members"]), np.uint8), count=size).astype(bool)
    member_ids = np.flatnonzero(members)
    correct = np.unpackbits(np.frombuffer(base64.b64decode(examples["correct"]), np.uint8),
                            count=len(member_ids)).astype(bool)
    return dict(zip(member_ids.tolist(), correct.tolist()))


def query(store: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the store, opened read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return db.execute(sql, args).fetchall()


def detail(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def write_rows(out: Path, rows: list[dict[str, Any]], replaces: Callable[[dict[str, str]], bool]) -> None:
    """Write ``rows`` to the CSV ``out``, keeping the rows already there that ``replaces`` does not
    match: each script run recomputes some models (a long run each), not the whole file."""
    if out.exists():
        with out.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if not replaces(row)] + rows
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[-1]), restval="")
        writer.writeheader()
        writer.writerows(rows)
