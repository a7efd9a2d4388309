"""Reading the reference store with sqlite3 alone, for the independent checks under benchmarks/
(not with mgbench's store code, so a bug there cannot hide in the check)."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
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
