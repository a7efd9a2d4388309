"""``mgbench attack``: an adversarial sweep from the command line (an in-memory suite)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mgbench import distributed
from mgbench.cli.common import (
    LazyHelpOption,
    _data_spec,
    _print_cells,
    _split_names,
    cli,
    console,
    data_options,
    progress_option,
    runtime_options,
)
from mgbench.cli.validate import robustbench_dir_option

if TYPE_CHECKING:
    from mgbench.api import RunOptions

DEFAULT_MODELS = ["resnet-tiny.digits.s0"]


def _attack_help() -> str:
    """The --attack help, from the attack registry: every attack with its summary."""
    from mgbench.attacks.attack import all_attacks, attack_names, get_attack

    listed = "; ".join(f"{name}: {get_attack(name).summary}" for name in attack_names())
    return f"{listed}; or all = {','.join(all_attacks())} (comma-separated list allowed)."


def _default_models() -> list[str]:
    """The ``attacks`` suite's default models (where the zoo's digits models are listed)."""
    from mgbench.suites import list_suites

    suite = list_suites().get("attacks")
    return list(suite.models) if suite is not None and suite.models else DEFAULT_MODELS


@cli.command()
@click.option("--model", "model_names", multiple=True,
              help="Zoo card, architecture, or FILE.py:FACTORY (repeatable, or comma-separated) "
                   "[default: the attacks suite's models].")
@click.option("--eps", required=True, help="Budget(s): 4/255, 0.0157, or a list 1/255,2/255,4/255,8/255.")
@click.option("--attack", "attacks", default="all", show_default=True, cls=LazyHelpOption,
              help_from=lambda: _attack_help())
@click.option("--norm", default="linf", show_default=True, help="linf or l2 (or linf,l2).")
@click.option("--steps", type=int, default=None, help="PGD steps [default: 100; mgnet-paper: 10].")
@click.option("--step-size", default=None,
              help="PGD step size, e.g. 1/255 [default: eps/4; mgnet-paper: 1/255].")
@click.option("--restarts", type=int, default=None, help="PGD restarts (per-example worst case) [default: 2].")
@click.option("--loss", default=None,
              help="PGD loss: ce, margin or ce,margin (one cell each) [default: ce,margin; mgnet-paper: ce].")
@click.option("--random-start/--no-random-start", default=None,
              help="PGD random start in the ball [default: on; mgnet-paper: off].")
@click.option("--protocol", default="honest", show_default=True,
              help="honest, mgnet-paper (the official MGNet attack), or honest,mgnet-paper for both side by side.")
@click.option("--variant", "variants", multiple=True,
              help="default, rescaler-off, all-glimpses, glimpse=T, seed=N, or a combination like "
                   "rescaler-off+all-glimpses (repeatable) [default: default, and rescaler-off on models "
                   "with a gradient rescaler].")
@click.option("--per-step/--no-per-step", default=False, show_default=True,
              help="Also attack each earlier anytime step's logits (glimpse=T) on anytime models.")
@click.option("--transfer-from", "transfer_from", default=None,
              help="Craft the attack on this model (card, architecture or FILE.py:FACTORY), evaluate on --model.")
@click.option("--version", default=None, help="AutoAttack version: standard (default), rand (EOT) or custom.")
@click.option("--aa-attacks", default=None,
              help="AutoAttack custom: some of apgd-ce,apgd-dlr,apgd-t,fab,fab-t,square.")
@click.option("--checks/--no-checks", default=True, show_default=True,
              help="Run the verdict's probe attacks (noise, Square, a second seed, chance level) and store "
                   "the gradient-masking verdicts.")
@click.option("--square-queries", type=int, default=None, help="Queries of the checks' Square attack [default: 1000].")
@data_options
@robustbench_dir_option
@runtime_options
@progress_option
def attack(model_names: tuple[str, ...], eps: str, attacks: str, norm: str, steps: int | None,
           step_size: str | None, restarts: int | None, loss: str | None, random_start: bool | None, protocol: str,
           variants: tuple[str, ...], per_step: bool, transfer_from: str | None, version: str | None,
           aa_attacks: str | None, checks: bool, square_queries: int | None, data_name: str | None,
           data_root: str | None, class_list: str, limit: int | None, on_bad_image: str, options: "RunOptions",
           store: str | None) -> None:
    """Attack models (FGSM / PGD / AutoAttack) and judge the result for gradient masking.

    \b
    Robust accuracy is always measured by a fresh forward pass on the adversarial images, which
    are checked to lie in the eps-ball and in [0, 1]. The verdict marks a model `unreliable`
    when an automatic check fails (see docs/attacks.md).
    \b
    Examples:
      mgbench attack --eps 4/255
      mgbench attack --eps 1/255,2/255,4/255,8/255 --attack fgsm,pgd,apgd --limit 500
      mgbench attack --eps 4/255 --attack pgd --protocol honest,mgnet-paper --model mgnet-tiny.digits.s0
    """
    from mgbench import api
    from mgbench.store import DEFAULT_STORE
    from mgbench.suites import Suite

    table: dict[str, Any] = {"type": "attack", "attack": attacks, "eps": eps, "norm": norm, "protocol": protocol,
                             "checks": checks, "per_step": per_step}
    optional = {"steps": steps, "step_size": step_size, "restarts": restarts, "random_start": random_start,
                "loss": loss, "version": version, "aa_attacks": aa_attacks, "transfer_from": transfer_from,
                "square_queries": square_queries, "variant": list(variants) or None}
    table.update({key: value for key, value in optional.items() if value is not None})
    data = _data_spec(data_name, data_root, class_list, limit, on_bad_image)
    suite = Suite(name="attack", description="mgbench attack (command line)", dataset=data.name,
                  models=_default_models(), conditions=[table], source=Path("<command line>"))
    store_path = Path(store) if store else DEFAULT_STORE
    outcomes = api.run(api.prepare(suite, _split_names(model_names) or None, data=data, options=options),
                       store_path)
    if not distributed.is_main():
        return
    done = sum(o.computed for o in outcomes)
    _print_cells(store_path, [o.cell_key for o in outcomes], title=f"attacks on {data.label}")
    console.print(f"{done} cell(s) computed, {len(outcomes) - done} already in {store_path}")
