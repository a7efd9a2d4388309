"""Conditions: what is done to a batch before the model sees it.

A condition has a ``key`` (every parameter of the condition: the store's condition columns and
any other), its type's name and behaviour version (``condition_type``, ``condition_version``:
bump the version when a change of code moves the numbers, and the store recomputes the cells)
and ``apply(model, x, y, ids) -> x'``; :mod:`mgbench.cellkey` turns them into the cell's key.
Clean returns ``x``; a corruption ignores the model; an attack uses it. Suites name condition
*types*; each type has an expander that turns one ``[[conditions]]`` table of a suite file (plus
command-line overrides) into conditions. Condition types register themselves with :func:`register_condition_type`,
with the threats their keys carry and the label that names them (:func:`condition_label`); those of
the plugin packages (attacks, corruptions) are imported by name on first lookup (:data:`PLUGINS`).

A type may also register a *summariser* (:func:`register_summary`, with a version like the
conditions'): after all cells of a model are stored, it reads them and returns derived results
(mean corruption accuracy and mCE, gradient-masking verdicts), which the runner stores as cells
of their own, keyed by model, data, run options and what the summary covers (never by suite).
A summariser that also reads other models' cells (an mCE normaliser) says which through
``depends_on``; a run of one of them recomputes those stored summaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
import torch.nn as nn

from mgbench.errors import InputError
from mgbench.registry import Registry
from mgbench.rows import MetricRow

if TYPE_CHECKING:
    import pandas as pd

    from mgbench.data import DataSpec, OpenedData
    from mgbench.models import LoadedModel
    from mgbench.store import Store


class Condition(Protocol):
    key: dict[str, Any]
    condition_type: str
    condition_version: int
    needs_grad: bool
    # Optional ``model_free: bool`` (default False): the conditioned batch does not depend on the
    # model, so the runner conditions each batch once and feeds it to every model of the run.

    def apply(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The conditioned batch (same shape, values in [0, 1])."""

    def extra_rows(self) -> list[MetricRow]:
        """Rows the condition measured besides accuracy (empty for most)."""


CLEAN_VERSION = 1


@dataclass
class Clean:
    condition_type = "clean"
    condition_version = CLEAN_VERSION
    key: dict[str, Any] = field(default_factory=lambda: {"threat": "clean"})
    needs_grad: bool = False
    model_free: bool = True

    def apply(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return x

    def extra_rows(self) -> list[MetricRow]:
        return []


Expander = Callable[[dict[str, Any]], list[Condition]]
# The label of a condition from its key or a stored row's condition columns (absent ones None or NaN).
Label = Callable[["pd.Series | dict[str, Any]"], str]


def threat_label(key: "pd.Series | dict[str, Any]") -> str:
    """The label of a type that gives none (clean), and of a threat no type owns (the compute cell)."""
    return str(key["threat"])


@dataclass(frozen=True)
class ConditionType:
    """A registered condition type: its expander, the keys its tables may hold, the threats of its
    conditions' keys (and of its summaries' keys) and the label of those keys."""

    expand: Expander
    keys: tuple[str, ...]
    threats: tuple[str, ...]
    label: Label


# Condition types that live in packages of their own (plugins), by name. The registry imports
# none of them: a lookup of one of these names imports its package (once), whose modules register
# the type and its summary, as lm-evaluation-harness's registry finds its tasks. A new plugin
# package adds one line here.
PLUGINS: dict[str, str] = {
    "attack": "mgbench.attacks",
    "corruption": "mgbench.corruptions",
}

CONDITION_TYPES: Registry[ConditionType] = Registry("condition type", plugins=PLUGINS)


def register_condition_type(name: str, keys: tuple[str, ...] = ("type",), *, threats: tuple[str, ...] = (),
                            label: Label = threat_label) -> Callable[[Expander], Expander]:
    """Register the expander of a condition type, the keys its tables may hold (``type``
    included; :func:`check_table` refuses any other key, for every type alike), and the threats
    its keys carry with their label (:func:`condition_label`)."""
    def decorate(expander: Expander) -> Expander:
        CONDITION_TYPES.add(name, ConditionType(expander, tuple(keys), tuple(threats), label))
        return expander

    return decorate


def condition_types() -> list[str]:
    return CONDITION_TYPES.names()


def condition_label(key: "pd.Series | dict[str, Any]") -> str:
    """The one short human name of a condition, from its key or a stored row's condition columns:
    ``clean``, ``fog s3``, ``pgd linf 4/255 [mgnet-paper] (no-rescale)``. Tables, the leaderboard,
    figure titles, progress and error messages all name conditions with it. The type that owns
    the key's threat gives it; a threat no type owns (the compute cell) is its own name."""
    threat = key["threat"]
    owner = next((kind for _, kind in CONDITION_TYPES.items() if threat in kind.threats), None)
    return owner.label(key) if owner is not None else threat_label(key)


def check_keys(kind: str, table: dict[str, Any]) -> None:
    """Refuse the keys that tables of type ``kind`` do not take (a typo is an error, not a default)."""
    allowed = CONDITION_TYPES.get(kind).keys
    unknown = sorted(str(key) for key in table if key not in allowed)
    if unknown:
        known = ", ".join(key for key in allowed if key != "type") or "no key besides type"
        raise InputError(f"{kind} table has unknown key(s) {', '.join(unknown)}: use {known}")


def check_table(table: object) -> str:
    """The schema every ``[[conditions]]`` table of a suite (or of the API) must meet, whatever its
    type: a table, a registered ``type``, only that type's keys; returns the type. The values are
    checked by the type's expander."""
    if not isinstance(table, dict):
        raise InputError(f"a [[conditions]] entry must be a table with a type key, not {table!r}: "
                         "write [[conditions]] and type = \"clean\" below it")
    kind = table.get("type")
    check_keys(kind, table)  # refuses an unknown type first, naming the registered ones
    return kind


def expand(table: dict[str, Any]) -> list[Condition]:
    return CONDITION_TYPES.get(check_table(table)).expand(table)


@register_condition_type("clean", threats=("clean",))
def _expand_clean(table: dict[str, Any]) -> list[Condition]:
    return [Clean()]


@dataclass
class LiveModel:
    """The loaded model and its data, present when a summary runs inside a suite (a merge
    recomputes summaries from stored cells alone, without it)."""

    loaded: "LoadedModel"
    spec: "DataSpec"
    opened: "OpenedData"
    device: torch.device
    batch_size: int


@dataclass
class SummaryContext:
    """What a summariser sees: the rows of every stored cell of this model on this data under
    this run's options (precision, seed), whichever suite or command wrote it, plus this run's
    own cells (summary cells excluded); the condition tables of its type (the suite's, with
    overrides, or rebuilt from stored summary keys by a merge); the identities that key its
    cells; the store (to read other models' rows, e.g. an mCE normaliser); and, inside a suite,
    the live model (to run extra checks). ``frame`` carries the canonical key columns
    (``condition_json``, ``data_json``, ...) beside the wide ones."""

    frame: "pd.DataFrame"
    tables: list[dict[str, Any]]
    model: dict[str, Any]  # the model identity in the cells' keys (model, arch, weights, ...)
    data: dict[str, Any]   # the data key of the run's images
    store: "Store"
    options: dict[str, Any] = field(default_factory=dict)  # the run options in the cells' keys
    live: LiveModel | None = None


@dataclass
class Summary:
    """A derived cell: its condition columns (``threat`` at least) and rows."""

    key: dict[str, Any]
    rows: list[MetricRow]


Summariser = Callable[[SummaryContext], list[Summary]]
# Rebuilds a summariser's condition tables from the condition keys of its stored summary cells
# (what a merge has instead of the suite file).
TablesFrom = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
# The names of the other models whose stored cells a summary with this condition key reads (an
# mCE normaliser): a run that adds cells of one of them recomputes the summary.
DependsOn = Callable[[dict[str, Any]], set[str]]


@dataclass(frozen=True)
class SummaryType:
    """The registered summary of a condition type (see :func:`register_summary`)."""

    summarise: Summariser
    version: int
    tables_from: TablesFrom
    depends_on: DependsOn | None


_SUMMARIES: Registry[SummaryType] = Registry("summary", plugins=PLUGINS)


def register_summary(condition_type: str, version: int, tables_from: TablesFrom,
                     depends_on: DependsOn | None = None) -> Callable[[Summariser], Summariser]:
    """Register the summariser of a condition type; ``version`` enters its cells' keys (bump it
    when a change moves the numbers); ``tables_from`` rebuilds its tables from stored summary keys;
    ``depends_on`` (optional) names the other models a stored summary key reads cells of."""
    def decorate(summariser: Summariser) -> Summariser:
        _SUMMARIES.add(condition_type, SummaryType(summariser, version, tables_from, depends_on))
        return summariser

    return decorate


def summariser(condition_type: str) -> Summariser | None:
    return _SUMMARIES.get(condition_type).summarise if condition_type in _SUMMARIES else None


def summary_version(condition_type: str) -> int:
    return _SUMMARIES.get(condition_type).version


def summary_tables(condition_type: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _SUMMARIES.get(condition_type).tables_from(keys)


def summary_depends_on(condition_type: str, key: dict[str, Any]) -> set[str]:
    """The other models whose cells the stored summary with condition ``key`` reads (none when
    its summariser reads only its own model's cells)."""
    depends_on = _SUMMARIES.get(condition_type).depends_on
    return depends_on(key) if depends_on is not None else set()
