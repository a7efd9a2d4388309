"""The record types that travel between the layers: a measured number (:class:`MetricRow`) and a
finished cell (:class:`CellRecord`). A ground module (no pandas, no SQLite): metrics, conditions and
summaries build rows; :mod:`mgbench.store` writes them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mgbench.cellkey import CellKey


def present(value: Any) -> bool:
    """Whether a stored column holds a value (pandas reads SQL NULL as None or NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def optional(value: Any) -> Any:
    """A stored column's value, None for NULL (read as None or NaN)."""
    return value if present(value) else None


@dataclass
class MetricRow:
    """One measured number. ``step`` is the glimpse/step t for anytime models (None = final)."""

    metric: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    step: int | None = None
    detail: dict[str, Any] | None = None


@dataclass
class CellRecord:
    """Everything written for one finished cell."""

    key: CellKey
    suite: str                   # the suite or command that wrote it (provenance, not identity)
    params: int | None           # the model's parameter count
    config: dict[str, Any]       # the full configuration that produced the numbers
    provenance: dict[str, Any]   # seed, versions, git_sha, device, times
    rows: list[MetricRow] = field(default_factory=list)
