"""The leaderboard's tables as data, rendered once as GitHub markdown and once as HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass

from mgbench.report.leaderboard import Acc, Entry, attack_columns, headline_attack, verdict_text


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # the value sorted on in the HTML page (default: the text)


@dataclass
class Table:
    title: str
    note: str
    headers: list[str]
    rows: list[list[Cell]]


def _acc_cell(acc: Acc | None, ci: bool = False) -> Cell:
    if acc is None:
        return Cell("-", None)
    return Cell(acc.with_ci() if ci else acc.pct(), acc.value)


def _num(value: float | None, fmt: str) -> Cell:
    return Cell("-", None) if value is None else Cell(format(value, fmt), value)


def dataset_tables(dataset: str, entries: list[Entry]) -> list[Table]:
    """The tables of one dataset: overview, robust accuracy per attack, anytime curve."""
    columns = attack_columns(entries)
    tables = []
    overview = []
    for e in entries:
        headline = headline_attack(e, columns)
        mce = _num(None if e.mce is None else 100 * e.mce, ".1f")
        overview.append([
            Cell(e.model), Cell(e.arch),
            _num(None if e.params is None else e.params / 1e6, ".2f"),
            _num(e.gmacs, ".4f"),
            _acc_cell(e.clean, ci=True),
            _num(e.clean.n if e.clean else None, "d"),
            _acc_cell(e.corruption_mean),
            mce,
            Cell(f"{headline[1].pct()} @ {headline[0].eps_str}"
                 + ("" if headline[0].attack == "autoattack-standard" else f" ({headline[0].attack})"),
                 headline[1].value) if headline else Cell("-"),
            Cell(verdict_text(e)),
        ])
    normalisers = sorted({e.mce_normaliser for e in entries if e.mce_normaliser})
    tables.append(Table(
        f"{dataset}: overview",
        "Top-1 accuracy in %, 95% Wilson interval in brackets; corruptions: mean top-1 over the cells of one "
        "corruption set x severities (" + (", ".join(sorted({e.corruption_set for e in entries if e.corruption_set}))
                                           or "-") + "; common preferred, \"partial\" when not a named set); "
        "mCE normalised by " + (", ".join(normalisers) or "-") + " on the same data; GMACs from "
        "fvcore (1 multiply-add = 1 FLOP, after the last step); AutoAttack: standard version unless stated, at "
        "the largest eps it ran at; "
        "verdict: the suite's gradient-masking checks.",
        ["model", "architecture", "params (M)", "GMACs", "clean top-1", "n", "corruptions top-1", "mCE",
         "AutoAttack", "verdict"],
        overview,
    ))
    if columns:
        tables.append(Table(
            f"{dataset}: robust accuracy",
            "Top-1 % recomputed by a fresh forward pass on the final adversarial images (honest protocol: "
            "asserted to lie in the eps-ball and [0, 1]). [mgnet-paper]: the official MGNet code's attack (eps in "
            "normalised units, no clipping), not comparable with the honest columns. Several step/restart "
            "settings of one attack: the strongest is shown.",
            ["model", *[c.label() for c in columns]],
            [[Cell(e.model), *[_acc_cell(e.robust.get(c)) for c in columns]] for e in entries],
        ))
    anytime = [e for e in entries if e.anytime]
    if anytime:
        rows = []
        for e in anytime:
            for t, gmacs in enumerate(e.gmacs_steps):
                clean = e.clean_steps[t] if t < len(e.clean_steps) else None
                corrupted = e.corruption_steps[t] if t < len(e.corruption_steps) else None
                rows.append([Cell(e.model), Cell(str(t + 1), t + 1), _num(gmacs, ".4f"),
                             _num(None if clean is None else 100 * clean, ".1f"),
                             _num(None if corrupted is None else 100 * corrupted, ".1f")])
        tables.append(Table(
            f"{dataset}: accuracy after each glimpse",
            "Anytime models: top-1 % after t steps and the cumulative GMACs of t steps.",
            ["model", "step", "GMACs (cumulative)", "clean top-1", "corruptions top-1"],
            rows,
        ))
    return tables


def markdown(table: Table) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"### {table.title}", "", table.note, "", "| " + " | ".join(map(escape, table.headers)) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(escape(c.text) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def html_table(table: Table, table_id: str) -> str:
    head = "".join(f'<th data-col="{i}">{html.escape(h)}</th>' for i, h in enumerate(table.headers))
    body = []
    for row in table.rows:
        cells = []
        for cell in row:
            sort = cell.text if cell.sort is None else cell.sort
            kind = "num" if isinstance(sort, (int, float)) else "text"
            cells.append(f'<td data-sort="{html.escape(str(sort))}" data-kind="{kind}">{html.escape(cell.text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<h3>{html.escape(table.title)}</h3><p class="note">{html.escape(table.note)}</p>'
            f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')
