"""MGNet commands: flops (compute per glimpse, two counters), glimpses (where it looks), convert
(official checkpoints)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.table import Table

from mgbench.cli.common import _data_spec, cli, console
from mgbench.errors import InputError


@cli.command()
@click.option("--model", "model_name", required=True, help="Architecture, zoo card or FILE.py:FACTORY.")
@click.option("--glimpses", type=click.IntRange(1, 16), default=None,
              help="Number of glimpses T (glimpse models only) [default: the model's].")
@click.option("--input", "input_size", type=click.IntRange(16, 1024), default=None,
              help="Input side in pixels [default: the model's, e.g. 224 or 64].")
def flops(model_name: str, glimpses: int | None, input_size: int | None) -> None:
    """Parameters and compute per glimpse and cumulative, by fvcore and by torch's FlopCounterMode."""
    from mgbench.flops import CONVENTION, TORCH_CONVENTION, compare, counting_model

    loaded, size = counting_model(model_name, glimpses, input_size)
    result = compare(loaded.module, size)
    console.print(f"[bold]{loaded.name}[/bold] ({loaded.architecture}, weights {loaded.weights[:16]}), "
                  f"input 1x3x{size}x{size}, {result.params / 1e6:.2f}M parameters ({result.params:,})")
    console.print(f"  {CONVENTION}")
    console.print(f"  {TORCH_CONVENTION} (grid_sample, affine_grid and CPU attention formulas added: mgbench.flops)")
    steps = len(result.gmacs)
    table = Table(title="compute after each glimpse" if steps > 1 else "compute")
    for column in ("glimpse", "fvcore GMACs", "cumulative", "FlopCounterMode GFLOPs", "cumulative",
                   "FlopCounterMode / 2 vs fvcore"):
        table.add_column(column, justify="right")
    previous_macs = previous_flops = 0.0
    for step, (macs, gflops) in enumerate(zip(result.gmacs, result.torch_gflops), start=1):
        table.add_row(str(step) if steps > 1 else "all", f"{macs - previous_macs:.4f}", f"{macs:.4f}",
                      f"{gflops - previous_flops:.4f}", f"{gflops:.4f}", f"{100 * (gflops / 2 / macs - 1):+.2f}%")
        previous_macs, previous_flops = macs, gflops
    console.print(table)


@cli.command()
@click.option("--model", "model_name", required=True, help="Zoo card, architecture or FILE.py:FACTORY.")
@click.option("--data", "data_name", default=None, help="digits (embedded default) or imagenet100.")
@click.option("--data-root", type=click.Path(), default=None, help="ImageNet folder with train/ and val/.")
@click.option("--class-list", default="mgnet", show_default=True, help="ImageNet100 class list: mgnet or cmc.")
@click.option("--n", "n_images", type=int, default=None,
              help="Images (a fixed seeded subset of the evaluation split) [default: 16 drawn; 500 for --stats].")
@click.option("--condition", default=None,
              help="What to do to the images first: TYPE[:ARG...][:KEY=VALUE...], e.g. corruption:fog:3 "
                   "or attack:pgd:4/255 [default: clean].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(), default=None, help="Figure file (.png, .pdf or .svg).")
@click.option("--stats", "with_stats", is_flag=True,
              help="Print per glimpse step the distribution of the scale s and centre tx, ty (mean, quantiles) "
                   "and the share of saturated scales (s > 0.49) over the --n images.")
def glimpses(model_name: str, data_name: str | None, data_root: str | None, class_list: str, n_images: int | None,
             condition: str | None, device: str, out: str | None, with_stats: bool) -> None:
    """Draw where a model looks: MGNet's glimpse boxes (numbered, with the prediction after each step)
    or LTPA's attention maps (overlaid); other models get their predictions. --stats prints where
    the glimpses go, step by step."""
    from mgbench.report.glimpses import QUANTILES, SATURATED_S, glimpse_picture, glimpse_stats

    if out is None and not with_stats:
        raise InputError("give --out FIGURE for the picture, --stats for the glimpse statistics, or both")
    data = _data_spec(data_name, data_root, class_list, None, "fail")
    if with_stats:
        n = 500 if n_images is None else n_images
        stats = glimpse_stats(model_name, data, n=n, condition=condition, device=device)
        table = Table(title=f"{model_name}: glimpse scale s and centre (tx, ty) over {n} images")
        quantile_names = [f"{int(q * 100)}%" for q in QUANTILES]
        for column in ("glimpse", "", "mean", *quantile_names, f"s > {SATURATED_S}"):
            table.add_column(column, justify="right")
        for st in stats:
            for name, values in (("s", st.s), ("tx", st.tx), ("ty", st.ty)):
                table.add_row(str(st.step) if name == "s" else "", name, *[f"{v:.3f}" for v in values],
                              _saturated(st.saturated) if name == "s" else "", end_section=name == "ty")
        console.print(table)
    if out is not None:
        n = 16 if n_images is None else n_images
        path = glimpse_picture(model_name, data, Path(out), n=n, condition=condition, device=device)
        console.print(f"figure: {path}")


def _saturated(share: float | None) -> str:
    return "whole image" if share is None else f"{100 * share:.1f}%"


@cli.command()
@click.option("--from-official", "checkpoint", type=click.Path(), required=True,
              help="Official MGNet checkpoint (PyTorch Lightning .ckpt, or its bare state_dict).")
@click.option("--model", "architecture", required=True,
              help="The MGNet architecture it was trained as: mgnet-r18, mgnet-r50, mgnet-baseline-r18, ...")
@click.option("--out", type=click.Path(), required=True, help="Output weights file (.pt) for a zoo card.")
def convert(checkpoint: str, architecture: str, out: str) -> None:
    """Convert an official MGNet checkpoint into mgbench weights (explicit key map, strict)."""
    import torch

    from mgbench.models.official import convert_official
    from mgbench.provenance import sha256_file

    target = Path(out)
    if target.suffix != ".pt":
        raise InputError(f"--out {target} must end in .pt: choose a weights file name")
    converted = convert_official(Path(checkpoint), architecture)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".pt.partial")
    torch.save(converted.model.state_dict(), partial)
    os.replace(partial, target)
    digest = sha256_file(target)
    console.print(f"wrote {target} (sha256 {digest})")
    arguments = "".join(f"{key} = {value}\n" for key, value in converted.arguments.items())
    console.print("A zoo card for it (models/NAME.toml; the official models were trained on the mgnet "
                  "ImageNet100 list):", highlight=False)
    console.print(
        f'name = "NAME"\narchitecture = "{architecture}"\ndataset = "imagenet100-mgnet"\n\n'
        f"[arguments]\n{arguments}\n[checkpoint]\npath = \"{target.resolve()}\"\nsha256 = \"{digest}\"\n"
        f'format = "mgbench"', highlight=False, markup=False,
    )
