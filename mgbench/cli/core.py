"""Core commands: run, train, results show/export, models, suites."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from mgbench import distributed
from mgbench.cli.common import (
    SEED,
    _data_spec,
    _nonempty_path,
    _print_cells,
    _print_frame,
    _split_names,
    cli,
    console,
    data_options,
    err_console,
    progress_option,
    runtime_options,
)
from mgbench.cli.validate import robustbench_dir_option
from mgbench.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from mgbench.api import Plan, RunOptions

@cli.command()
@click.option("--suite", "suite_name", required=True, help="Suite name (benchmarks/NAME.toml) or a .toml path.")
@click.option("--model", "model_names", multiple=True,
              help="Zoo card, architecture, or FILE.py:FACTORY (repeatable, or comma-separated).")
@data_options
@robustbench_dir_option
@runtime_options
@click.option("--corruptions", "corruption_names", default=None,
              help="[corruption suites] common, extra, all or comma-separated names.")
@click.option("--severities", default=None, help="[corruption suites] e.g. 1-5 or 1,3,5.")
@click.option("--backend", "corruption_backend", default=None,
              help="[corruption suites] torch (fast), reference (imagecorruptions) or folder (pre-generated).")
@click.option("--imagenet-c-root", type=click.Path(), default=None,
              help="[corruption suites] ImageNet-C style folder for --backend folder.")
@click.option("--corruption-preprocessing", default=None,
              help="[corruption suites] hendrycks (CenterCrop 224) or mgnet (Resize 256 + CenterCrop 224).")
@click.option("--mce-baseline", default=None, help="[corruption suites] model that normalises CE/mCE, or alexnet.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the plan (cells to compute, cells stored, estimated time: from the store's timings of "
                   "cells of the same architecture and type taken alone, else from a timed probe of the cell on a "
                   "few images) and exit without computing or writing anything.")
@click.option("--plan-images", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images each probed cell runs on, with --plan.")
@progress_option
def run(suite_name: str, model_names: tuple[str, ...], data_name: str | None, data_root: str | None,
        class_list: str, limit: int | None, on_bad_image: str, options: "RunOptions", store: str | None,
        corruption_names: str | None,
        severities: str | None, corruption_backend: str | None, imagenet_c_root: str | None,
        corruption_preprocessing: str | None, mce_baseline: str | None, plan_only: bool, plan_images: int) -> None:
    """Run a suite: every model x condition cell, resumable, into the results store.

    It first says how many cells it will compute and how many are stored already; --plan adds
    an estimate of the time (from stored timings, else a short timed probe) and stops there."""
    from mgbench import api
    from mgbench.corruptions.condition import check_known_baseline
    from mgbench.store import DEFAULT_STORE
    from mgbench.suites import load_suite

    suite = load_suite(suite_name)
    data = _data_spec(data_name, data_root, class_list, limit if limit is not None else suite.limit, on_bad_image,
                      default=suite.dataset)
    store_path = Path(store) if store else DEFAULT_STORE
    corruption = {"corruptions": corruption_names, "severities": severities, "backend": corruption_backend,
                  "imagenet_c_root": imagenet_c_root, "preprocessing": corruption_preprocessing,
                  "mce_baseline": mce_baseline}
    if any(v is not None for v in corruption.values()) and "corruption" not in suite.types():
        raise InputError(f"corruption options given, but suite {suite.name} has no corruption conditions")
    suite.expand({"corruption": corruption})  # bad options fail here, before the progress bar draws
    for table in suite.tables("corruption", {"corruption": corruption}):
        check_known_baseline(table.get("mce_baseline"))
    prepared = api.prepare(suite, _split_names(model_names) or None, data=data, options=options,
                           corruption=corruption)
    plan = api.plan(prepared, store_path, plan_images if plan_only else 0)
    if distributed.is_main():
        _print_plan(plan, store_path, estimate=plan_only)
    if plan_only:
        return
    outcomes = api.run(prepared, store_path)
    if not distributed.is_main():
        return
    done = sum(o.computed for o in outcomes)
    _print_cells(store_path, [o.cell_key for o in outcomes], title=f"suite {suite.name} on {data.label}")
    console.print(f"{done} cell(s) computed, {len(outcomes) - done} already in {store_path}")


def _print_plan(plan: "Plan", store: Path, estimate: bool) -> None:
    """The plan: counts always; with ``estimate``, a row per model and cell type with its seconds
    per image and where they come from (stored timings or a probe), and the total, with the load
    average the probes ran at."""
    from rich.table import Table

    from mgbench.progress import duration

    pending = len(plan.pending)
    console.print(f"plan: {pending} cell(s) to compute, {len(plan.cells) - pending} already in {store} "
                      "(plus each model's compute cell and summaries)")
    if not estimate:
        return
    table = Table(box=None)
    for column in ("model", "cell type", "to compute", "stored", "s/image", "estimate", "from"):
        table.add_column(column, overflow="fold")
    for row in plan.by_type():
        per_image = "-" if row["s/image"] is None else f"{row['s/image']:.3g}"
        table.add_row(row["model"], row["cell type"], str(row["to compute"]), str(row["stored"]), per_image,
                      duration(row["seconds"]) if row["to compute"] else "-", row["from"])
    console.print(table)
    probe = max((c.probe_images for c in plan.pending), default=0)
    load = ", ".join(f"{x:.2f}" for x in plan.load_average)
    timed = sum(1 for c in plan.pending if c.timed_cells)
    elsewhere = sum(1 for c in plan.pending if c.timed_cells and c.timed_batch != plan.batch_size)
    console.print(f"estimated {duration(plan.seconds)} for {pending} cell(s) on {plan.device} "
                  f"({plan.threads} torch thread(s)): {timed} from stored timings of cells taken alone "
                  f"({elsewhere} of them at another batch size than {plan.batch_size}), "
                  f"{pending - timed} from probes of {probe} image(s) per cell at load average {load}; a probe "
                  "of a few images overstates an attack cell (per-batch cost) and attacks cost more on robust "
                  "images, so this is an order of magnitude, not a timing")


@cli.command()
@click.option("--model", "arch", required=True, help="Architecture to train (see `mgbench models`).")
@click.option("--out", type=click.Path(), required=True, help="Run folder (checkpoints, log); resumes if present.")
@click.option("--recipe", default="tiny", show_default=True, help="tiny (digits) or mgnet (official recipe).")
@click.option("--method", default="standard", show_default=True, help="Training method: standard or gwi.")
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs.")
@click.option("--lr", type=float, default=None, help="Override the recipe's peak learning rate.")
@click.option("--batch-size", type=int, default=None, help="Override the recipe's batch size.")
@click.option("--card", default=None, help="Also copy the weights into the zoo and write models/CARD.toml.")
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", type=int, default=None)
@click.option("--seed", type=SEED, default=0, show_default=True, help="0 to 2**32 - 1.")
@click.option("--no-amp", is_flag=True, help="Disable bf16 autocast on GPU.")
@data_options
@progress_option
def train(arch: str, out: str, recipe: str, method: str, epochs: int | None, lr: float | None,
          batch_size: int | None, card: str | None, device: str, workers: int | None, seed: int,
          no_amp: bool, data_name: str | None, data_root: str | None, class_list: str,
          limit: int | None, on_bad_image: str) -> None:
    """Train a model (SGD + OneCycle, seeded, checkpoint every epoch, resumable)."""
    from mgbench.train import train as train_model
    from mgbench.train import write_card

    data = _data_spec(data_name, data_root, class_list, limit, on_bad_image)
    result = train_model(arch, data, out, recipe=recipe, epochs=epochs, batch_size=batch_size, lr=lr,
                         seed=seed, device=device, method=method, workers=workers, amp=not no_amp)
    if not distributed.is_main():
        return
    for entry in result.log:
        console.print(f"epoch {entry['epoch']:3d}  loss {entry['train_loss']:.4f}  train {entry['train_acc']:.3f}"
                      f"  test {entry['test_acc']:.3f}  {entry['seconds']:.0f}s")
    console.print(f"weights: {result.weights}")
    if card:
        console.print(f"card: {write_card(result, card, _command_line(click.get_current_context()))}")


def _command_line(ctx: click.Context) -> str:
    """The command as given (options left at their defaults omitted), rebuilt from the parsed
    parameters so that it is right however the CLI was invoked (also in-process, from tests)."""
    parts = ["mgbench", ctx.info_name or "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value is False or value == param.default or not isinstance(param, click.Option):
            continue
        parts += [param.opts[0]] if param.is_flag else [param.opts[0], str(value)]
    return " ".join(shlex.quote(part) for part in parts)


@cli.group()
def results() -> None:
    """Inspect and export the results store."""


THREATS = ("clean", "corruption", "linf", "l2", "compute")


def _filters(func: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option("--store", type=click.Path(), default=None, callback=_nonempty_path, help="Results SQLite file."),
        click.option("--model", "model", multiple=True, help="Only these models."),
        click.option("--dataset", multiple=True, help="Only these datasets."),
        click.option("--threat", multiple=True, type=click.Choice(THREATS), help="Only these threats."),
        click.option("--attack", multiple=True,
                     help="Only these attacks (fgsm, pgd, autoattack-standard, verdict, ...)."),
        click.option("--corruption", multiple=True, help="Only these corruptions (and their summaries: mean)."),
        click.option("--eps", "eps_str", multiple=True, help="Only these budgets, as stored (e.g. 4/255)."),
        click.option("--suite", multiple=True, help="Only these suites."),
        click.option("--metric", multiple=True, help="Only these metrics."),
        click.option("--subset", multiple=True, help="Only these image subsets (the hash, as `results show` prints)."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def _frame(store: str | None, **filters: tuple[str, ...]) -> "pd.DataFrame":
    from mgbench.store import DEFAULT_STORE, Store

    path = Path(store) if store else DEFAULT_STORE
    if not path.is_file():
        raise InputError(f"no results store at {path}: run a suite first or pass --store")
    prefixes = filters.pop("subset", ())
    with Store(path, readonly=True) as db:
        frame = db.frame(**{k: list(v) or None for k, v in filters.items()})
    if prefixes:  # `results show` prints the subset hash shortened: match on its start
        frame = frame[frame["subset"].fillna("").map(lambda s: s.startswith(tuple(prefixes)))]
    return frame


@results.command("show")
@_filters
@click.option("--raw", is_flag=True, help="One line per stored row instead of the summary.")
def results_show(store: str | None, raw: bool, **filters: tuple[str, ...]) -> None:
    """Print the stored results: per model a table of its clean and attack cells and a grid of its
    corruption cells, then the corruption summary, compute and verdict tables. Every line shows
    its n and image subset (the start of the subset hash); the options narrow what is shown."""
    from mgbench.report.tables import rows_table

    frame = _frame(store, **filters)
    if raw:
        columns = ["model", "dataset", "threat", "corruption", "severity", "attack", "eps_str", "step",
                   "metric", "value", "ci_low", "ci_high", "n"]
        console.print(rows_table(frame, columns))
    elif not frame.empty:
        _print_frame(frame)
    console.print(f"{frame['cell_key'].nunique()} cells, {len(frame)} rows")
    if frame.empty and any(filters.values()):
        console.print("note: no stored row matches these filters; `mgbench results show --store FILE` without "
                      "them lists what the store holds")


@results.command("export")
@_filters
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(), required=True, help="Output file.")
def results_export(store: str | None, fmt: str, out: str, **filters: tuple[str, ...]) -> None:
    """Export the tidy rows (with provenance columns) as CSV or Parquet."""
    from mgbench.store import export

    frame = _frame(store, **filters)
    path = export(frame, Path(out), fmt)
    console.print(f"{len(frame)} rows -> {path}")


@results.command("merge")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--into", required=True, type=click.Path(), help="The merged store (created when missing).")
def results_merge(sources: tuple[str, ...], into: str) -> None:
    """Merge stores of separate jobs into one: identical cells once, conflicting copies reported
    (the first kept), every summary recomputed from all merged cells."""
    from mgbench.merge import merge

    report = merge([Path(s) for s in sources], Path(into))
    for line in report.conflicts:
        err_console.print(f"conflict: {line}", soft_wrap=True, markup=False)
    for line in report.not_recomputed:
        err_console.print(f"summaries not recomputed (kept where the sources agree): {line}", soft_wrap=True,
                          markup=False)
    for line in report.summaries_dropped:
        err_console.print(f"summary dropped (the sources disagree and it cannot be recomputed from stored cells; "
                          f"rerun its suite on {into}): {line}", soft_wrap=True, markup=False)
    console.print(f"{report.copied} cell(s) copied, {report.identical} identical duplicate(s) skipped, "
                  f"{len(report.conflicts)} conflict(s), {report.summaries_recomputed} summary(ies) recomputed, "
                  f"{len(report.summaries_dropped)} dropped -> {into}")


@cli.command()
def models() -> None:
    """List registered architectures and zoo cards."""
    from rich.table import Table

    from mgbench.models import get_entry, list_architectures, list_cards

    table = Table(title="architectures")
    for column in ("name", "family", "description"):
        table.add_column(column)
    for name in list_architectures():
        entry = get_entry(name)
        table.add_row(name, entry.family, entry.description)
    console.print(table)
    cards = Table(title="zoo cards (models/)")
    for column in ("card", "architecture", "dataset", "checkpoint"):
        cards.add_column(column)
    for card in list_cards().values():
        cards.add_row(card.name, card.architecture, card.dataset, card.checkpoint.name if card.checkpoint else "-")
    console.print(cards)


@cli.command()
def suites() -> None:
    """List the suites (benchmarks/*.toml)."""
    from mgbench.suites import list_suites

    for suite in list_suites().values():
        types = ", ".join(sorted(suite.types()))
        console.print(f"[bold]{suite.name}[/bold]  ({types}; default models: {', '.join(suite.models)})")
        if suite.description:
            console.print(f"    {suite.description}")


