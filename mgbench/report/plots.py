"""Leaderboard plots (matplotlib's object API: no pyplot state, any backend untouched)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from mgbench.report.leaderboard import Entry, attack_columns


def accuracy_vs_compute(entries: list[Entry], dataset: str) -> Figure | None:
    """Top-1 against GMACs; anytime models as a curve through their steps, clean (solid) and
    under corruption (dashed)."""
    drawn = [e for e in entries if e.clean is not None and e.gmacs is not None]
    if not drawn:
        return None
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for index, e in enumerate(drawn):
        colour = f"C{index % 10}"
        if e.anytime and len(e.clean_steps) == len(e.gmacs_steps):
            ax.plot(e.gmacs_steps, [100 * v for v in e.clean_steps], "o-", color=colour, label=f"{e.model} (clean)")
            for t, (x, y) in enumerate(zip(e.gmacs_steps, e.clean_steps)):
                ax.annotate(str(t + 1), (x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        else:
            ax.plot([e.gmacs], [100 * e.clean.value], "o", color=colour, label=f"{e.model} (clean)")
        if e.anytime and len(e.corruption_steps) == len(e.gmacs_steps):
            ax.plot(e.gmacs_steps, [100 * v for v in e.corruption_steps], "s--", color=colour,
                    label=f"{e.model} (corruptions)")
        elif e.corruption_mean is not None:
            ax.plot([e.gmacs], [100 * e.corruption_mean.value], "s", color=colour, mfc="none",
                    label=f"{e.model} (corruptions)")
    ax.set_xlabel("GMACs per image (fvcore)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{dataset}: accuracy versus compute (numbers: glimpses)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def robust_vs_eps(entries: list[Entry], dataset: str) -> Figure | None:
    """Robust accuracy against eps, one panel per attack (honest protocol, default variant)."""
    columns = [c for c in attack_columns(entries)
               if c.protocol == "honest" and c.variant == "default" and c.attack not in ("verdict",)]
    attacks = sorted({(c.attack, c.norm) for c in columns})
    if not attacks:
        return None
    fig = Figure(figsize=(4 * len(attacks), 3.8), layout="constrained")
    axes = fig.subplots(1, len(attacks), squeeze=False)[0]
    for ax, (attack, norm) in zip(axes, attacks):
        mine = sorted((c for c in columns if c.attack == attack and c.norm == norm), key=lambda c: c.eps)
        for index, e in enumerate(entries):
            points = [(c.eps, e.robust[c].value) for c in mine if c in e.robust]
            if points:
                xs, ys = zip(*points)
                scale = 255 if norm == "linf" else 1
                ax.plot([x * scale for x in xs], [100 * y for y in ys], "o-", color=f"C{index % 10}", label=e.model)
        ax.set_title(f"{attack} ({norm})")
        ax.set_xlabel("eps (x/255)" if norm == "linf" else "eps (L2)")
        ax.set_ylabel("robust top-1 (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{dataset}: robust accuracy versus eps")
    return fig


def corruption_heatmap(entry: Entry) -> Figure | None:
    """Top-1 per corruption x severity."""
    if not entry.corruption_grid:
        return None
    corruptions = sorted({c for c, _ in entry.corruption_grid})
    severities = sorted({s for _, s in entry.corruption_grid})
    grid = [[100 * entry.corruption_grid.get((c, s), float("nan")) for s in severities] for c in corruptions]
    fig = Figure(figsize=(1.2 * len(severities) + 3, 0.32 * len(corruptions) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(severities)), [str(s) for s in severities])
    ax.set_yticks(range(len(corruptions)), corruptions, fontsize=8)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 50 else "black")
    ax.set_xlabel("severity")
    ax.set_title(f"{entry.model} on {entry.dataset}: top-1 %")
    fig.colorbar(image, ax=ax)
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
