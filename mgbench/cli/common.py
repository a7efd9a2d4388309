"""What every command module of the ``mgbench`` command line shares: the click group :data:`cli`,
the shared options, the consoles, and ``main`` (the console entry point, re-exported by
``mgbench/cli/__init__.py``, which imports the command modules so they register on :data:`cli`).

Every command parses and validates its options, calls one library function and prints the
result. Bad input raises :class:`mgbench.errors.InputError` (or a click usage error); ``main``
prints it as one line ``error: ...`` and exits with code 2 (with ``--debug`` or
``MGBENCH_DEBUG=1``: the full traceback, with the user code's exception that caused it).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click
from rich.console import Console

from mgbench._version import __version__
from mgbench.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from mgbench.data import DataSpec

# Outside a terminal (pipes, CI logs) tables get 200 columns unless $COLUMNS says otherwise.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
err_console = Console(stderr=True)


# ----------------------------------------------------------------------------- shared options

# Seeds that every generator takes (NumPy's is the narrowest) and the store's INTEGER holds.
SEED = click.IntRange(0, 2**32 - 1)


class LazyHelpOption(click.Option):
    """An option whose help is written when ``--help`` asks for it, from a registry that is too
    slow to import for every command (the attack registry imports torch and AutoAttack)."""

    def __init__(self, *args: Any, help_from: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help_from = help_from

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self.help_from()
        return super().get_help_record(ctx)


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--data, --data-root, --class-list, --limit, --on-bad-image."""
    decorators = [
        click.option("--data", "data_name", default=None,
                     help="Dataset: digits (embedded default, no download), imagenet100, or imagenet1k "
                          "(RobustBench's 5,000 validation images)."),
        click.option("--data-root", type=click.Path(), default=None,
                     help="ImageNet folder with train/ and val/ (WNID sub-folders)."),
        click.option("--class-list", default="mgnet", show_default=True,
                     help="ImageNet100 class list: mgnet (first 100 WNIDs) or cmc (Tian et al.)."),
        click.option("--limit", type=int, default=None,
                     help="Use a fixed seeded subset of N images (never the first N files); "
                          "N above the data size runs all of them and says so."),
        click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
                     help="Unreadable image: stop with an error, or skip it and report the count."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def runtime_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--device, --batch-size, --workers, --seed, --force, --precision, --channels-last, --compile
    (passed to the command as one ``options: RunOptions``) and --store."""

    @functools.wraps(func)
    def with_options(*args: Any, device: str, batch_size: int, workers: int | None, seed: int, force: bool,
                     precision: str, channels_last: bool, compile: bool, **kwargs: Any) -> Any:
        from mgbench.api import RunOptions

        options = RunOptions(device=device, batch_size=batch_size, workers=workers, seed=seed, force=force,
                             precision=precision, channels_last=channels_last, compile=compile)
        return func(*args, options=options, **kwargs)

    decorators = [
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--batch-size", type=int, default=256, show_default=True,
                     help="Images per batch; not part of a cell's key (cost per image against "
                          "batch size on this device: benchmarks/perf/batch_size.py)."),
        click.option("--workers", type=int, default=None, help="DataLoader workers (default: sized to the machine)."),
        click.option("--seed", type=SEED, default=0, show_default=True, help="0 to 2**32 - 1."),
        click.option("--store", type=click.Path(), default=None, callback=_nonempty_path,
                     help="Results SQLite file [default: results/local.sqlite, git-ignored]."),
        click.option("--force", is_flag=True, help="Recompute cells already in the store."),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                     help="bf16: models run under bf16 autocast (images and perturbations stay fp32)."),
        click.option("--channels-last", is_flag=True, help="NHWC images and weights (faster on GPUs)."),
        click.option("--compile", is_flag=True, help="torch.compile each model's forward."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), with_options)


def _data_spec(data_name: str | None, data_root: str | None, class_list: str, limit: int | None,
               on_bad_image: str, default: str = "digits") -> "DataSpec":
    from mgbench.data import DataSpec

    name = data_name or ("imagenet100" if data_root else default)
    return DataSpec(name=name, root=data_root, class_list=class_list, limit=limit, on_bad_image=on_bad_image)


def _split_names(values: tuple[str, ...], option: str = "--model") -> list[str]:
    """The names of a repeatable, comma-separated option; given but naming nothing is an error
    (an empty --model must not mean "every model of the suite")."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if values and not names:
        raise InputError(f"{option} {values[0]!r} names nothing: pass a name, or leave {option} out for the default")
    return names


def _nonempty_path(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback of path options: an empty string is no path (it must not mean the default)."""
    values = value if isinstance(value, tuple) else (value,)
    if any(v is not None and not str(v).strip() for v in values):
        raise click.BadParameter("an empty path names nothing: pass a path, or leave the option out for the default")
    return value


def progress_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--quiet, and progress for the command's duration: bars when stderr is a terminal, a plain
    log line at most every 15 s otherwise (mgbench/progress.py)."""

    @functools.wraps(func)
    def with_progress(*args: Any, quiet: bool, **kwargs: Any) -> Any:
        from mgbench import progress

        with progress.reporting(progress.for_console(err_console, quiet)):
            return func(*args, **kwargs)

    return click.option("--quiet", "-q", is_flag=True, help="No progress on stderr (bars or log lines).")(
        with_progress)


def _print_frame(frame: "pd.DataFrame", title: str = "accuracy") -> None:
    from mgbench.report.tables import grouped_tables

    for table in grouped_tables(frame, title):
        console.print(table)


def _print_cells(store_path: Path, cell_keys: list[str], title: str) -> None:
    from mgbench.store import Store

    with Store(store_path) as store:
        frame = store.frame(cell_key=cell_keys)
    _print_frame(frame, title)
    _print_data_notes(frame)


def _print_data_notes(frame: "pd.DataFrame") -> None:
    """Say when cells ran on fewer images than asked: unreadable images skipped, or a --limit
    above the size of the data (both are also in the stored rows)."""
    skipped = frame[frame["metric"] == "skipped_images"]
    for count, cells in skipped.groupby("value"):
        console.print(f"note: {int(count)} unreadable image(s) skipped (--on-bad-image skip) in each of "
                      f"{len(cells)} cell(s); their accuracies count only the images that were read")
    limits: dict[tuple[str, str, int, int], int] = {}
    for row in frame[(frame["metric"] == "top1") & frame["detail"].notna()].itertuples():
        detail = json.loads(row.detail)
        if "limit_requested" in detail:
            key = (row.dataset, row.split, detail["limit_requested"], detail["images_available"])
            limits[key] = limits.get(key, 0) + 1
    for (dataset, split, requested, available), cells in limits.items():
        console.print(f"note: --limit {requested} is more than the {available} images of {dataset} {split}: "
                      f"{cells} cell(s) ran on all {available}")


# ----------------------------------------------------------------------------- the group

_debug = False  # set by --debug / MGBENCH_DEBUG=1: errors show their traceback


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mgbench")
@click.option("--debug", is_flag=True,
              help="On an error, print the full traceback (with the user code's own exception) instead of one line; "
                   "MGBENCH_DEBUG=1 does the same.")
def cli(debug: bool) -> None:
    """mgbench: robustness benchmarks for image classifiers, built around MGNet.

    \b
    Quick start (embedded digits data, no download):
      mgbench run --suite clean            clean accuracy of the zoo's digits models
      mgbench run --suite corruptions      15 corruptions x 5 severities
      mgbench attack --eps 4/255           FGSM / PGD / AutoAttack sweep
      mgbench results show                 what the store holds
    Results go to results/local.sqlite (git-ignored; one tidy row per model x condition x metric);
    the committed reference results are results/reference.sqlite.
    """
    global _debug
    _debug = _debug or debug


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
    global _debug
    _debug = os.environ.get("MGBENCH_DEBUG", "") not in ("", "0")
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
        if _debug:
            traceback.print_exc()
        else:
            click.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2)
