"""Leaderboard plots (matplotlib's object API: no pyplot state, any backend untouched).

Every plot draws models, not cards: one colour per model (architecture + training, the card name
without dataset and seed), its seed cards as a band (curves) or as small markers around the mean
(points). Each plot function returns the figure and a note for its caption naming the models it
could not draw (no numbers stored); a plot with nothing to draw says so on its axes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from mgbench.report.leaderboard import (
    HEADLINE_EPS,
    Entry,
    ModelGroup,
    aimed_steps,
    attack_columns,
    attack_families,
    like_with_like,
    model_groups,
    robust_at,
    worst_case,
)

# tab10, then the lighter halves of tab20: 20 colours, none repeated.
PALETTE = [matplotlib.colors.to_hex(c) for c in colormaps["tab10"].colors] + \
    [matplotlib.colors.to_hex(c) for c in colormaps["tab20"].colors[1::2]]


def colours(groups: list[ModelGroup]) -> dict[str, str]:
    """One colour per model key (architecture + training), in name order; more models than the
    palette holds is an error, never a repeated colour."""
    keys = sorted({g.key for g in groups})
    if len(keys) > len(PALETTE):
        raise ValueError(f"{len(keys)} models in one plot, more than the {len(PALETTE)} distinct colours of the "
                         "leaderboard's palette (mgbench.report.plots.PALETTE): extend it")
    return dict(zip(keys, PALETTE))


def _name(group: ModelGroup) -> str:
    """A model's legend name; unreliable robustness (any seed) is marked in every plot."""
    seeds = f" ({len(group.cards)} seeds)" if len(group.cards) > 1 else ""
    return group.name + seeds + (" (unreliable)" if any(c.unreliable for c in group.cards) else "")


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="#555", wrap=True)


def _missing(groups: list[ModelGroup], drawn: set[str], what: str) -> str:
    left = [g.name for g in groups if g.name not in drawn]
    if left and not drawn:
        return f" No {what} stored yet."
    return f" Not drawn, no {what} stored: {', '.join(left)}." if left else ""


# A card's reading in one panel of the compute plot: its final value, its values after each step
# (empty for a single-step model) and the steps (0-based) whose value only bounds the number (the
# robust panel: no attack aimed at that glimpse stored yet).
Reading = tuple[float | None, list[float], set[int]]


def _robust_reading(cards: list[Entry]) -> Callable[[Entry], Reading]:
    """The robust panel's reader among one model's seed cards: final value and steps of the same
    worst case, the one that compares the seeds like with like (leaderboard.like_with_like:
    APGD-CE+T's when their attack sets differ)."""
    name = like_with_like(cards)

    def read(entry: Entry) -> Reading:
        found = robust_at(entry, name=name)
        if found is None:
            return None, [], set()
        steps, aimed = entry.robust_steps.get(found[0], []), aimed_steps(entry, name=name)
        return found[1].value, steps, {t for t in range(len(steps)) if t + 1 not in aimed}
    return read


# The panels of the compute plot: (title, what, the reader of a card among one model's seed cards).
PANELS: list[tuple[str, str, Callable[[list[Entry]], Callable[[Entry], Reading]]]] = [
    ("clean", "clean", lambda cards: lambda e: (e.clean.value if e.clean else None, e.clean_steps, set())),
    ("corruptions (mean)", "corruption",
     lambda cards: lambda e: (e.corruption_mean.value if e.corruption_mean else None, e.corruption_steps, set())),
    (f"robust at {HEADLINE_EPS} (worst case)", "robust", _robust_reading),
]


def _draw_model(ax: Axes, group: ModelGroup, colour: str, read: Callable[[Entry], Reading]) -> tuple[bool, bool]:
    """One model in one panel: a curve through the glimpses (mean over the seeds, band from the
    lowest to the highest seed; an open marker where a seed's value only bounds the number) when
    every seed has a value per step, else a point at the final compute (mean, each seed a small
    marker). Returns (drawn: some card has the number, some open marker drawn)."""
    readings = [(card, reading) for card in group.cards
                if (reading := read(card))[0] is not None and card.gmacs is not None]
    if not readings:
        return False, False
    gmacs = readings[0][0].gmacs_steps
    if len(gmacs) > 1 and all(len(reading[1]) == len(gmacs) for _, reading in readings):
        values = 100 * np.array([reading[1] for _, reading in readings])
        mean = values.mean(axis=0)
        ax.plot(gmacs, mean, "o-", color=colour, markersize=3.5, linewidth=1.4)
        if len(readings) > 1:
            ax.fill_between(gmacs, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2, linewidth=0)
        bounded = sorted(set().union(*(reading[2] for _, reading in readings)))
        if bounded:
            ax.plot([gmacs[t] for t in bounded], [mean[t] for t in bounded], "o", linestyle="none",
                    markerfacecolor="white", markeredgecolor=colour, markersize=4.5)
        return True, bool(bounded)
    xs = [card.gmacs for card, _ in readings]
    ys = [100 * reading[0] for _, reading in readings]
    if len(readings) > 1:
        ax.plot(xs, ys, "_", color=colour, markersize=7, alpha=0.8)
    ax.plot([float(np.mean(xs))], [float(np.mean(ys))], "D", color=colour, markersize=5)
    return True, False


def accuracy_vs_compute(entries: list[Entry], dataset: str) -> tuple[Figure, str]:
    """Top-1 against cumulative GMACs per glimpse, one panel each for clean, the corruption mean
    and the worst case at the headline eps; anytime models as curves, others as points."""
    groups = model_groups(entries)
    palette = colours(groups)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, len(PANELS), sharex=True, sharey=True)
    notes = []
    bounds = False
    for ax, (title, what, reader) in zip(axes, PANELS):
        drawn = set()
        for group in groups:
            some, bounded = _draw_model(ax, group, palette[group.key], reader(group.cards))
            drawn |= {group.name} if some else set()
            bounds |= bounded
        if not drawn:
            _empty(ax, f"no {what} results\nin the store")
        notes.append(_missing(groups, drawn, f"{what} results").replace(" Not drawn", f" {title}: not drawn")
                     .replace(" No ", f" {title}: no "))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("GMACs per image, cumulative (fvcore)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 accuracy (%)", fontsize=8)
    _legend(fig, groups, palette)
    if bounds:
        notes.append(" Open markers: no attack aimed at that glimpse is stored yet; the value is an attack on the "
                     "final prediction read off at that glimpse, an upper bound.")
    return fig, "".join(notes)


def _legend(fig: Figure, groups: list[ModelGroup], palette: dict[str, str],
            extra: list[tuple[Any, str]] | None = None) -> None:
    handles = [Line2D([], [], color=palette[g.key], marker="o", linewidth=1.4, markersize=4) for g in groups]
    labels = [_name(g) for g in groups]
    for handle, label in extra or []:
        handles.append(handle)
        labels.append(label)
    if handles:
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(handles)), fontsize=7,
                            frameon=False)
        # Constrained layout makes room below the axes but never widens the figure: a legend of long
        # names (five models, "(3 seeds) (unreliable)") would be cut at both edges of the saved image.
        fig.draw_without_rendering()
        needed = legend.get_window_extent().width / fig.dpi + 0.2  # inches, with a margin
        width, height = fig.get_size_inches()
        if needed > width:
            fig.set_size_inches(needed, height)


# The marker of a worst case's strongest attack family.
MARKERS = {"AutoAttack": "s", "APGD-CE+T": "o", "PGD": "^", "Square": "P", "FGSM": "v", "noise": "x"}


def robust_vs_eps(entries: list[Entry], dataset: str) -> tuple[Figure, str]:
    """Robust top-1 (the per-example worst case, L-inf, honest protocol) against eps: one line per
    model through the mean over its seeds, a band from the lowest to the highest seed, the marker
    the strongest attack every seed's worst case covers at that eps. At each eps the seeds compare
    like with like (:func:`~mgbench.report.leaderboard.like_with_like`)."""
    groups = model_groups(entries)
    palette = colours(groups)
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    budgets: dict[float, str] = {}
    drawn, used = set(), set()
    for group in groups:
        points: dict[float, list[tuple[float, list[str]]]] = {}
        budgets_here = {column.eps_str for card in group.cards for column, _ in worst_case(card, attack_columns([card]))
                        if column.norm == "linf" and column.protocol == "honest" and column.variant == "default"}
        for eps_str in budgets_here:
            name = like_with_like(group.cards, eps_str)
            for card in group.cards:
                if (found := robust_at(card, eps_str, name)) is not None:
                    column, acc = found
                    budgets[column.eps] = column.eps_str
                    points.setdefault(column.eps, []).append(
                        (acc.value, attack_families(card.robust_attacks.get(column, []))))
        if not points:
            continue
        drawn.add(group.name)
        eps = sorted(points)
        values = [[100 * v for v, _ in points[e]] for e in eps]
        colour = palette[group.key]
        ax.plot(eps, [np.mean(v) for v in values], "-", color=colour, linewidth=1.4)
        if len(group.cards) > 1:
            ax.fill_between(eps, [min(v) for v in values], [max(v) for v in values], color=colour, alpha=0.2,
                            linewidth=0)
        for e, v in zip(eps, values):
            common = [f for f in MARKERS if all(f in families for _, families in points[e])]
            family = common[0] if common else "noise"
            used.add(family)
            ax.plot([e], [np.mean(v)], MARKERS.get(family, "o"), color=colour, markersize=5)
    if budgets:
        ax.set_xscale("log", base=2)  # budgets usually double (1, 2, 4, 8/255)
        ax.set_xlim(min(budgets) / 1.5, max(budgets) * 1.5)
        ax.set_xticks(sorted(budgets), [budgets[e] for e in sorted(budgets)], fontsize=7)
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.set_xticks([])
        _empty(ax, "no robust results in the store yet:\nrun the attacks suite (`mgbench run --suite attacks`)")
    ax.set_ylim(0, 100)
    ax.set_xlabel("eps (L-inf)", fontsize=8)
    ax.set_ylabel("robust top-1 (%), worst case", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    markers = [(Line2D([], [], color="#444", marker=MARKERS[f], linestyle="none", markersize=5), f"marker: {f}")
               for f in MARKERS if f in used]
    _legend(fig, [g for g in groups if g.name in drawn], palette, markers)
    return fig, _missing(groups, drawn, "robust results")


def corruption_heatmaps(entries: list[Entry]) -> tuple[Figure, str] | None:
    """Top-1 % per corruption x severity, one panel per model (the mean over its seed cards)."""
    groups = [g for g in model_groups(entries) if any(c.corruption_grid for c in g.cards)]
    if not groups:
        return None
    corruptions = sorted({c for g in groups for e in g.cards for c, _ in e.corruption_grid})
    severities = sorted({s for g in groups for e in g.cards for _, s in e.corruption_grid})
    fig = Figure(figsize=(0.35 * len(severities) * len(groups) + 2.4, 0.24 * len(corruptions) + 1.6),
                 layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    image = None
    for ax, group in zip(axes, groups):
        grid = []
        for c in corruptions:
            row = []
            for s in severities:
                found = [100 * e.corruption_grid[(c, s)] for e in group.cards if (c, s) in e.corruption_grid]
                row.append(float(np.mean(found)) if found else float("nan"))
            grid.append(row)
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(severities)), [str(s) for s in severities], fontsize=7)
        ax.set_yticks(range(len(corruptions)), corruptions, fontsize=7)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if value == value:
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=5.5,
                            color="white" if value < 50 else "black")
        ax.set_xlabel("severity", fontsize=7)
        ax.set_title(_name(group).replace(" (", "\n("), fontsize=7)
    fig.colorbar(image, ax=list(axes), label="top-1 %", shrink=0.8)
    return fig, ""
# Same figure, same bytes: no dates, no random ids, no version strings; SVG text stays text
# (smaller than glyph outlines, and searchable on the page).
_STABLE_RC = {"svg.hashsalt": "mgbench", "svg.fonttype": "none"}
_SVG_METADATA = {"Date": None, "Creator": None}
_PNG_METADATA = {"Software": None}


def save(fig: Figure, stem: Path) -> tuple[Path, str]:
    """Write ``stem.png`` and ``stem.svg`` byte-reproducibly; returns the PNG path and the SVG text
    (for inlining)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, vector = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"  # names may hold dots
    with matplotlib.rc_context(_STABLE_RC):
        fig.savefig(png, dpi=110, metadata=_PNG_METADATA)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    svg = buffer.getvalue()
    vector.write_text(svg)
    return png, svg
