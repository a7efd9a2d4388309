"""Cell keys do not move: every cell of the committed reference store (results/reference.sqlite,
opened read-only) is found by the current code as already computed.

Two checks: each stored key is recomputed from its stored canonical parts (condition, data, model,
run options; the hash, the leaderboard group, the canonical text and the wide condition columns),
and the keys the runner computes today for the suite that wrote the cells (conditions expanded from
the suite file, models loaded from their cards, the suite's data, the stored run options) include
every stored cell of that suite. A refactor that moves a key fails here; a change that must move
keys migrates the store (``mgbench/store.py``) instead of recomputing it."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

import pytest

from mgbench.cellkey import CONDITION_COLUMNS, CellKey, canonical_json, compute_key
from mgbench.conditions import condition_types
from mgbench.errors import InputError
from mgbench.provenance import REPO_ROOT
from mgbench.runner import RunOptions, prepare
from mgbench.suites import load_suite

REFERENCE = REPO_ROOT / "results" / "reference.sqlite"
CANONICAL = ("condition_json", "data_json", "model_json", "options_json")


def _cells() -> list[dict]:
    if not REFERENCE.exists():
        pytest.skip("no results/reference.sqlite in this checkout")
    # immutable: never a write, a journal or a WAL file, whatever the store's journal mode
    conn = sqlite3.connect(f"file:{REFERENCE}?immutable=1", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        cells = [dict(row) for row in conn.execute("SELECT * FROM cells ORDER BY cell_key")]
        columns = ", ".join(CONDITION_COLUMNS)
        wide = defaultdict(set)
        for row in conn.execute(f"SELECT cell_key, {columns} FROM results"):
            wide[row[0]].add(tuple(row[1:]))
    finally:
        conn.close()
    assert cells, "the reference store holds no cell"
    for cell in cells:
        cell["wide"] = wide[cell["cell_key"]]
    return cells


def _key(cell: dict) -> CellKey:
    return CellKey(*(json.loads(cell[column]) for column in CANONICAL))


def test_every_stored_key_is_recomputed_from_its_canonical_parts() -> None:
    for cell in _cells():
        key = _key(cell)
        assert key.hash == cell["cell_key"], cell["condition_json"]
        assert key.canonical() == {**{c: cell[c] for c in CANONICAL}, "cell_group": cell["cell_group"]}
        columns = key.columns()
        assert cell["wide"] == {tuple(columns.get(c) for c in CONDITION_COLUMNS)}, cell["cell_key"]
        config = json.loads(cell["config"])
        assert (config["condition"], config["data"], config["model"]) == (key.condition, key.data, key.model)


def test_the_runner_finds_every_stored_cell_of_a_suite_as_computed() -> None:
    """What ``mgbench run --suite S`` would look up today, for each suite S and run options of the store."""
    groups: dict[tuple[str, int, str], list[dict]] = defaultdict(list)
    for cell in _cells():
        config = json.loads(cell["config"])
        groups[(cell["suite"], config["seed"], config["precision"])].append(cell)
    checked = 0
    for (suite_name, seed, precision), cells in sorted(groups.items()):
        if not (REPO_ROOT / "benchmarks" / f"{suite_name}.toml").is_file():
            continue  # written by a command (mgbench attack), not a suite file
        suite = load_suite(suite_name)
        current = {c.condition_type: c.condition_version for c in suite.expand()}
        models = sorted({json.loads(cell["model_json"])["model"] for cell in cells})
        try:
            prepared = prepare(suite, models=models, options=RunOptions(device="cpu", seed=seed, precision=precision))
        except InputError as exc:  # a card removed since: its cells are no longer the zoo's
            pytest.fail(f"suite {suite_name}: {exc}")
        expected = {compute_key(item.identity(), {"dataset": prepared.data.label,
                                                  "input_size": prepared.data.input_size}).hash
                    for item in prepared.loaded}
        for condition, opened in prepared.conditions:
            expected |= {key.hash for _, key in prepared.cell_keys(condition, opened)}
        for cell in cells:
            condition = json.loads(cell["condition_json"])
            kind = condition["type"]
            if kind == "summary" or (kind in current and condition["version"] != current[kind]):
                continue  # summaries are recomputed on every run; an older version is superseded
            assert kind == "compute" or kind in condition_types()
            assert cell["cell_key"] in expected, f"{suite_name}: {cell['model']} {canonical_json(condition)}"
            checked += 1
    assert checked, "no stored cell of a suite file to check"
