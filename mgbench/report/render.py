"""The leaderboard's tables as data, rendered once as GitHub markdown and once as HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass

from mgbench.attacks.variants import DEFAULT, TRANSFER_PREFIX
from mgbench.report.leaderboard import Acc, AttackColumn, Entry, attack_columns, headline_attack, verdict_text
from mgbench.report.tables import attack_rank


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # the value sorted on in the HTML page (default: the text)
    hint: str = ""  # shown on hover in the HTML page (e.g. the 95% interval)
    tone: str = ""  # a CSS class in the HTML page: "bad" for an unreliable verdict


@dataclass
class Table:
    title: str
    note: str
    headers: list[str]
    rows: list[list[Cell]]
    kind: str = "detail"  # "headline": the one table that must fit a laptop screen
    anchor: str = ""  # the plots that follow this table (build.py): headline, attacks, corruptions


def _acc_cell(acc: Acc | None, ci: bool = False) -> Cell:
    if acc is None:
        return Cell("-", None)
    hint = f"95% CI {100 * acc.low:.1f}-{100 * acc.high:.1f}, n={acc.n}" if acc.low is not None else ""
    return Cell(acc.with_ci() if ci else acc.pct(), acc.value, hint)


def _num(value: float | None, fmt: str) -> Cell:
    return Cell("-", None) if value is None else Cell(format(value, fmt), value)


def _verdict_cell(entry: Entry) -> Cell:
    return Cell(verdict_text(entry), tone="bad" if entry.unreliable else "")


def _attack_name(column: AttackColumn) -> str:
    return "AutoAttack" if column.attack == "autoattack-standard" else column.attack


def headline_table(dataset: str, entries: list[Entry], columns: list[AttackColumn]) -> Table:
    """One row per model, the numbers a reader compares first; details follow in their own tables."""
    rows = []
    for e in entries:
        headline = headline_attack(e, columns)
        robust = ([_acc_cell(headline[1]), Cell(f"{_attack_name(headline[0])} {headline[0].eps_str}"),
                   _num(headline[1].n, "d")] if headline else [Cell("-"), Cell("-"), Cell("-")])
        rows.append([
            Cell(e.model),
            _acc_cell(e.clean),
            _acc_cell(e.corruption_mean),
            _num(None if e.mce is None else 100 * e.mce, ".1f"),
            *robust,
            _verdict_cell(e),
            _num(e.gmacs, ".4f"),
            _num(None if e.params is None else e.params / 1e6, ".2f"),
        ])
    normalisers = sorted({e.mce_normaliser for e in entries if e.mce_normaliser})
    corruption_sets = sorted({e.corruption_set for e in entries if e.corruption_set})
    return Table(
        f"{dataset}: headline",
        "Top-1 accuracy in % (hover for the 95% Wilson interval and n). corruptions: mean top-1 over the cells of "
        "one corruption set x severities (" + (", ".join(corruption_sets) or "-") + "; common preferred, "
        "\"partial\" when not a named set); mCE normalised by " + (", ".join(normalisers) or "-") + " on the "
        "same data. robust: AutoAttack (standard version unless named) at the largest eps it ran at, on n images. "
        "verdict: the gradient-masking checks (reliable / unreliable, reasons below). GMACs: fvcore, 1 "
        "multiply-add = 1 FLOP, after the last step.",
        ["model", "clean", "corruptions", "mCE", "robust", "attack", "n", "verdict", "GMACs", "params (M)"],
        rows, kind="headline", anchor="headline",
    )


# The attack tables: (title, note, which columns belong).
_ATTACK_GROUPS = (
    ("robust top-1 % by attack and eps",
     "Honest protocol: recomputed by a fresh forward pass on the final adversarial images, asserted to lie in the "
     "eps-ball and [0, 1]. worst-case: per image, broken by any of the attacks. Several step/restart settings of "
     "one attack: the strongest is shown.",
     lambda c: c.protocol == "honest" and c.variant == DEFAULT),
    ("adaptive attacks (variants)",
     "The same attacks adapted to the model (docs/attacks.md); compare with the table above.",
     lambda c: c.protocol == "honest" and c.variant != DEFAULT and not c.variant.startswith(TRANSFER_PREFIX)),
    ("transfer attacks",
     "Adversarial images crafted on another model (named), evaluated on this one.",
     lambda c: c.protocol == "honest" and c.variant.startswith(TRANSFER_PREFIX)),
    ("MGNet paper protocol",
     "The official MGNet code's attack (eps in normalised units, no clipping to [0, 1]): not comparable with the "
     "honest tables.",
     lambda c: c.protocol != "honest"),
)


def attack_tables(dataset: str, entries: list[Entry], columns: list[AttackColumn]) -> list[Table]:
    """One table per kind of attack: a row per attack x eps (x variant), a column per model."""
    tables = []
    for title, note, belongs in _ATTACK_GROUPS:
        mine = sorted((c for c in columns if belongs(c)),
                      key=lambda c: (attack_rank(c.attack), c.attack, c.variant, c.norm, c.eps))
        if not mine:
            continue
        rows = []
        for c in mine:
            ns = sorted({e.robust[c].n for e in entries if c in e.robust and e.robust[c].n is not None})
            label = c.attack + ("" if c.variant == DEFAULT else f" ({c.variant.removeprefix(TRANSFER_PREFIX)})")
            n = Cell("/".join(map(str, ns)) or "-", ns[0] if ns else None)
            rows.append([Cell(label), Cell(c.eps_str, c.eps), n, *[_acc_cell(e.robust.get(c)) for e in entries]])
        tables.append(Table(f"{dataset}: {title}", note, ["attack", "eps", "n", *[e.model for e in entries]], rows))
    if tables:
        tables[0].anchor = "attacks"
    return tables


def verdict_table(dataset: str, entries: list[Entry]) -> Table | None:
    checked = [e for e in entries if e.unreliable is not None]
    if not checked:
        return None
    return Table(
        f"{dataset}: gradient-masking verdicts",
        "The automatic checks of docs/attacks.md; one failed check makes the robust accuracies unreliable "
        "(an upper bound at best).",
        ["model", "verdict", "reasons"],
        [[Cell(e.model), _verdict_cell(e), Cell("; ".join(e.reasons) or "all checks passed")] for e in checked],
    )


def corruption_table(dataset: str, entries: list[Entry]) -> Table | None:
    """Top-1 % per corruption (mean over its severities), a column per model."""
    names = sorted({c for e in entries for c, _ in e.corruption_grid})
    if not names:
        return None
    rows = []
    for name in names:
        cells = []
        for e in entries:
            values = [v for (c, _), v in e.corruption_grid.items() if c == name]
            cells.append(_num(100 * sum(values) / len(values), ".1f") if values else Cell("-"))
        rows.append([Cell(name), *cells])
    return Table(f"{dataset}: top-1 % per corruption",
                 "Mean over the stored severities of each corruption; the heatmaps below show every severity.",
                 ["corruption", *[e.model for e in entries]], rows, anchor="corruptions")


def dataset_tables(dataset: str, entries: list[Entry]) -> list[Table]:
    """The tables of one dataset: the headline, then the details (attacks by kind, verdicts,
    corruptions, the anytime curve)."""
    columns = attack_columns(entries)
    tables = [headline_table(dataset, entries, columns), *attack_tables(dataset, entries, columns)]
    tables += [t for t in (verdict_table(dataset, entries), corruption_table(dataset, entries)) if t is not None]
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
            hint = f' title="{html.escape(cell.hint)}"' if cell.hint else ""
            tone = f' class="{cell.tone}"' if cell.tone else ""
            cells.append(f'<td data-sort="{html.escape(str(sort))}" data-kind="{kind}"{hint}{tone}>'
                         f"{html.escape(cell.text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<h3>{html.escape(table.title)}</h3><p class="note">{html.escape(table.note)}</p>'
            f'<div class="wide"><table class="sortable {table.kind}" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')
