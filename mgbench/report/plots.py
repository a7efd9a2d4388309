"""Leaderboard plots (matplotlib's object API: no pyplot state, any backend untouched)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from mgbench.report.leaderboard import Entry, attack_columns
from mgbench.report.tables import attack_rank


def _name(entry: Entry) -> str:
    """A model's legend name; unreliable robustness is marked in every plot."""
    return f"{entry.model} (unreliable)" if entry.unreliable else entry.model


def accuracy_vs_compute(entries: list[Entry], dataset: str) -> Figure | None:
    """Top-1 against GMACs; anytime models as a curve through their steps, clean (solid) and
    under corruption (dashed). The legend sits beside the axes, never on the points."""
    drawn = [e for e in entries if e.clean is not None and e.gmacs is not None]
    if not drawn:
        return None
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for index, e in enumerate(drawn):
        colour = f"C{index % 10}"
        if e.anytime and len(e.clean_steps) == len(e.gmacs_steps):
            ax.plot(e.gmacs_steps, [100 * v for v in e.clean_steps], "o-", color=colour, label=f"{_name(e)}, clean")
            for t, (x, y) in enumerate(zip(e.gmacs_steps, e.clean_steps)):
                ax.annotate(str(t + 1), (x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        else:
            ax.plot([e.gmacs], [100 * e.clean.value], "o", color=colour, label=f"{_name(e)}, clean")
        if e.anytime and len(e.corruption_steps) == len(e.gmacs_steps):
            ax.plot(e.gmacs_steps, [100 * v for v in e.corruption_steps], "s--", color=colour,
                    label=f"{_name(e)}, corruptions")
        elif e.corruption_mean is not None:
            ax.plot([e.gmacs], [100 * e.corruption_mean.value], "s", color=colour, mfc="none",
                    label=f"{_name(e)}, corruptions")
    ax.set_xlabel("GMACs per image (fvcore)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7, frameon=False)
    return fig


def robust_vs_eps(entries: list[Entry], dataset: str) -> Figure | None:
    """Robust accuracy against eps, one panel per attack (honest protocol, default variant), all
    panels on one log eps axis spanning every budget (so an attack run at one eps is a point, not
    a zoomed axis); unreliable models dotted and named so."""
    columns = [c for c in attack_columns(entries)
               if c.protocol == "honest" and c.variant == "default" and c.attack not in ("verdict",)]
    attacks = sorted({(c.attack, c.norm) for c in columns}, key=lambda a: (a[1], attack_rank(a[0]), a[0]))
    if not attacks:
        return None
    fig = Figure(figsize=(2.6 * len(attacks) + 2.2, 3.4), layout="constrained")
    axes = fig.subplots(1, len(attacks), squeeze=False, sharey=True)[0]
    for ax, (attack, norm) in zip(axes, attacks):
        mine = sorted((c for c in columns if c.attack == attack and c.norm == norm), key=lambda c: c.eps)
        everywhere = sorted({(c.eps, c.eps_str) for c in columns if c.norm == norm})
        for index, e in enumerate(entries):
            points = [(c.eps, e.robust[c].value) for c in mine if c in e.robust]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, [100 * y for y in ys], "o" + (":" if e.unreliable else "-"), color=f"C{index % 10}",
                        label=_name(e))
        # Budgets usually double (1, 2, 4, 8/255): a log axis spaces them evenly.
        ax.set_xscale("log", base=2)
        ax.set_xlim(everywhere[0][0] / 1.5, everywhere[-1][0] * 1.5)
        ax.set_xticks([eps for eps, _ in everywhere], [text for _, text in everywhere], fontsize=7)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_title(f"{attack} ({norm})", fontsize=9)
        ax.set_xlabel("eps")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("robust top-1 (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.legend(list(seen.values()), list(seen), loc="outside right upper", fontsize=7, frameon=False)
    return fig


def corruption_heatmaps(entries: list[Entry]) -> Figure | None:
    """Top-1 % per corruption x severity, one panel per model side by side."""
    drawn = [e for e in entries if e.corruption_grid]
    if not drawn:
        return None
    corruptions = sorted({c for e in drawn for c, _ in e.corruption_grid})
    severities = sorted({s for e in drawn for _, s in e.corruption_grid})
    fig = Figure(figsize=(0.35 * len(severities) * len(drawn) + 2.4, 0.24 * len(corruptions) + 1.4),
                 layout="constrained")
    axes = fig.subplots(1, len(drawn), squeeze=False, sharey=True)[0]
    image = None
    for ax, entry in zip(axes, drawn):
        grid = [[100 * entry.corruption_grid.get((c, s), float("nan")) for s in severities] for c in corruptions]
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(severities)), [str(s) for s in severities], fontsize=7)
        ax.set_yticks(range(len(corruptions)), corruptions, fontsize=7)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if value == value:
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=5.5,
                            color="white" if value < 50 else "black")
        ax.set_xlabel("severity", fontsize=7)
        ax.set_title(_name(entry).replace(" (", "\n("), fontsize=7)
    fig.colorbar(image, ax=list(axes), label="top-1 %", shrink=0.8)
    return fig


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
