"""``mgbench validate``: external checks of mgbench's numbers, and the ``--robustbench-dir`` option."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from mgbench import distributed
from mgbench.cli.common import _split_names, cli, console, progress_option, runtime_options

if TYPE_CHECKING:
    from mgbench.api import RunOptions


def _set_robustbench_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    from mgbench.models.robustbench import DIR_ENV

    if value is not None:
        os.environ[DIR_ENV] = str(Path(value).expanduser().resolve())


def robustbench_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--robustbench-dir: where ``robustbench:NAME`` models read their weights (no download)."""
    return click.option(
        "--robustbench-dir", type=click.Path(file_okay=False), default=None, expose_value=False,
        callback=_set_robustbench_dir,
        help="RobustBench model folder (DIR/imagenet/Linf/NAME.pt) for --model robustbench:NAME; "
             "nothing is downloaded then [default: robustbench's download into ~/.cache/mgbench/robustbench].",
    )(func)


@cli.group()
def validate() -> None:
    """Check mgbench's numbers against published ones."""


@validate.command("robustbench")
@click.option("--model", "model_names", multiple=True, required=True,
              help="RobustBench ImageNet model, e.g. Salman2020Do_R50 (repeatable, or comma-separated).")
@click.option("--data-root", type=click.Path(), required=True,
              help="ImageNet folder with val/WNID/*.JPEG (RobustBench's 5,000 images are read from it).")
@click.option("--limit", type=int, default=None,
              help="Only a fixed seeded subset of the 5,000 images (wider intervals, cheaper).")
@click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), default="fail", show_default=True)
@robustbench_dir_option
@runtime_options
@progress_option
def validate_robustbench_command(model_names: tuple[str, ...], data_root: str, limit: int | None,
                                 on_bad_image: str, options: "RunOptions", store: str | None) -> None:
    """Reproduce RobustBench's ImageNet numbers: clean and AutoAttack (standard, Linf 4/255).

    \b
    Runs robustbench:NAME on RobustBench's fixed 5,000 ImageNet validation images with the
    model's RobustBench preprocessing, stores the cells, and compares them with the published
    pair (mgbench/data/robustbench_published.json, source named inside). A number agrees when
    the published value lies in the 95% Wilson interval of the measurement. Exit code 1 when
    one does not. Cost: see docs/robustbench.md (AutoAttack on 5,000 ImageNet images is GPU hours).
    \b
    Example:
      mgbench validate robustbench --model Salman2020Do_R50 --data-root ~/imagenet --robustbench-dir ~/rb-models
    """
    from rich.table import Table

    from mgbench.store import DEFAULT_STORE
    from mgbench.validate import validate_robustbench

    store_path = Path(store) if store else DEFAULT_STORE
    comparisons = []
    for name in _split_names(model_names):
        comparisons += validate_robustbench(name, data_root, store=store_path, limit=limit,
                                            on_bad_image=on_bad_image, options=options)
    if not distributed.is_main():
        return
    table = Table(title="mgbench vs RobustBench (published)")
    for column in ("model", "quantity", "n", "mgbench %", "95% interval", "published %", "diff pp", "agrees"):
        table.add_column(column)
    for c in comparisons:
        m = c.measured
        table.add_row(c.model, c.quantity, str(m.n), f"{100 * m.value:.2f}",
                      f"[{100 * m.ci_low:.2f}, {100 * m.ci_high:.2f}]", f"{c.published:.2f}",
                      f"{c.difference_pp:+.2f}", "yes" if c.agrees else "NO")
    console.print(table)
    if not all(c.agrees for c in comparisons):
        sys.exit(1)
