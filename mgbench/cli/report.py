"""Report commands: leaderboard (and the regression guard)."""

from __future__ import annotations

from pathlib import Path

import click

from mgbench.cli.common import _nonempty_path, cli, console, progress_option
from mgbench.errors import InputError
from mgbench.provenance import REPO_ROOT

TRACKED_BOARD = REPO_ROOT / "results" / "leaderboard"
LOCAL_BOARD = REPO_ROOT / "results" / "local-leaderboard"


@cli.command()
@click.option("--store", "stores", type=click.Path(), multiple=True, callback=_nonempty_path,
              help="Results SQLite file(s), repeatable [default: results/reference.sqlite; with --local, also "
                   "results/local.sqlite].")
@click.option("--local", is_flag=True,
              help="Your own results beside the reference: read results/reference.sqlite and results/local.sqlite "
                   "(where present) into results/local-leaderboard (git-ignored).")
@click.option("--out", type=click.Path(), default=None, callback=_nonempty_path,
              help="Output folder: new, empty, or a previous leaderboard build, which is replaced [default: "
                   "results/leaderboard, the committed page, which only results/reference.sqlite may write; "
                   "with --local: results/local-leaderboard].")
@click.option("--glimpses", "glimpse_dir", type=click.Path(), default=None,
              help="Folder of glimpse pictures to include [default: results/glimpses].")
@click.option("--include-random-init", is_flag=True,
              help="Also list models with untrained (random-init) weights, left out by default.")
@click.option("--force", is_flag=True,
              help="Write into an --out folder that also holds files the leaderboard did not write "
                   "(they are kept; only a previous build's own files are replaced).")
@click.option("--screenshots", is_flag=True,
              help="Also screenshot the page in headless Chromium at 1280 and 390 px (screenshot-*.png; needs "
                   "chromium).")
def leaderboard(stores: tuple[str, ...], local: bool, out: str | None, glimpse_dir: str | None,
                include_random_init: bool, force: bool, screenshots: bool) -> None:
    """Derive the leaderboard (md, html, csv, RobustBench json, plots) from the results store(s).

    Several stores are read as one table; where they hold the same condition, the cell with the
    largest n, then the newest, is shown. The committed page (results/leaderboard) is built from
    the committed reference (results/reference.sqlite) alone; --local builds the reference and your
    local store into results/local-leaderboard. Models with untrained (random-init) weights are
    left out unless --include-random-init is given. The folder is built beside --out and swapped
    in; a folder holding files the leaderboard did not write is refused (--force writes beside them)."""
    import pandas as pd

    from mgbench.report.build import build
    from mgbench.report.leaderboard import trained_rows
    from mgbench.store import DEFAULT_STORE, REFERENCE_STORE, Store

    if stores:
        paths = [Path(s) for s in stores]
    elif local:
        paths = [p for p in (REFERENCE_STORE, DEFAULT_STORE) if p.is_file()] or [DEFAULT_STORE]
    else:
        paths = [REFERENCE_STORE]
    for path in paths:
        if not path.is_file():
            raise InputError(f"no results store at {path}: run a suite first (e.g. `make demo`) or pass --store")
    target = Path(out) if out else (LOCAL_BOARD if local else TRACKED_BOARD)
    if target.resolve() == TRACKED_BOARD.resolve() and [p.resolve() for p in paths] != [REFERENCE_STORE.resolve()]:
        raise InputError(f"{TRACKED_BOARD} is the committed leaderboard, built from {REFERENCE_STORE} alone: "
                         "build other stores with --local (into results/local-leaderboard) or --out DIR")
    frames = []
    for path in paths:
        with Store(path, readonly=True) as db:
            frames.append(db.frame())
    frame, untrained = pd.concat(frames, ignore_index=True), []
    if not include_random_init:
        frame, untrained = trained_rows(frame)
        if frame.empty and untrained:
            raise InputError(f"the store holds only untrained (random-init) models ({', '.join(untrained)}): "
                             "pass --include-random-init to list them anyway")
    if screenshots:
        from mgbench.report.screenshots import browser

        browser()  # a missing chromium is an error before anything is written
    result = build(frame, target, Path(glimpse_dir) if glimpse_dir else REPO_ROOT / "results" / "glimpses",
                   source=", ".join(_shown(p) for p in paths), force=force, screenshots=screenshots)
    console.print(f"{len(result.entries)} model x dataset entries, {len(result.files)} files -> {result.out}")
    if untrained:
        console.print(f"left out (random-init weights; --include-random-init lists them): {', '.join(untrained)}")
    for name in ("index.md", "index.html", "leaderboard.csv"):
        console.print(f"  {result.out / name}")


def _shown(path: Path) -> str:
    """A store's path as the page names it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@cli.command()
@click.option("--baseline", type=click.Path(), required=True, help="Baseline table, e.g. results/baseline/digits.csv.")
@click.option("--suite", "suite_name", default="regression", show_default=True, help="The suite to run fresh.")
@click.option("--store", type=click.Path(), default=None, callback=_nonempty_path,
              help="Store for the fresh run [default: a temporary file, so every number is recomputed].")
@click.option("--update", is_flag=True, help="Rewrite the baseline from the fresh run (deliberately).")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@progress_option
def regress(baseline: str, suite_name: str, store: str | None, update: bool, device: str, batch_size: int) -> None:
    """Guard accuracy versus compute: fail (exit 1) when a fresh run of the regression suite loses
    accuracy beyond its statistical margin or gains more than 1% compute over the baseline."""
    import sys
    import tempfile

    from rich.table import Table

    from mgbench.api import RunOptions, evaluate
    from mgbench.report.regress import compare, failed, read_baseline, table_from_frame, write_baseline
    from mgbench.suites import load_suite

    baseline_path = Path(baseline)
    suite = load_suite(suite_name)
    base = None if update else read_baseline(baseline_path)
    options = RunOptions(device=device, batch_size=batch_size, force=store is None)
    with tempfile.TemporaryDirectory() as folder:
        store_path = Path(store) if store else Path(folder) / "regress.sqlite"
        fresh = table_from_frame(evaluate(suite, store=store_path, options=options))
    if update:
        write_baseline(fresh, baseline_path)
        console.print(f"baseline rewritten: {len(fresh)} rows -> {baseline_path}")
        return
    comparison = compare(base, fresh)
    table = Table(title=f"regression guard: suite {suite.name} against {baseline_path}")
    for column in ("model", "condition", "metric", "step", "base", "new", "delta", "allowed", "status"):
        table.add_column(column, justify="left" if column in ("model", "condition", "metric", "status") else "right")

    def show(value: object) -> str:
        if value is None or value != value:  # None or NaN
            return ""
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    for row in comparison.to_dict("records"):
        style = "" if row["status"] in ("ok", "new") else "bold red"
        table.add_row(row["model"], row["condition"], row["metric"], "" if row["step"] == -1 else str(row["step"]),
                      show(row["base"]), show(row["new"]), show(row["delta"]), show(row["allowed"]), row["status"],
                      style=style)
    console.print(table)
    bad = comparison[~comparison["status"].isin(["ok", "new"])]
    if failed(comparison):
        console.print(f"[bold red]FAILED[/bold red]: {len(bad)} of {len(comparison)} guarded numbers regressed "
                      "(accuracy below its 95% margin, compute up more than 1%, or missing)")
        sys.exit(1)
    console.print(f"passed: {len(comparison)} guarded numbers within their margins")
