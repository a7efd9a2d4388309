"""Terminal tables derived from the tidy results frame."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from mgbench.attacks.attack import describe
from mgbench.attacks.verdict import WORST_CASE
from mgbench.conditions import condition_label
from mgbench.rows import present


def model_label(model: str, weights: Any) -> str:
    """The model's name, marked ``(random-init)`` when its weights were never trained, so an
    untrained model's numbers never pass for results."""
    from mgbench.models import RANDOM_INIT

    return f"{model} ({RANDOM_INIT})" if weights == RANDOM_INIT else str(model)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


# Threats in the order the tables show them; rows within a threat by attack, protocol, variant, eps.
_THREAT_ORDER = {"clean": 0, "corruption": 1, "linf": 2, "l2": 3}
WORST_CASE_RANK = 8


def attack_rank(attack: Any) -> int:
    """Where an attack goes in tables and plots: FGSM, PGD, AutoAttack (each attack's ``column``),
    others, the worst case last."""
    name = str(attack) if present(attack) else ""
    return WORST_CASE_RANK if name.split(":")[0] == WORST_CASE else describe(name).column


def subset_label(value: Any) -> str:
    """The first 6 characters of a subset's image-id hash (rows that differ only there say so)."""
    return str(value)[:6] if present(value) else "-"


# Columns that other columns give way to at 80 columns (long attack labels wrap at their spaces).
_MIN_WIDTH = {"condition": 18, "reasons": 24}


def _table(title: str, columns: list[tuple[str, str]], rows: list[list[str] | None] | None = None) -> Table:
    """A table that stays readable at 80 columns: cells fold rather than end in an ellipsis, model
    names stay whole, and (when ``rows`` are given) columns empty in every row are left out. A
    ``None`` row starts a new section (a rule between threats)."""
    keep = [i for i in range(len(columns)) if rows is None or any(row[i] for row in rows if row is not None)]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True)
    for i in keep:
        column, justify = columns[i]
        table.add_column(column, justify=justify, overflow="fold", no_wrap=column == "model",  # type: ignore[arg-type]
                         min_width=_MIN_WIDTH.get(column))
    for row in rows or []:
        if row is None:
            table.add_section()
        else:
            table.add_row(*[row[i] for i in keep])
    return table


def _one_or_column(frame: pd.DataFrame, column: str) -> str | None:
    """The single value of ``column`` (shown in the title), or None when it varies (then a column)."""
    values = frame[column].dropna().unique()
    return str(values[0]) if len(values) == 1 else None


def accuracy_table(frame: pd.DataFrame, title: str = "accuracy") -> Table:
    """One line per condition cell: final top-1 with its 95% Wilson interval, top-5, top-1 after
    each step for anytime models, n and the subset (throughput: ``--metric images_per_s --raw``). A
    model or dataset shared by every line goes into the title instead of a column, so the table fits
    80 columns."""
    cells = frame[frame["threat"] != "compute"]
    labels = {model_label(m, w) for m, w in zip(cells["model"], cells["weights"])}
    model, dataset = (next(iter(labels)) if len(labels) == 1 else None), _one_or_column(cells, "dataset")
    title = ", ".join([title] + [v for v in (model, dataset) if v])
    columns = [("model", "left")] if model is None else []
    columns += [("dataset", "left")] if dataset is None else []
    columns += [("condition", "left"), ("top-1 %", "right"), ("95% CI", "right"), ("top-5", "right"),
                ("per step", "right"), ("n", "right"), ("subset", "left")]
    ordered: list[tuple[tuple[Any, ...], pd.DataFrame]] = []
    rows: list[list[str] | None] = []
    for _, cell in cells.groupby("cell_key", sort=False):
        first = cell.iloc[0]
        order = (str(first["model"]), _THREAT_ORDER.get(first["threat"], 9), attack_rank(first.get("attack")),
                 str(first.get("attack") or ""), str(first.get("protocol") or "honest") != "honest",
                 str(first.get("protocol") or ""), str(first.get("variant") or "default") != "default",
                 str(first.get("variant") or ""),
                 float(first["eps"]) if present(first.get("eps")) else 0.0)
        ordered.append((order, cell))
    group = None
    for order, cell in sorted(ordered, key=lambda item: item[0]):
        first = cell.iloc[0]
        final = _final_rows(cell)
        top1 = final.get("top1")
        if top1 is None:
            continue
        if group is not None and order[:2] != group:
            rows.append(None)  # a rule between models and between threats
        group = order[:2]
        top5 = final.get("top5")
        steps = cell[(cell["metric"] == "top1") & cell["step"].notna()].sort_values("step")["value"]
        row = [model_label(first["model"], first["weights"])] if model is None else []
        row += [first["dataset"]] if dataset is None else []
        row += [
            escape(condition_label(first)),  # "[mgnet-paper]" is not markup
            _pct(top1.value), f"{_pct(top1.ci_low)}-{_pct(top1.ci_high)}" if present(top1.ci_low) else "",
            _pct(top5.value) if top5 is not None else "",
            " ".join(_pct(v) for v in steps),
            str(int(top1.n)), subset_label(first.get("subset")),
        ]
        rows.append(row)
    return _table(title, columns, rows)


def corruption_grid_table(frame: pd.DataFrame, title: str = "corruptions") -> Table | None:
    """One model's corruption cells as a grid: top-1 % per corruption (rows) x severity (columns),
    then each corruption's mean and CE when the summary stored them."""
    rows = frame[(frame["threat"] == "corruption") & (frame["corruption"] != "mean") & frame["step"].isna()]
    cells = rows[(rows["metric"] == "top1") & rows["severity"].notna()]
    if cells.empty:
        return None
    severities = sorted({int(s) for s in cells["severity"]})
    n = _one_or_column(cells, "n")
    title = f"{title} top-1 % (backend {_one_or_column(cells, 'backend') or 'mixed'}" + (
        f", n={int(float(n))}" if n else "") + f", subset {subset_label(_one_or_column(cells, 'subset'))})"
    table = _table(title, [("corruption", "left"), *[(f"s{s}", "right") for s in severities], ("mean", "right"),
                           ("CE %", "right")])
    summaries = rows[rows["severity"].isna()]
    for corruption in dict.fromkeys(cells["corruption"]):
        mine = cells[cells["corruption"] == corruption]
        by_severity = {int(r.severity): r.value for r in mine.itertuples()}
        summary = {r.metric: r.value for r in summaries[summaries["corruption"] == corruption].itertuples()}
        mean = summary.get("mean_top1")
        ce = summary.get("ce")
        table.add_row(str(corruption), *[_pct(by_severity[s]) if s in by_severity else "" for s in severities],
                      _pct(mean) if mean is not None else "", _pct(ce) if ce is not None else "")
    return table


def grouped_tables(frame: pd.DataFrame, title: str = "accuracy") -> list[Table]:
    """What `results show`, `run` and `attack` print: per model its accuracy table (clean and
    attacks) and its corruption grid, then the corruption summary, compute and verdict tables."""
    tables: list[Table] = []
    for model in sorted(frame["model"].unique()):
        mine = frame[frame["model"] == model]
        accuracy = mine[mine["threat"].isin(["clean", "linf", "l2"])]
        if not accuracy.empty:
            tables.append(accuracy_table(accuracy, title=title))
        grid = corruption_grid_table(mine, title=f"{model}: corruptions")
        if grid is not None:
            tables.append(grid)
    if (frame["metric"] == "mean_top1").any():
        tables.append(corruption_summary_table(frame))
    if (frame["threat"] == "compute").any():
        tables.append(compute_table(frame))
    if (frame["metric"] == "unreliable").any():
        tables.append(verdict_table(frame))
    return tables


def compute_table(frame: pd.DataFrame, title: str = "compute (fvcore GMACs: 1 multiply-add = 1 FLOP)") -> Table:
    """Parameters and GMACs per model; cumulative GMACs after each step for anytime models."""
    table = _table(title, [("model", "left"), ("input", "left"), ("params", "right"), ("GMACs", "right"),
                           ("GMACs per step", "right")])
    for _, cell in frame[frame["threat"] == "compute"].groupby("cell_key", sort=False):
        first = cell.iloc[0]
        final = _final_rows(cell)
        steps = cell[(cell["metric"] == "gmacs") & cell["step"].notna()].sort_values("step")["value"]
        params, gmacs = final.get("params"), final.get("gmacs")
        table.add_row(
            model_label(first["model"], first["weights"]), first["dataset"],
            f"{params.value / 1e6:.2f}M" if params is not None else "",
            f"{gmacs.value:.4f}" if gmacs is not None else "",
            " ".join(f"{g:.4f}" for g in steps),
        )
    return table


def verdict_table(frame: pd.DataFrame, title: str = "gradient-masking verdicts (docs/attacks.md)") -> Table:
    """One line per model x dataset x norm: the verdict (:func:`verdict_word`) and why."""
    table = _table(title, [("model", "left"), ("dataset", "left"), ("threat", "left"), ("verdict", "left"),
                           ("reasons", "left")])
    for row in frame[frame["metric"] == "unreliable"].itertuples():
        detail = json.loads(row.detail) if isinstance(row.detail, str) else {}
        reasons = detail.get("reasons") or []
        word = verdict_word(bool(row.value))
        verdict = f"[bold red]{word}[/bold red]" if row.value else f"[green]{word}[/green]"
        table.add_row(model_label(row.model, row.weights), row.dataset, row.threat, verdict,
                      escape("\n".join(reasons)) or "all checks passed")
    return table


def verdict_word(unreliable: bool | None) -> str:
    """The one vocabulary for the gradient-masking verdict: CLI, page, markdown and CSV."""
    if unreliable is None:
        return "not checked"
    return "unreliable" if unreliable else "reliable"


def _final_rows(cell: pd.DataFrame) -> dict[str, Any]:
    """The step-less (final) row of each metric in a cell."""
    return {row.metric: row for row in cell[cell["step"].isna()].itertuples()}


def rows_table(frame: pd.DataFrame, columns: list[str], title: str = "results") -> Table:
    """A plain table of selected columns (for `mgbench results show --raw`)."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in frame[columns].itertuples(index=False):
        table.add_row(*["" if not present(v) else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row])
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
    """Per model and corruption setting: the set it covers (:func:`_corruption_set`), mean accuracy
    over its cells, mCE and relative mCE (when a normalising model was available) and the mean
    after each step (per-corruption means are in each model's grid)."""
    table = _table(title, [("model", "left"), ("backend", "left"), ("over", "left"), ("mean top-1 %", "right"),
                           ("mCE %", "right"), ("rel. mCE %", "right"), ("per step", "right")])
    rows = frame[(frame["threat"] == "corruption") & frame["metric"].isin(["mean_top1", "mce", "relative_mce"])]
    overall = rows[(rows["corruption"] == "mean") & rows["severity"].isna()]
    for _, cell in overall.groupby("cell_key", sort=False):
        first, final = cell.iloc[0], _final_rows(cell)
        mean = final.get("mean_top1")
        if mean is None:
            continue
        ce, rce = final.get("mce"), final.get("relative_mce")
        steps = cell[(cell["metric"] == "mean_top1") & cell["step"].notna()].sort_values("step")["value"]
        table.add_row(model_label(first["model"], first["weights"]), str(first["backend"]),
                      _corruption_set(first, mean), _pct(mean.value), _pct(ce.value) if ce is not None else "",
                      _pct(rce.value) if rce is not None else "", " ".join(_pct(v) for v in steps))
    return table
