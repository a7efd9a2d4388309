"""Terminal tables derived from the tidy results frame."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def condition_label(row: pd.Series | dict[str, Any]) -> str:
    """A short human name for a row's condition, e.g. ``fog s3`` or ``pgd linf 4/255``."""
    threat = row["threat"]
    if threat == "corruption":
        return f"{row['corruption']} s{int(row['severity'])}"
    if threat in ("linf", "l2"):
        parts = [row.get("attack"), threat, row.get("eps_str")]
        if _present(row.get("protocol")) and row.get("protocol") != "honest":
            parts.append(f"[{row['protocol']}]")
        if _present(row.get("variant")) and row.get("variant") not in ("", "default"):
            parts.append(f"({row['variant']})")
        return " ".join(str(p) for p in parts if _present(p))
    return str(threat)


def model_label(model: str, weights: Any) -> str:
    """The model's name, marked ``(random-init)`` when its weights were never trained, so an
    untrained model's numbers never pass for results."""
    from mgbench.models import RANDOM_INIT

    return f"{model} ({RANDOM_INIT})" if weights == RANDOM_INIT else str(model)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def accuracy_table(frame: pd.DataFrame, title: str = "accuracy") -> Table:
    """One line per model x condition: final top-1 with its 95% Wilson interval, top-5, top-1
    after each step for anytime models, n and throughput."""
    table = Table(title=title)
    for column, justify in (
        ("model", "left"), ("dataset", "left"), ("condition", "left"), ("top-1 %", "right"),
        ("95% CI", "right"), ("top-5 %", "right"), ("top-1 after each step %", "right"), ("n", "right"),
        ("img/s", "right"),
    ):
        table.add_column(column, justify=justify)
    for _, cell in frame[frame["threat"] != "compute"].groupby("cell_key", sort=False):
        first = cell.iloc[0]
        final = _final_rows(cell)
        top1 = final.get("top1")
        if top1 is None:
            continue
        top5, speed = final.get("top5"), final.get("images_per_s")
        steps = cell[(cell["metric"] == "top1") & cell["step"].notna()].sort_values("step")["value"]
        table.add_row(
            model_label(first["model"], first["weights"]), first["dataset"],
            escape(condition_label(first)),  # "[mgnet-paper]" is not markup
            _pct(top1.value), f"{_pct(top1.ci_low)}-{_pct(top1.ci_high)}",
            _pct(top5.value) if top5 is not None else "",
            " / ".join(_pct(v) for v in steps),
            str(int(top1.n)), f"{speed.value:.0f}" if speed is not None else "",
        )
    return table


def compute_table(frame: pd.DataFrame, title: str = "compute (fvcore GMACs: 1 multiply-add = 1 FLOP)") -> Table:
    """Parameters and GMACs per model; cumulative GMACs after each step for anytime models."""
    table = Table(title=title)
    for column, justify in (("model", "left"), ("input", "left"), ("params", "right"), ("GMACs", "right"),
                            ("GMACs after each step", "right")):
        table.add_column(column, justify=justify)
    for _, cell in frame[frame["threat"] == "compute"].groupby("cell_key", sort=False):
        first = cell.iloc[0]
        final = _final_rows(cell)
        steps = cell[(cell["metric"] == "gmacs") & cell["step"].notna()].sort_values("step")["value"]
        params, gmacs = final.get("params"), final.get("gmacs")
        table.add_row(
            model_label(first["model"], first["weights"]), first["dataset"],
            f"{params.value / 1e6:.2f}M" if params is not None else "",
            f"{gmacs.value:.4f}" if gmacs is not None else "",
            " / ".join(f"{g:.4f}" for g in steps),
        )
    return table


def verdict_table(frame: pd.DataFrame, title: str = "gradient-masking verdicts (docs/attacks.md)") -> Table:
    """One line per model x dataset x norm: reliable / UNRELIABLE, and why."""
    table = Table(title=title)
    for column in ("model", "dataset", "threat", "verdict", "reasons"):
        table.add_column(column)
    for row in frame[frame["metric"] == "unreliable"].itertuples():
        detail = json.loads(row.detail) if isinstance(row.detail, str) else {}
        reasons = detail.get("reasons") or []
        verdict = "[bold red]UNRELIABLE[/bold red]" if row.value else "[green]reliable[/green]"
        table.add_row(model_label(row.model, row.weights), row.dataset, row.threat, verdict,
                      escape("\n".join(reasons)) or "all checks passed")
    return table


def _final_rows(cell: pd.DataFrame) -> dict[str, Any]:
    """The step-less (final) row of each metric in a cell."""
    return {row.metric: row for row in cell[cell["step"].isna()].itertuples()}


def rows_table(frame: pd.DataFrame, columns: list[str], title: str = "results") -> Table:
    """A plain table of selected columns (for `mgbench results show --raw`)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in frame[columns].itertuples(index=False):
        table.add_row(*["" if not _present(v) else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row])
    return table


def _corruption_set(first: pd.Series, mean: Any) -> str:
    """What a corruption mean covers: its set and severities, and "partial" when it is not a
    named set (common, extra, all) or lacks cells."""
    condition = json.loads(first["condition_json"]) if isinstance(first.get("condition_json"), str) else {}
    detail = json.loads(mean.detail) if isinstance(mean.detail, str) else {}
    name = condition.get("corruptions", "corruptions")
    severities = condition.get("severities") or []
    text = f"{name} s{min(severities)}-{max(severities)}" if severities else str(name)
    return text + (" (partial)" if detail.get("partial") else "")


def corruption_summary_table(frame: pd.DataFrame, title: str = "corruption summary") -> Table:
    """Per model and corruption setting: mean accuracy over all cells, mCE and relative mCE
    (when a baseline was available), then the mean accuracy of each corruption."""
    table = Table(title=title)
    for column, justify in (("model", "left"), ("dataset", "left"), ("backend", "left"), ("over", "left"),
                            ("mean top-1 %", "right"), ("mCE %", "right"), ("rel. mCE %", "right"),
                            ("per step top-1 %", "right")):
        table.add_column(column, justify=justify)
    rows = frame[(frame["threat"] == "corruption") & frame["metric"].isin(["mean_top1", "ce", "mce", "relative_ce",
                                                                           "relative_mce"])]
    overall = rows[(rows["corruption"] == "mean") & rows["severity"].isna()]
    per_corruption = rows[rows["corruption"] != "mean"]
    for part in (overall, per_corruption):
        for _, cell in part.groupby("cell_key", sort=False):
            first, final = cell.iloc[0], _final_rows(cell)
            mean = final.get("mean_top1")
            if mean is None:
                continue
            ce = final.get("mce", final.get("ce"))
            rce = final.get("relative_mce", final.get("relative_ce"))
            steps = cell[(cell["metric"] == "mean_top1") & cell["step"].notna()].sort_values("step")["value"]
            table.add_row(model_label(first["model"], first["weights"]), first["dataset"], str(first["backend"]),
                          _corruption_set(first, mean) if first["corruption"] == "mean" else first["corruption"],
                          _pct(mean.value), _pct(ce.value) if ce is not None else "",
                          _pct(rce.value) if rce is not None else "", " / ".join(_pct(v) for v in steps))
    return table
