"""Merging stores written by separate jobs (a Slurm array, several machines) into one.

A cell is identified by its key (:mod:`mgbench.cellkey`), so the same cell computed by two
jobs has one key: identical copies are stored once, and copies whose numbers differ are
reported and the first one kept. Summary cells (corruption means and mCE, worst cases,
verdicts) are functions of the cells they cover, so the merge recomputes every summary of the
current code version from all merged cells, with the summariser the runner uses (its tables
rebuilt from the stored summary keys, the verdict's model facts read from a stored verdict).
A summary it cannot recompute (an older code version, a verdict stored without its facts) is
kept when the sources agree on it, and dropped and reported when they disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mgbench.cellkey import CellKey
from mgbench.conditions import summariser, summary_version
from mgbench.errors import InputError
from mgbench.provenance import now_iso
from mgbench.rows import CellRecord, MetricRow
from mgbench.runner import cell_provenance, restate
from mgbench.store import Store, signature

Copy = tuple[dict[str, Any], list[dict[str, Any]]]


@dataclass
class MergeReport:
    copied: int = 0
    identical: int = 0
    conflicts: list[str] = field(default_factory=list)
    summaries_recomputed: int = 0
    summaries_dropped: list[str] = field(default_factory=list)
    not_recomputed: list[str] = field(default_factory=list)  # groups whose settings no longer parse


def _numbers(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return signature([(r["metric"], r["step"], r["value"], r["n"]) for r in rows])


def _describe(cell: dict[str, Any]) -> str:
    condition = json.loads(cell["condition_json"])
    shown = {k: v for k, v in condition.items() if k not in ("version",) and v is not None}
    return f"{cell['model']} on {cell['dataset']} {shown} ({cell['cell_key']})"


def _recompute(target: Store, group: tuple[str, str, str, str], copies: list[Copy], sources: list[Path]) -> set[str]:
    """Recompute one model's summaries of one kind on one data and run options; the keys written."""
    kind, model_json, data_json, options_json = group
    model, data, options = json.loads(model_json), json.loads(data_json), json.loads(options_json)
    keys = [json.loads(cell["condition_json"]) for cell, _ in copies]
    params = next((r["params"] for _, rows in copies for r in rows if r.get("params") is not None), None)
    written = set()
    for key, rows in restate(target, kind, model, data, options, keys):
        written.add(key.hash)
        if not target.same_rows(key.hash, rows):
            _write(target, key, rows, params, sources)
    return written


def _write(target: Store, key: CellKey, rows: list[MetricRow], params: int | None, sources: list[Path]) -> None:
    config = {"suite": "merge", "sources": [str(s) for s in sources], "model": key.model, "data": key.data,
              "condition": key.condition, "seed": key.options.get("seed")}
    provenance = cell_provenance(config, key.options.get("seed", 0), torch.device("cpu"), now_iso(), 0.0)
    target.write_cell(CellRecord(key, "merge", params, config, provenance, rows), replace=True)


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
            summaries: dict[str, list[Copy]] = {}
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
            groups: dict[tuple[str, str, str, str], list[Copy]] = {}
            for copies in summaries.values():
                target.insert_raw(*copies[0])  # a first copy, replaced below where recomputed
                cell = copies[0][0]
                condition = json.loads(cell["condition_json"])
                kind = condition["of"]
                if summariser(kind) is not None and condition["version"] == summary_version(kind):
                    group = (kind, cell["model_json"], cell["data_json"], cell["options_json"])
                    groups.setdefault(group, []).extend(copies)
            recomputed: set[str] = set()
            for group, copies in groups.items():
                try:
                    recomputed |= _recompute(target, group, copies, sources)
                except InputError as exc:  # e.g. a folder-backed set whose folder is not on this machine
                    report.not_recomputed.append(f"{group[0]} summaries of {json.loads(group[1])['model']}: {exc}")
            report.summaries_recomputed = len(recomputed)
            for key, copies in summaries.items():
                if key not in recomputed and len({frozenset(_numbers(rows)) for _, rows in copies}) > 1:
                    target.delete_cell(key)
                    report.summaries_dropped.append(_describe(copies[0][0]))
    finally:
        for store in opened:
            store.close()
    return report
