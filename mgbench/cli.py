"""The ``mgbench`` command line: a thin shell over the library.

Every command parses and validates its options, calls one library function and prints the
result. Bad input raises :class:`mgbench.errors.InputError` (or a click usage error); ``main``
prints it as one line ``error: ...`` and exits with code 2.
"""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mgbench import __version__
from mgbench.errors import InputError

# Tables are wide: outside a terminal (pipes, CI logs) do not squeeze them into 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


# ----------------------------------------------------------------------------- shared options

def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--data, --data-root, --class-list, --limit, --on-bad-image."""
    decorators = [
        click.option("--data", "data_name", default=None,
                     help="Dataset: digits (embedded default, no download) or imagenet100."),
        click.option("--data-root", type=click.Path(), default=None,
                     help="ImageNet folder with train/ and val/ (WNID sub-folders)."),
        click.option("--class-list", default="mgnet", show_default=True,
                     help="ImageNet100 class list: mgnet (first 100 WNIDs) or cmc (Tian et al.)."),
        click.option("--limit", type=int, default=None,
                     help="Evaluate a fixed seeded subset of N images."),
        click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
                     help="Unreadable image: stop with an error, or skip it and report the count."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def runtime_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--device, --batch-size, --workers, --seed, --store, --force."""
    decorators = [
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--batch-size", type=int, default=256, show_default=True),
        click.option("--workers", type=int, default=None, help="DataLoader workers (default: sized to the machine)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--store", type=click.Path(), default=None,
                     help="Results SQLite file [default: results/mgbench.sqlite]."),
        click.option("--force", is_flag=True, help="Recompute cells already in the store."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def _data_spec(data_name: str | None, data_root: str | None, class_list: str, limit: int | None,
               on_bad_image: str, default: str = "digits") -> "DataSpec":
    from mgbench.data import DataSpec

    name = data_name or ("imagenet100" if data_root else default)
    return DataSpec(name=name, root=data_root, class_list=class_list, limit=limit, on_bad_image=on_bad_image)


def _split_names(values: tuple[str, ...]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


class _CellProgress:
    """A rich progress bar over cells and the batches of the current cell (on stderr)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True,
        )
        self.task = self.progress.add_task("batches", total=None)

    def __call__(self, description: str, done: int, total: int) -> None:
        self.progress.update(self.task, description=description, completed=done, total=total)

    def __enter__(self) -> "_CellProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


def _print_frame(frame: "pd.DataFrame", title: str = "accuracy") -> None:
    from mgbench.report.tables import accuracy_table, compute_table

    if (frame["threat"] != "compute").any():
        console.print(accuracy_table(frame, title=title))
    if (frame["threat"] == "compute").any():
        console.print(compute_table(frame))


def _print_cells(store_path: Path, cell_keys: list[str], title: str) -> None:
    from mgbench.store import Store

    with Store(store_path) as store:
        frame = store.frame(cell_key=cell_keys)
    _print_frame(frame, title)


# ----------------------------------------------------------------------------- commands

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mgbench")
def cli() -> None:
    """mgbench: robustness benchmarks for image classifiers, built around MGNet.

    \b
    Quick start (embedded digits data, no download):
      mgbench run --suite clean            clean accuracy of the zoo's digits models
      mgbench run --suite corruptions      15 corruptions x 5 severities
      mgbench attack --eps 4/255           FGSM / PGD / AutoAttack sweep
      mgbench results show                 what the store holds
    Results go to results/mgbench.sqlite (one tidy row per model x condition x metric).
    """


@cli.command()
@click.option("--suite", "suite_name", required=True, help="Suite name (benchmarks/NAME.toml) or a .toml path.")
@click.option("--model", "model_names", multiple=True,
              help="Zoo card, architecture, or FILE.py:FACTORY (repeatable, or comma-separated).")
@data_options
@runtime_options
def run(suite_name: str, model_names: tuple[str, ...], data_name: str | None, data_root: str | None,
        class_list: str, limit: int | None, on_bad_image: str, device: str, batch_size: int,
        workers: int | None, seed: int, store: str | None, force: bool) -> None:
    """Run a suite: every model x condition cell, resumable, into the results store."""
    from mgbench.runner import RunOptions, evaluate
    from mgbench.store import DEFAULT_STORE
    from mgbench.suites import load_suite

    suite = load_suite(suite_name)
    data = _data_spec(data_name, data_root, class_list, limit, on_bad_image, default=suite.dataset)
    options = RunOptions(device=device, batch_size=batch_size, workers=workers, seed=seed, force=force)
    store_path = Path(store) if store else DEFAULT_STORE
    with _CellProgress() as progress:
        outcomes = evaluate(suite, models=_split_names(model_names) or None, data=data, store=store_path,
                            options=options, progress=progress)
    done = sum(o.computed for o in outcomes)
    _print_cells(store_path, [o.cell_key for o in outcomes], title=f"suite {suite.name} on {data.label}")
    console.print(f"{done} cell(s) computed, {len(outcomes) - done} already in {store_path}")


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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-amp", is_flag=True, help="Disable bf16 autocast on GPU.")
@data_options
def train(arch: str, out: str, recipe: str, method: str, epochs: int | None, lr: float | None,
          batch_size: int | None, card: str | None, device: str, workers: int | None, seed: int,
          no_amp: bool, data_name: str | None, data_root: str | None, class_list: str,
          limit: int | None, on_bad_image: str) -> None:
    """Train a model (SGD + OneCycle, seeded, checkpoint every epoch, resumable)."""
    from mgbench.train import train as train_model, write_card

    data = _data_spec(data_name, data_root, class_list, None, on_bad_image)
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), console=err_console)
    task = progress.add_task("train", total=None, epoch=0, loss=float("nan"))

    def report(epoch: int, batch: int, loss: float) -> None:
        progress.update(task, completed=batch, epoch=epoch, loss=loss)

    with progress:
        result = train_model(arch, data, out, recipe=recipe, epochs=epochs, batch_size=batch_size, lr=lr,
                             seed=seed, device=device, method=method, workers=workers, amp=not no_amp,
                             test_limit=limit, progress=report)
    for entry in result.log:
        console.print(f"epoch {entry['epoch']:3d}  loss {entry['train_loss']:.4f}  train {entry['train_acc']:.3f}"
                      f"  test {entry['test_acc']:.3f}  {entry['seconds']:.0f}s")
    console.print(f"weights: {result.weights}")
    if card:
        command = "mgbench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        console.print(f"card: {write_card(result, card, command)}")


@cli.group()
def results() -> None:
    """Inspect and export the results store."""


def _filters(func: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option("--store", type=click.Path(), default=None, help="Results SQLite file."),
        click.option("--model", "model", multiple=True, help="Only these models."),
        click.option("--dataset", multiple=True, help="Only these datasets."),
        click.option("--threat", multiple=True, help="clean, corruption, linf, l2, compute."),
        click.option("--suite", multiple=True, help="Only these suites."),
        click.option("--metric", multiple=True, help="Only these metrics."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def _frame(store: str | None, **filters: tuple[str, ...]) -> "pd.DataFrame":
    from mgbench.store import DEFAULT_STORE, Store

    path = Path(store) if store else DEFAULT_STORE
    if not path.is_file():
        raise InputError(f"no results store at {path}: run a suite first or pass --store")
    with Store(path) as db:
        return db.frame(**{k: list(v) or None for k, v in filters.items()})


@results.command("show")
@_filters
@click.option("--raw", is_flag=True, help="One line per stored row instead of the summary.")
def results_show(store: str | None, raw: bool, **filters: tuple[str, ...]) -> None:
    """Print the stored results as a table."""
    from mgbench.report.tables import rows_table

    frame = _frame(store, **filters)
    if raw:
        columns = ["model", "dataset", "threat", "corruption", "severity", "attack", "eps_str", "step",
                   "metric", "value", "ci_low", "ci_high", "n"]
        console.print(rows_table(frame, columns))
    elif not frame.empty:
        _print_frame(frame)
    console.print(f"{frame['cell_key'].nunique()} cells, {len(frame)} rows")


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


# ----------------------------------------------------------------------------- entry point

def _one_line(exc: BaseException) -> str:
    """The message of an input error, also when it was re-raised from a DataLoader worker."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        text = lines[-1].split("InputError: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI; input errors become one line on stderr and exit 2."""
    try:
        cli.main(args=argv, prog_name="mgbench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except InputError as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2)
