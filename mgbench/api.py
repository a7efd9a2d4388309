"""The package-level API, timm-style: ``mgbench.create_model``, ``mgbench.list_models`` and
``mgbench.evaluate``. ``mgbench/__init__.py`` resolves these names lazily, so ``import mgbench``
stays cheap until one is used.

``evaluate`` is :func:`prepare` (validate the input, load the models; no store touched) then
:func:`run` (compute and store the missing cells); the command line calls those two, with
:func:`plan` (what the run would compute, and an estimate of its time) between them."""

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
from mgbench.plan import Plan, make_plan
from mgbench.runner import CellOutcome, Prepared, RunOptions
from mgbench.runner import prepare as prepare_run
from mgbench.runner import run as run_prepared
from mgbench.store import DEFAULT_STORE, Store
from mgbench.suites import Suite, load_suite

if TYPE_CHECKING:
    import pandas as pd

    from mgbench.progress import Reporter


def list_models(pattern: str = "*", *, cards: bool = True, architectures: bool = True) -> list[str]:
    """Names ``create_model`` and ``evaluate`` accept, sorted: zoo cards (trained weights) and
    registered architectures (seeded random init), filtered by a shell-style ``pattern``."""
    names = (list(list_cards()) if cards else []) + (list_architectures() if architectures else [])
    return sorted(name for name in set(names) if fnmatch.fnmatchcase(name, pattern))


def prepare(
    suite: "str | Suite",
    models: str | list[str] | None = None,
    *,
    data: "str | DataSpec | None" = None,
    limit: int | None = None,
    options: RunOptions | None = None,
    **overrides: dict[str, Any],
) -> Prepared:
    """Validate a run of ``suite`` (a name from ``benchmarks/``, a ``.toml`` path or a :class:`Suite`)
    for ``models`` (default: the suite's) and load them; touches no store, so bad input writes
    nothing. ``data`` is a dataset name (``digits``, ``imagenet100``) or a :class:`DataSpec`;
    ``limit`` a fixed seeded subset of that many images (default: the suite's). ``overrides`` are
    per-condition type options, e.g. ``corruption={"corruptions": "fog", "severities": "1-2"}``."""
    suite = suite if isinstance(suite, Suite) else load_suite(str(suite))
    if isinstance(data, DataSpec):
        spec = data if limit is None else dataclasses.replace(data, limit=limit)
    else:
        spec = DataSpec(name=data or suite.dataset, limit=limit if limit is not None else suite.limit)
    names = [models] if isinstance(models, str) else models
    return prepare_run(suite, models=names, data=spec, options=options, overrides=overrides or None)


def plan(prepared: Prepared, store: str | Path | None = None, probe_images: int = 0) -> Plan:
    """The cells ``prepared`` would compute into ``store`` and those stored already (the store is only
    read); with ``probe_images``, every pending cell is timed on that many images for an estimate."""
    return make_plan(prepared, _store(store), probe_images)


def run(prepared: Prepared, store: str | Path | None = None, reporter: "Reporter | None" = None) -> list[CellOutcome]:
    """Compute and store the cells of ``prepared`` not yet in ``store`` (default:
    ``results/local.sqlite``); one outcome per cell, computed or found stored."""
    return run_prepared(prepared, _store(store), reporter)


def evaluate(
    suite: "str | Suite",
    models: str | list[str] | None = None,
    *,
    data: "str | DataSpec | None" = None,
    limit: int | None = None,
    store: str | Path | None = None,
    options: RunOptions | None = None,
    reporter: "Reporter | None" = None,
    **overrides: dict[str, Any],
) -> "pd.DataFrame":
    """Run ``suite`` for ``models`` (default: the suite's) and return the tidy rows of its cells,
    computed now or found in ``store`` (default: ``results/local.sqlite``): :func:`prepare`, then
    :func:`run`. The arguments are :func:`prepare`'s; ``reporter`` shows progress (e.g.
    ``mgbench.progress.LogReporter()``; default: silent)."""
    prepared = prepare(suite, models, data=data, limit=limit, options=options, **overrides)
    outcomes = run(prepared, store, reporter)
    with Store(_store(store)) as results:
        return results.frame(cell_key=[o.cell_key for o in outcomes])


def _store(store: str | Path | None) -> Path:
    return Path(store) if store is not None else DEFAULT_STORE
