"""Merging stores written by separate jobs (a Slurm array, several machines) into one.

A cell is identified by its key (:mod:`mgbench.cellkey`), so the same cell computed by two
jobs has one key: identical copies are stored once, and copies whose numbers differ are
reported and the first one kept. Summary cells (corruption means, worst cases, verdicts) are
functions of the cells they cover: a summary that the sources agree on is kept; one they
disagree on (each job summarised its own share) is dropped and reported, and rerunning the
suite on the merged store recomputes it from every merged cell (the cells themselves are cached).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgbench.errors import InputError
from mgbench.store import Store, signature


@dataclass
class MergeReport:
    copied: int = 0
    identical: int = 0
    conflicts: list[str] = field(default_factory=list)
    summaries_dropped: list[str] = field(default_factory=list)


def _numbers(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return signature([(r["metric"], r["step"], r["value"], r["n"]) for r in rows])


def _describe(cell: dict[str, Any]) -> str:
    condition = json.loads(cell["condition_json"])
    shown = {k: v for k, v in condition.items() if k not in ("version",) and v is not None}
    return f"{cell['model']} on {cell['dataset']} {shown} ({cell['cell_key']})"


def merge(sources: list[Path], into: Path) -> MergeReport:
    """Merge ``sources`` into ``into`` (created when missing; its own cells count as the first
    source). The sources are only read."""
    if not sources:
        raise InputError("results merge needs at least one store to merge: pass A.sqlite B.sqlite ...")
    for source in sources:
        if not source.is_file():
            raise InputError(f"no results store at {source}: check the path")
        if into.exists() and source.resolve() == into.resolve():
            raise InputError(f"{source} is both a source and --into: merge into a new file")
    opened = [Store(source, readonly=True) for source in sources]  # validates every source first
    report = MergeReport()
    try:
        with Store(into) as target:
            summaries: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
            for key in target.cell_keys():
                cell, rows = target.raw_cell(key)
                if json.loads(cell["condition_json"])["type"] == "summary":
                    summaries.setdefault(key, []).append((cell, rows))
            for source, store in zip(sources, opened):
                for key in store.cell_keys():
                    cell, rows = store.raw_cell(key)
                    if json.loads(cell["condition_json"])["type"] == "summary":
                        summaries.setdefault(key, []).append((cell, rows))
                    elif target.insert_raw(cell, rows):
                        report.copied += 1
                    elif _numbers(target.raw_cell(key)[1]) == _numbers(rows):
                        report.identical += 1
                    else:
                        report.conflicts.append(f"{_describe(cell)}: {source} differs from the copy kept")
            for key, copies in summaries.items():
                if len({frozenset(_numbers(rows)) for _, rows in copies}) > 1:
                    target.delete_cell(key)
                    report.summaries_dropped.append(_describe(copies[0][0]))
                elif target.insert_raw(*copies[0]):
                    report.copied += 1
    finally:
        for store in opened:
            store.close()
    return report
