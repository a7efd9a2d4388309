"""Suites are data, not code: ``benchmarks/<name>.toml`` files (lm-evaluation-harness style).

A suite file::

    name = "clean"
    description = "Clean top-1 accuracy"
    dataset = "digits"                                # default dataset
    models = ["resnet-tiny.digits.s0"]                   # default models when --model is not given
    limit = 1000                                      # optional: default --limit (a fixed seeded subset)

    [[conditions]]
    type = "clean"                                    # a registered condition type

Command-line options override the matching keys of every ``[[conditions]]`` table of their
type (for example ``--severities`` for ``type = "corruption"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgbench.conditions import Condition, check_table, expand
from mgbench.errors import InputError
from mgbench.provenance import REPO_ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def suite_dir() -> Path:
    """``$MGBENCH_SUITES`` or the repository's ``benchmarks/``."""
    return Path(os.environ.get("MGBENCH_SUITES", REPO_ROOT / "benchmarks"))


@dataclass
class Suite:
    name: str
    description: str
    dataset: str
    models: list[str]
    conditions: list[dict[str, Any]]
    source: Path
    limit: int | None = None

    @classmethod
    def read(cls, path: Path) -> "Suite":
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"suite file {path} cannot be read ({exc}): fix the TOML") from exc
        check_suite(data, path)
        return cls(
            name=data.get("name", path.stem),
            description=data.get("description", ""),
            dataset=data.get("dataset", "digits"),
            models=list(data.get("models", [])),
            conditions=[dict(table) for table in data["conditions"]],
            source=path,
            limit=data.get("limit"),
        )

    def expand(self, overrides: dict[str, dict[str, Any]] | None = None) -> list[Condition]:
        """All conditions of the suite, with per-type overrides applied; a condition two tables
        both declare (the same key on the same data, e.g. a verdict probe) is listed once."""
        out: dict[str, Condition] = {}
        for kind in dict.fromkeys(t.get("type") for t in self.conditions):
            for table in self.tables(kind, overrides):
                for c in expand(table):
                    out.setdefault(str((sorted(c.key.items()), getattr(c, "limit", None))), c)
        return list(out.values())

    def types(self) -> set[str]:
        return {table.get("type") for table in self.conditions}

    def tables(self, condition_type: str, overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The condition tables of one type, with that type's overrides applied."""
        extra = {k: v for k, v in (overrides or {}).get(condition_type, {}).items() if v is not None}
        return [{**t, **extra} for t in self.conditions if t.get("type") == condition_type]


SUITE_KEYS = ("name", "description", "dataset", "models", "limit", "conditions")


def check_suite(data: dict[str, Any], path: Path) -> None:
    """The schema of a suite file, in one place: its top-level keys and their types, and every
    ``[[conditions]]`` table by :func:`mgbench.conditions.check_table` (registered type, only
    that type's keys), whatever the condition type; values are checked by the type's expander."""
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise InputError(f"suite file {path} has unknown key(s) {', '.join(unknown)}: use {', '.join(SUITE_KEYS)}")
    for key in ("name", "description", "dataset"):
        if key in data and not isinstance(data[key], str):
            raise InputError(f"suite file {path}: {key} must be a string, not {data[key]!r}: write {key} = \"...\"")
    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise InputError(f"suite file {path}: models must be a list of model names, not {models!r}: "
                         "write models = [\"resnet-tiny.digits.s0\"]")
    limit = data.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"suite file {path}: limit must be a whole number of images >= 1, not {limit!r}")
    conditions = data.get("conditions")
    if not conditions:
        raise InputError(f"suite file {path} declares no [[conditions]]: add at least one")
    if not isinstance(conditions, list):
        raise InputError(f"suite file {path}: conditions must be [[conditions]] tables, not {conditions!r}: "
                         "write [[conditions]] and type = \"clean\" below it")
    for table in conditions:
        try:
            check_table(table)
        except InputError as exc:
            raise InputError(f"suite file {path}: {exc}") from exc


def list_suites() -> dict[str, Suite]:
    folder = suite_dir()
    suites = {}
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        suite = Suite.read(path)
        suites[suite.name] = suite
    return suites


def load_suite(name: str) -> Suite:
    """A suite by name (from the suite folder) or by path to a TOML file."""
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise InputError(f"suite file {path} does not exist")
        return Suite.read(path)
    suites = list_suites()
    if name not in suites:
        raise InputError(f"unknown suite {name!r}: use one of {', '.join(sorted(suites)) or '(none found)'}")
    return suites[name]
