"""Perturbation budgets as users write them: ``4/255``, ``0.0157``, ``1/255,2/255,4/255``.

The parsed value keeps the text it came from, which the store records as ``eps_str`` (``4/255``
reads better than ``0.01568627``, and says exactly what was asked for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mgbench.errors import InputError

_HINT = "write a fraction like 4/255 or a decimal like 0.0157"


@dataclass(frozen=True)
class Eps:
    """A positive budget and the text it was written as."""

    value: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_number(raw: Any, what: str) -> Eps:
    """One positive, finite number written as a decimal or a fraction ``a/b``; ``what`` names
    the option in error messages (``eps``, ``--step-size``)."""
    if isinstance(raw, bool):
        raise InputError(f"{what} {raw!r} is not a number: {_HINT}")
    if isinstance(raw, (int, float)):
        text, value = f"{raw:g}" if isinstance(raw, float) else str(raw), float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise InputError(f"{what} is empty: {_HINT}")
        parts = text.split("/")
        if len(parts) > 2:
            raise InputError(f"{what} {text!r} has more than one '/': {_HINT}")
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            raise InputError(f"{what} {text!r} is not a number: {_HINT}") from None
        if len(numbers) == 2 and numbers[1] == 0:
            raise InputError(f"{what} {text!r} divides by zero: {_HINT}")
        value = numbers[0] / numbers[1] if len(numbers) == 2 else numbers[0]
    else:
        raise InputError(f"{what} {raw!r} is not a number: {_HINT}")
    if not math.isfinite(value):
        raise InputError(f"{what} {text!r} is not finite: {_HINT}")
    if value <= 0:
        raise InputError(f"{what} {text!r} must be positive: {_HINT}")
    return Eps(value, text)


def parse_eps(raw: Any) -> Eps:
    """A single budget."""
    return parse_number(raw, "eps")


def parse_eps_list(raw: Any) -> list[Eps]:
    """Budgets from a comma-separated string, a list (of strings or numbers) or one number;
    duplicates (by value) are dropped, order is kept."""
    if isinstance(raw, str):
        items: list[Any] = raw.split(",")
        if not raw.strip():
            raise InputError(f"eps list is empty: {_HINT} (several: 1/255,2/255,4/255)")
        if any(not part.strip() for part in items):
            raise InputError(f"eps list {raw!r} has an empty entry: {_HINT} (several: 1/255,2/255,4/255)")
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        items = [raw]
    if not items:
        raise InputError(f"eps list is empty: {_HINT} (several: 1/255,2/255,4/255)")
    out: dict[float, Eps] = {}
    for item in items:
        eps = parse_eps(item)
        out.setdefault(eps.value, eps)
    return list(out.values())
