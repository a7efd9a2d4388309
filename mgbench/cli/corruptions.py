"""``mgbench corruptions``: list the corruptions, build ImageNet100-C."""

from __future__ import annotations

import click
from rich.table import Table

from mgbench.cli.common import cli, console, progress_option
from mgbench.errors import InputError


@cli.group()
def corruptions() -> None:
    """ImageNet-C corruptions: list them, generate ImageNet100-C."""


@corruptions.command("list")
def list_corruptions() -> None:
    """The 19 corruptions, their family and group, and which ones scaling resample224 resizes."""
    from mgbench.corruptions.names import ALL, COMMON, FAMILY
    from mgbench.corruptions.scaling import RESAMPLED

    table = Table(title="corruptions (severities 1-5)")
    for column in ("name", "group", "family", "resample224"):
        table.add_column(column)
    for name in ALL:
        table.add_row(name, "common" if name in COMMON else "extra", FAMILY[name], "yes" if name in RESAMPLED else "")
    console.print(table)


@corruptions.command("generate")
@click.option("--data", "data_name", default="imagenet100", show_default=True, help="Only imagenet100.")
@click.option("--data-root", type=click.Path(), required=True, help="ImageNet folder with val/ (WNID sub-folders).")
@click.option("--class-list", default="mgnet", show_default=True, help="mgnet or cmc.")
@click.option("--split", default="val", show_default=True, help="Split folder to corrupt (val or train).")
@click.option("--out", type=click.Path(), required=True, help="Output folder (ImageNet-C layout); resumes if present.")
@click.option("--corruptions", "corruption_names", default="common", show_default=True,
              help="common, extra, all or comma-separated names.")
@click.option("--severities", default="1-5", show_default=True)
@click.option("--workers", type=int, default=None, help="Processes (default: one per core).")
@click.option("--limit", type=int, default=None,
              help="Only the fixed seeded subset of N images that `mgbench run --limit N` evaluates.")
@click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="Unreadable source image: stop with an error (before anything is written), or leave it "
                   "out and report the count.")
@progress_option
def generate(data_name: str, data_root: str, class_list: str, split: str, out: str, corruption_names: str,
             severities: str, workers: int | None, limit: int | None, on_bad_image: str) -> None:
    """Build ImageNet100-C: Resize 256, CenterCrop 224, corrupt (reference backend, seeded),
    save JPEG quality 85 as OUT/corruption/severity/WNID/name.JPEG."""
    from mgbench.corruptions.generate import generate_imagenet_c
    from mgbench.corruptions.names import parse_corruptions, parse_severities

    if data_name != "imagenet100":
        raise InputError(f"generate builds ImageNet100-C from an ImageNet folder, not {data_name!r}: "
                         "use --data imagenet100 (digits are corrupted on the fly by `mgbench run`)")
    if split not in ("val", "train"):
        raise InputError(f"--split must be val or train, not {split!r}")
    if workers is not None and workers < 0:
        raise InputError(f"--workers must be 0 or more, not {workers}")
    names, levels = parse_corruptions(corruption_names), parse_severities(severities)
    report = generate_imagenet_c(data_root, out, names, levels, class_list=class_list, split=split,
                                 workers=workers, limit=limit, on_bad_image=on_bad_image)
    if report.unreadable:
        console.print(f"note: {report.unreadable} unreadable source image(s) skipped (--on-bad-image skip)")
    console.print(f"{report.images} images x {len(names)} corruptions x {len(levels)} severities: "
                  f"{report.written} files written, {report.skipped} already there, in {report.out}")
