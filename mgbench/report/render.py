"""The leaderboard's tables as data, rendered once as GitHub markdown and once as HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from mgbench.attacks.variants import DEFAULT, TRANSFER_PREFIX
from mgbench.attacks.verdict import WORST_CASE, WORST_CASE_APGD
from mgbench.report.leaderboard import (
    HEADLINE_EPS,
    SEED_METRICS,
    Acc,
    AttackColumn,
    Entry,
    ModelGroup,
    aimed_steps,
    attack_columns,
    attack_families,
    like_with_like,
    model_groups,
    robust_at,
    robust_reader,
    robust_steps_at,
    seed_differences,
    seed_groups,
    verdict_text,
)
from mgbench.report.tables import attack_rank, verdict_word


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
    # Rows shown beneath each row in the HTML page, folded (a model's seed cards); empty: none.
    children: list[list[list[Cell]]] = field(default_factory=list)
    html: bool = True  # False: markdown only (the HTML page shows these rows folded elsewhere)
    legend: str = ""  # what each column means: after the note in markdown, folded in the HTML page


def _acc_cell(acc: Acc | None, ci: bool = False) -> Cell:
    if acc is None:
        return Cell("-", None)
    hint = f"95% CI {100 * acc.low:.1f}-{100 * acc.high:.1f}, n={acc.n}" if acc.low is not None else ""
    return Cell(acc.with_ci() if ci else acc.pct(), acc.value, hint)


def _num(value: float | None, fmt: str) -> Cell:
    return Cell("-", None) if value is None else Cell(format(value, fmt), value)


def _verdict_cell(entry: Entry) -> Cell:
    return Cell(verdict_text(entry), tone="bad" if entry.unreliable else "")


# ----------------------------------------------------------------------------- the headline columns


def _seed_label(group: ModelGroup, card: Entry) -> str:
    seed = group.seeds[group.cards.index(card)]
    return card.model if seed is None else f"s{seed}"


def _mean_cell(group: ModelGroup, read: Callable[[Entry], Any], scale: float, fmt: str) -> Cell:
    """Mean +- sample sd (numpy, ddof=1) over the cards that have the number; one card: its number.
    Marked * when some of the model's cards lack it."""
    stat = group.stat(read)
    if stat is None:
        return Cell("-", None)
    text = format(scale * stat.mean, fmt)
    if stat.spread is not None:
        text += f" ± {format(scale * stat.spread, fmt)}"
    having = [_seed_label(group, card) for card in group.cards if read(card) is not None]
    if len(having) < len(group.cards):
        text += "*"
    values = ", ".join(f"{_seed_label(group, card)} {format(scale * _value(read(card)), fmt)}"
                       for card in group.cards if read(card) is not None)
    hint = ("mean ± sd over " if stat.spread is not None else "") + values
    return Cell(text, stat.mean, hint)


def _value(found: Acc | float) -> float:
    return found.value if isinstance(found, Acc) else float(found)


def _robust(entry: Entry) -> Acc | None:
    found = robust_at(entry)
    return None if found is None else found[1]


def _robust_attack(entry: Entry, name: str = WORST_CASE) -> tuple[str, str] | None:
    """The attacks a card's headline worst case (``name``) covers: (short text, every family)."""
    found = robust_at(entry, name=name)
    if found is None:
        return None
    families = attack_families(entry.robust_attacks.get(found[0], []))
    if not families:
        return "worst case", "per-example worst case"
    extra = f" +{len(families) - 1}" if len(families) > 1 else ""
    return families[0] + extra, "per-example worst case over " + ", ".join(families)


def _distinct(group: ModelGroup, read: Callable[[Entry], Any], show: Callable[[Any], str]) -> Cell:
    """A text column of a model: its cards' values, each distinct one once (seed order)."""
    texts = []
    for card in group.cards:
        value = read(card)
        if value is not None and show(value) not in texts:
            texts.append(show(value))
    if not texts:
        return Cell("-", None)
    hint = "; ".join(f"{_seed_label(group, card)}: {show(read(card))}" for card in group.cards
                     if read(card) is not None) if len(texts) > 1 else ""
    return Cell(" / ".join(texts), hint=hint)


def _group_verdict(group: ModelGroup) -> Cell:
    """The worst verdict over the seeds: unreliable when any seed is; reliable when every checked
    seed is, saying how many were checked when not all."""
    checked = [card for card in group.cards if card.unreliable is not None]
    if any(card.unreliable for card in checked):
        bad = [_seed_label(group, card) for card in checked if card.unreliable]
        return Cell("unreliable", hint="unreliable: " + ", ".join(bad), tone="bad")
    if not checked:
        return Cell(verdict_word(None))
    if len(checked) < len(group.cards):
        return Cell(f"{verdict_word(False)} ({len(checked)} of {len(group.cards)} checked)",
                    hint="checked: " + ", ".join(_seed_label(group, card) for card in checked))
    return Cell(verdict_word(False))


@dataclass(frozen=True)
class Column:
    """One headline column: its header, how a card's cell is made from the card's entry (what
    :func:`collect` read from the store) and how a model's cell is made from its cards."""

    name: str
    card: Callable[[Entry], Cell]
    model: Callable[[ModelGroup], Cell]


def _pct_column(name: str, read: Callable[[Entry], Acc | None]) -> Column:
    return Column(name, lambda e: _acc_cell(read(e)), lambda g: _mean_cell(g, read, 100, ".1f"))


def _number_column(name: str, read: Callable[[Entry], float | None], scale: float, fmt: str) -> Column:
    def card(e: Entry) -> Cell:
        value = read(e)
        return _num(None if value is None else scale * value, fmt)
    return Column(name, card, lambda g: _mean_cell(g, read, scale, fmt))


def _same_column(name: str, read: Callable[[Entry], float | None], scale: float, fmt: str) -> Column:
    """A property of the architecture (GMACs, parameters): the same on every seed, shown once."""
    def show(value: float) -> str:
        return format(scale * value, fmt)

    def model(g: ModelGroup) -> Cell:
        cell = _distinct(g, read, show)
        values = [read(card) for card in g.cards if read(card) is not None]
        return Cell(cell.text, scale * values[0] if len(set(values)) == 1 else cell.sort, cell.hint)
    return Column(name, lambda e: _num(None if read(e) is None else scale * read(e), fmt), model)


def _attack_cell(entry: Entry) -> Cell:
    found = _robust_attack(entry)
    return Cell("-") if found is None else Cell(found[0], hint=found[1])


def _n(entry: Entry) -> int | None:
    acc = _robust(entry)
    return None if acc is None else acc.n


def _model_robust(group: ModelGroup) -> Cell:
    return _mean_cell(group, robust_reader(group.cards), 100, ".1f")


def _model_attack(group: ModelGroup) -> Cell:
    """The attack of a model's robust mean: every seed's worst case, or APGD-CE+T alone when the
    seeds ran different attack sets (:func:`like_with_like`)."""
    name = like_with_like(group.cards)
    cell = _distinct(group, lambda e: _robust_attack(e, name), lambda a: a[0])
    if name != WORST_CASE_APGD:
        return cell
    return Cell(f"{cell.text} (all seeds)", hint="the seeds ran different attacks, so the mean takes the one every "
                "seed ran: the per-example worst case over APGD-CE+T (the model as it is and with its gradient "
                "rescaler off); each seed's own worst case over all its attacks is in its row")


def _model_n(group: ModelGroup) -> Cell:
    read = robust_reader(group.cards)
    return _distinct(group, lambda e: None if (acc := read(e)) is None else acc.n, str)


HEADLINE_COLUMNS = (
    _pct_column("clean", lambda e: e.clean),
    _pct_column("corruptions", lambda e: e.corruption_mean),
    _number_column("mCE", lambda e: e.mce, 100, ".1f"),
    Column(f"robust {HEADLINE_EPS}", lambda e: _acc_cell(_robust(e)), _model_robust),
    Column("attack", _attack_cell, _model_attack),
    Column("n", lambda e: _num(_n(e), "d"), _model_n),
    Column("verdict", _verdict_cell, _group_verdict),
    _same_column("GMACs", lambda e: e.gmacs, 1, ".4f"),
    _same_column("params (M)", lambda e: e.params, 1e-6, ".2f"),
)


def _best_first(group: ModelGroup) -> tuple[float, float, str]:
    """Models in the order a reader compares them: robust accuracy at the headline eps (mean over
    seeds), then clean accuracy, both highest first; models without a number after those with."""
    robust, clean = group.stat(robust_reader(group.cards)), group.stat(lambda e: e.clean)
    return (-robust.mean if robust else 1.0, -clean.mean if clean else 1.0, group.name)


def _headline_note(entries: list[Entry]) -> str:
    normalisers = sorted({e.mce_normaliser for e in entries if e.mce_normaliser})
    corruption_sets = sorted({e.corruption_set for e in entries if e.corruption_set})
    return (
        "Top-1 accuracy in % (hover for the 95% Wilson interval and n). corruptions: mean top-1 over the cells of "
        "one corruption set x severities (" + (", ".join(corruption_sets) or "-") + "; common preferred, "
        "\"partial\" when not a named set); mCE normalised by " + (", ".join(normalisers) or "-") + " on the "
        f"same data. robust {HEADLINE_EPS}: the per-example worst case over every attack run at L-inf "
        f"{HEADLINE_EPS} (attack: the strongest one it covers, +k more, hover for all), on n images. verdict: the "
        "gradient-masking checks (reliable / unreliable, reasons below). GMACs: fvcore, 1 multiply-add = 1 FLOP, "
        "after the last step."
    )


def headline_tables(dataset: str, entries: list[Entry]) -> list[Table]:
    """The headline: one row per model (its seed cards folded beneath it in the HTML page), best
    first, mean ± sd over the seeds; then one row per card (the markdown's per-card table)."""
    groups = sorted(model_groups(entries), key=_best_first)
    headers = ["model", *[c.name for c in HEADLINE_COLUMNS]]
    rows, children = [], []
    for group in groups:
        rows.append([Cell(group.name), *[c.model(group) for c in HEADLINE_COLUMNS]])
        seeded = len(group.cards) > 1
        children.append([[Cell(card.model), *[c.card(card) for c in HEADLINE_COLUMNS]] for card in group.cards]
                        if seeded else [])
    per_model = Table(
        f"{dataset}: headline",
        "One row per model (architecture + dataset + training), best first: by robust accuracy at "
        f"{HEADLINE_EPS}, then clean. Top-1 %: the mean ± standard deviation over a model's seed cards (NAME.s0, "
        "NAME.s1, ...; * when some seeds lack the number), one number for a single card; the verdict is the worst "
        "of any seed. Open a model's name for its seeds; hover a number for every seed's value. Robust: the "
        "per-example worst case over every attack stored for the card at that eps. A model's mean compares like "
        "with like: when its seeds ran different attacks (the committed reference, the CPU protocol of "
        "docs/attacks.md \"The CPU reference\": every seed card has APGD-CE+T, seed 0 also AutoAttack standard, "
        "PGD and the verdict's probes (MGNet also adaptive and transfer PGD), at 4/255; the 1, 2 and 8/255 "
        "points on 200 images without probes) the "
        "mean is over the worst case of APGD-CE+T alone, the attack every seed "
        "ran (attack: \"(all seeds)\"), and each seed's row keeps its own worst case over all its attacks.",
        headers, rows, kind="headline", children=children, legend=_headline_note(entries),
    )
    per_card = Table(
        f"{dataset}: every card", "One row per card (each seed of a model on its own), by name.",
        ["card", *[c.name for c in HEADLINE_COLUMNS]],
        [[Cell(e.model), *[c.card(e) for c in HEADLINE_COLUMNS]] for e in entries], kind="cards", html=False,
        legend="The columns as in the headline above.",
        anchor="headline",  # the plots follow the headline tables (in the page: the per-model one)
    )
    return [per_model, per_card]


def seed_tables(dataset: str, entries: list[Entry]) -> list[Table]:
    """Across seeds: each model's spread and sampling error per metric, and which gaps between
    models are beyond that noise (nothing when no model has two seed cards)."""
    groups = seed_groups(entries)
    if not groups:
        return []
    rows = []
    for group in groups:
        for name in SEED_METRICS:
            stat = group.metrics.get(name)
            if stat is not None:
                rows.append([Cell(group.base), Cell(", ".join(map(str, group.seeds))), Cell(name),
                             _num(100 * stat.mean, ".1f"), _num(100 * (stat.spread or 0.0), ".1f"),
                             _num(100 * stat.range, ".1f"), _num(100 * stat.sampling, ".1f")])
    tables = [Table(
        f"{dataset}: across seeds",
        "Models with several seed cards: per metric (headline robust: the worst case at "
        f"{HEADLINE_EPS}), the mean over the seeds, their standard deviation, the seed range (max - min) and the "
        "mean 95% sampling half-width, in points. A metric is listed where every seed has it.",
        ["model", "seeds", "metric", "mean", "sd", "range", "sampling"], rows)]
    differences = seed_differences(groups)
    if not differences.empty:
        tables.append(Table(
            f"{dataset}: gaps between models",
            "A gap between two models is beyond noise when it is larger than both models' seed ranges and both "
            "sampling half-widths.",
            ["models", "metric", "gap (points)", "beyond noise"],
            [[Cell(f"{row.first} - {row.second}"), Cell(str(row.metric)), _num(100 * row.gap, "+.1f"),
              Cell("yes" if row.beyond_noise else "no", tone="good" if row.beyond_noise else "")]
             for row in differences.itertuples()]))
    return tables


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
    """The tables of one dataset: the headline (per model, then per card), then the details
    (attacks by kind, verdicts, corruptions, the anytime curve, across seeds)."""
    columns = attack_columns(entries)
    tables = [*headline_tables(dataset, entries), *attack_tables(dataset, entries, columns)]
    tables += [t for t in (verdict_table(dataset, entries), corruption_table(dataset, entries)) if t is not None]
    anytime = [e for e in entries if e.anytime]
    if anytime:
        rows = []
        for e in anytime:
            robust, aimed = robust_steps_at(e), aimed_steps(e)
            for t, gmacs in enumerate(e.gmacs_steps):
                values = [steps[t] if t < len(steps) else None for steps in (e.clean_steps, e.corruption_steps, robust)]
                cells = [_num(None if v is None else 100 * v, ".1f") for v in values]
                if values[2] is not None and t + 1 not in aimed:
                    cells[2] = replace(cells[2], text=f"{cells[2].text}†",
                                       hint="no attack aimed at this glimpse stored yet: an upper bound")
                rows.append([Cell(e.model), Cell(str(t + 1), t + 1), _num(gmacs, ".4f"), *cells])
        tables.append(Table(
            f"{dataset}: accuracy after each glimpse",
            "Anytime models: top-1 % after t steps and the cumulative GMACs of t steps; robust: the per-example "
            f"worst case at L-inf {HEADLINE_EPS} over every attack there, attacks aimed at glimpse t included "
            "(†: none aimed at glimpse t is stored yet, only attacks on the final prediction read off at step t: "
            "an upper bound).",
            ["model", "step", "GMACs (cumulative)", "clean top-1", "corruptions top-1",
             f"robust top-1 ({HEADLINE_EPS})"],
            rows,
        ))
    return tables + seed_tables(dataset, entries)


def markdown(table: Table) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    notes = [table.note, "", table.legend, ""] if table.legend else [table.note, ""]
    lines = [f"### {table.title}", "", *notes, "| " + " | ".join(map(escape, table.headers)) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(escape(c.text) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def _html_row(row: list[Cell], css: str = "", first: str | None = None) -> str:
    cells = []
    for index, cell in enumerate(row):
        sort = cell.text if cell.sort is None else cell.sort
        kind = "num" if isinstance(sort, (int, float)) else "text"
        hint = f' title="{html.escape(cell.hint)}"' if cell.hint else ""
        tone = f' class="{cell.tone}"' if cell.tone else ""
        content = first if index == 0 and first is not None else html.escape(cell.text)
        cells.append(f'<td data-sort="{html.escape(str(sort))}" data-kind="{kind}"{hint}{tone}>{content}</td>')
    return f"<tr{css}>" + "".join(cells) + "</tr>"


def html_table(table: Table, table_id: str) -> str:
    """A sortable table; with children, each row is a ``tbody`` of its own whose first cell is a
    ``details`` that unfolds the children rows beneath it (sorting moves them together)."""
    head = "".join(f'<th data-col="{i}">{html.escape(h)}</th>' for i, h in enumerate(table.headers))
    grouped = any(table.children)
    if grouped:
        body = []
        for row, children in zip(table.rows, table.children):
            name = html.escape(row[0].text)
            if children:
                first = (f'<details><summary>{name}</summary><span class="seeds">{len(children)} cards '
                         "below</span></details>")
                body.append("<tbody>" + _html_row(row, first=first)
                            + "".join(_html_row(child, ' class="seed"') for child in children) + "</tbody>")
            else:
                body.append("<tbody>" + _html_row(row) + "</tbody>")
        tbody = "".join(body)
    else:
        tbody = "<tbody>" + "".join(_html_row(row) for row in table.rows) + "</tbody>"
    kind = table.kind + (" grouped" if grouped else "")
    legend = (f'<details class="note"><summary>What each column means</summary>{html.escape(table.legend)}</details>'
              if table.legend else "")
    return (f'<h3>{html.escape(table.title)}</h3><p class="note">{html.escape(table.note)}</p>{legend}'
            f'<div class="wide"><table class="sortable {kind}" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"{tbody}</table></div>")
