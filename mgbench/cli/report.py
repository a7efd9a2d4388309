"""Report commands: leaderboard (and the regression guard)."""

from __future__ import annotations

from pathlib import Path

import click

from mgbench.cli import cli, console
from mgbench.errors import InputError
from mgbench.provenance import REPO_ROOT


@cli.command()
@click.option("--store", type=click.Path(), default=None, help="Results SQLite file [default: results/mgbench.sqlite].")
@click.option("--out", type=click.Path(), default=None, help="Output folder [default: results/leaderboard].")
@click.option("--glimpses", "glimpse_dir", type=click.Path(), default=None,
              help="Folder of glimpse pictures to include [default: results/glimpses].")
def leaderboard(store: str | None, out: str | None, glimpse_dir: str | None) -> None:
    """Derive the leaderboard (md, html, csv, RobustBench json, plots) from the results store."""
    from mgbench.report.build import build
    from mgbench.store import DEFAULT_STORE, Store

    path = Path(store) if store else DEFAULT_STORE
    if not path.is_file():
        raise InputError(f"no results store at {path}: run a suite first (e.g. `make demo`) or pass --store")
    with Store(path) as db:
        frame = db.frame()
    result = build(frame, Path(out) if out else REPO_ROOT / "results" / "leaderboard",
                   Path(glimpse_dir) if glimpse_dir else REPO_ROOT / "results" / "glimpses", source=str(path))
    console.print(f"{len(result.entries)} model x dataset entries, {len(result.files)} files -> {result.out}")
    for name in ("index.md", "index.html", "leaderboard.csv"):
        console.print(f"  {result.out / name}")
