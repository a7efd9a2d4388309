"""The package-level API, timm-style: ``mgbench.create_model``, ``mgbench.list_models`` and
``mgbench.evaluate``. ``mgbench/__init__.py`` resolves these names lazily, so ``import mgbench``
stays cheap until one is used."""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgbench.data import DataSpec
from mgbench.models import (
    create_model,  # noqa: F401  (re-exported as mgbench.create_model)
    list_architectures,
    list_cards,
)
from mgbench.runner import evaluate as run_suite
from mgbench.store import DEFAULT_STORE, Store
from mgbench.suites import Suite, load_suite

if TYPE_CHECKING:
    import pandas as pd

    from mgbench.progress import Reporter
    from mgbench.runner import RunOptions


def list_models(pattern: str = "*", *, cards: bool = True, architectures: bool = True) -> list[str]:
    """Names ``create_model`` and ``evaluate`` accept, sorted: zoo cards (trained weights) and
    registered architectures (seeded random init), filtered by a shell-style ``pattern``."""
    names = (list(list_cards()) if cards else []) + (list_architectures() if architectures else [])
    return sorted(name for name in set(names) if fnmatch.fnmatchcase(name, pattern))


def evaluate(
    suite: "str | Suite",
    models: str | list[str] | None = None,
    *,
    data: "str | DataSpec | None" = None,
    limit: int | None = None,
    store: str | Path | None = None,
    options: "RunOptions | None" = None,
    reporter: "Reporter | None" = None,
    **overrides: dict[str, Any],
) -> "pd.DataFrame":
    """Run ``suite`` (a name from ``benchmarks/``, a ``.toml`` path or a :class:`Suite`) for
    ``models`` (default: the suite's) and return the tidy rows of its cells, computed now or found
    in ``store`` (default: ``results/mgbench.sqlite``).

    ``data`` is a dataset name (``digits``, ``imagenet100``) or a :class:`DataSpec`; ``limit`` a
    fixed seeded subset of that many images (default: the suite's). ``overrides`` are per-condition
    type options, e.g. ``corruption={"corruptions": "fog", "severities": "1-2"}``; ``reporter`` shows
    progress (e.g. ``mgbench.progress.LogReporter()``; default: silent)."""
    suite = suite if isinstance(suite, Suite) else load_suite(str(suite))
    if isinstance(data, DataSpec):
        spec = data if limit is None else dataclasses.replace(data, limit=limit)
    else:
        spec = DataSpec(name=data or suite.dataset, limit=limit if limit is not None else suite.limit)
    names = [models] if isinstance(models, str) else models
    path = Path(store) if store is not None else DEFAULT_STORE
    outcomes = run_suite(suite, models=names, data=spec, store=path, options=options, overrides=overrides or None,
                         reporter=reporter)
    with Store(path) as results:
        return results.frame(cell_key=[o.cell_key for o in outcomes])
