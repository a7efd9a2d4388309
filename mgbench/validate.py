"""External check: mgbench's numbers for a RobustBench zoo model against RobustBench's published ones.

RobustBench publishes, per ImageNet model, the clean and AutoAttack (Linf 4/255, version
``standard``) accuracy on its fixed 5,000 validation images. :func:`validate_robustbench` runs
the same protocol through mgbench (``robustbench:NAME`` on the ``imagenet1k`` dataset, the model's
own RobustBench preprocessing) into the results store, and :func:`compare` calls a number in
agreement when the published value lies inside the 95% Wilson interval of mgbench's measurement.
The published values ship as ``mgbench/data/robustbench_published.json``, with the repository,
commit and files they were read from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgbench import distributed
from mgbench.data import DataSpec
from mgbench.errors import InputError
from mgbench.models.robustbench import PREFIX, find_entry
from mgbench.runner import run_suite
from mgbench.store import Store
from mgbench.suites import Suite

if TYPE_CHECKING:
    import pandas as pd

    from mgbench.runner import RunOptions

# Which published field each measured quantity is compared with.
PUBLISHED_FIELDS = {"clean": "clean_acc", "autoattack": "autoattack_acc"}
AUTOATTACK = "autoattack-standard"  # the stored attack name of AutoAttack version 'standard'


@lru_cache(maxsize=None)
def published() -> dict[str, Any]:
    """RobustBench's published ImageNet numbers (percent) and where they come from."""
    return json.loads(resources.files("mgbench.data").joinpath("robustbench_published.json").read_text())


def published_for(name: str, threat_model: str) -> dict[str, Any]:
    models = published()["models"].get(threat_model, {})
    if name not in models:
        raise InputError(f"RobustBench publishes no ImageNet {threat_model} numbers for {name}: choose another model")
    return models[name]


@dataclass(frozen=True)
class Measured:
    """One stored accuracy (fraction) with its 95% Wilson interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Comparison:
    model: str
    quantity: str  # "clean" or "autoattack"
    published: float  # percent
    measured: Measured

    @property
    def agrees(self) -> bool:
        """The published value lies inside the measurement's Wilson interval."""
        return self.measured.ci_low <= self.published / 100 <= self.measured.ci_high

    @property
    def difference_pp(self) -> float:
        return 100 * self.measured.value - self.published


def compare(name: str, threat_model: str, measured: dict[str, Measured]) -> list[Comparison]:
    """Compare each measured quantity (``clean``, ``autoattack``) with its published value."""
    numbers = published_for(name, threat_model)
    out = []
    for quantity, result in measured.items():
        field = PUBLISHED_FIELDS[quantity]
        if field not in numbers:
            raise InputError(f"RobustBench publishes no {field} for {name} ({threat_model})")
        out.append(Comparison(name, quantity, numbers[field], result))
    return out


def measured_from_frame(frame: "pd.DataFrame") -> dict[str, Measured]:
    """The final top-1 rows of a clean cell and an AutoAttack cell from a store frame."""
    top1 = frame[(frame["metric"] == "top1") & frame["step"].isna()]
    picks = {"clean": top1[top1["threat"] == "clean"], "autoattack": top1[top1["attack"] == AUTOATTACK]}
    return {
        quantity: Measured(float(rows.iloc[-1]["value"]), float(rows.iloc[-1]["ci_low"]),
                           float(rows.iloc[-1]["ci_high"]), int(rows.iloc[-1]["n"]))
        for quantity, rows in picks.items() if not rows.empty
    }


def validate_robustbench(
    name: str,
    data_root: str,
    *,
    store: str | Path,
    limit: int | None = None,
    on_bad_image: str = "fail",
    options: "RunOptions | None" = None,
) -> list[Comparison]:
    """Run RobustBench's protocol for ``robustbench:NAME`` (clean; AutoAttack standard at the
    published eps for Linf models) on RobustBench's ImageNet images and compare with its numbers."""
    entry = find_entry(name)
    numbers = published_for(entry.name, entry.threat_model)
    if entry.preprocessing is None:
        raise InputError(f"{entry.spec} uses timm's own preprocessing, which mgbench does not reproduce: "
                         "choose a model with a RobustBench preprocessing recipe")
    conditions: list[dict[str, Any]] = [{"type": "clean"}]
    if entry.threat_model == "Linf":
        conditions.append({"type": "attack", "attack": "autoattack", "version": "standard", "norm": "linf",
                           "eps": numbers["eps"], "protocol": "honest", "checks": False})
    data = DataSpec(name="imagenet1k", root=data_root, limit=limit, preprocessing=entry.preprocessing,
                    on_bad_image=on_bad_image)
    suite = Suite(name="validate-robustbench", description="RobustBench's published protocol", dataset=data.name,
                  models=[f"{PREFIX}{entry.threat_model}/{entry.name}"], conditions=conditions,
                  source=Path("<mgbench validate robustbench>"))
    outcomes = run_suite(suite, data=data, store=store, options=options)
    if not distributed.is_main():
        return []
    with Store(Path(store)) as results:
        frame = results.frame(cell_key=[o.cell_key for o in outcomes])
    measured = measured_from_frame(frame)
    expected = ["clean", "autoattack"][: len(conditions)]
    if sorted(measured) != sorted(expected):
        raise RuntimeError(f"the store holds {sorted(measured)} of {expected} for {entry.spec}")
    return compare(entry.name, entry.threat_model, measured)
