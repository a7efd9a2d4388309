"""One identity for every stored result.

A :class:`CellKey` is built here and nowhere else, from four canonical parts:

- ``condition``: the condition type, that type's behaviour version (``CONDITION_VERSION`` of
  its module, bumped by any change that moves numbers) and every parameter of the condition
  (``condition.key``); a summary's condition is ``{"type": "summary", "of": <type>, "version":
  <summariser version>, **summary.key}``;
- ``data``: dataset (its label carries the class list), split, preprocessing, image subset
  (hash of the image ids) and its size;
- ``model``: card or factory name, architecture and weights hash;
- ``options``: the run options that change numbers (precision, seed).

The key yields the cell's hash (the store's primary key), the canonical JSON columns the store
keeps as the truth, the wide condition columns pandas users filter on, and the leaderboard's
grouping (:attr:`CellKey.group`): the same condition on the same model, dataset, split and
preprocessing under the same precision, whatever the image subset, seed or code version.
Nothing in the suite name enters a key: two suites that ask for the same cell share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mgbench.provenance import stable_hash

# The store's wide condition columns (what pandas users filter on) with their SQL types, from
# which mgbench/store.py writes them into the results table's schema; every other parameter of a
# condition lives only in the canonical condition column.
CONDITION_COLUMN_TYPES: dict[str, str] = {
    "threat": "TEXT NOT NULL",  # clean | corruption | linf | l2 | compute
    "corruption": "TEXT", "severity": "INTEGER", "backend": "TEXT",
    "attack": "TEXT", "protocol": "TEXT", "variant": "TEXT", "norm": "TEXT", "eps": "REAL", "eps_str": "TEXT",
    "steps": "INTEGER", "step_size": "REAL", "restarts": "INTEGER", "random_start": "INTEGER",
}
CONDITION_COLUMNS = tuple(CONDITION_COLUMN_TYPES)

COMPUTE_VERSION = 1  # the compute cell (parameters and GMACs per step)


def canonical_json(obj: Any) -> str:
    """Key-order independent JSON: equal objects give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class CellKey:
    condition: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any]
    options: dict[str, Any]

    @property
    def hash(self) -> str:
        return stable_hash({"condition": self.condition, "data": self.data, "model": self.model,
                            "options": self.options})

    @property
    def kind(self) -> str:
        """The condition type (``clean``, ``corruption``, ``attack``, ``compute``, ``summary``)."""
        return str(self.condition["type"])

    @property
    def group(self) -> str:
        """What the leaderboard treats as "the same number": everything but the image subset,
        the seed and the code version (the largest n, then the newest, wins among them)."""
        condition = {k: v for k, v in self.condition.items() if k != "version"}
        data = {k: self.data.get(k) for k in ("dataset", "split", "preprocessing", "input_size")}
        model = {k: self.model.get(k) for k in ("model", "arch")}
        return stable_hash({"condition": condition, "data": data, "model": model,
                            "precision": self.options.get("precision", "fp32")})

    def columns(self) -> dict[str, Any]:
        """The wide condition columns of the results table."""
        return {k: self.condition[k] for k in CONDITION_COLUMNS if k in self.condition}

    def canonical(self) -> dict[str, str]:
        """The canonical columns of the cells table (JSON text)."""
        return {"condition_json": canonical_json(self.condition), "data_json": canonical_json(self.data),
                "model_json": canonical_json(self.model), "options_json": canonical_json(self.options),
                "cell_group": self.group}


def run_options(precision: str, seed: int | None) -> dict[str, Any]:
    return {"precision": precision, "seed": seed}


def condition_key(condition: Any, model: dict[str, Any], data: dict[str, Any], options: dict[str, Any]) -> CellKey:
    """The key of one model's cell of ``condition`` (which names its ``condition_type`` and
    ``condition_version``)."""
    canonical = {"type": condition.condition_type, "version": condition.condition_version, **condition.key}
    return CellKey(canonical, data, model, options)


def compute_key(model: dict[str, Any], data: dict[str, Any]) -> CellKey:
    """The compute cell: parameters and GMACs depend only on the model and the input size."""
    return CellKey({"type": "compute", "version": COMPUTE_VERSION, "threat": "compute"}, data, model, {})


def summary_key(of: str, version: int, key: dict[str, Any], model: dict[str, Any], data: dict[str, Any],
                options: dict[str, Any]) -> CellKey:
    """A summary of ``of``-type cells; ``key`` says what it covers (threat, set, eps, ...)."""
    return CellKey({"type": "summary", "of": of, "version": version, **key}, data, model, options)
