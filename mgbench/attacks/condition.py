"""The ``attack`` condition type: suite tables of ``type = "attack"`` -> one condition per attack.

``apply`` crafts the adversarial batch, asserts it lies in the threat model's ball (and in
[0, 1] for the honest protocol), and returns it; the runner then measures accuracy with a fresh
forward pass. Besides accuracy a cell stores:

- ``perturbation``: the largest perturbation in the threat norm (pixel units), with every attack
  hyperparameter, the protocol, the budget actually used in pixels and the library versions in
  its detail (for ``mgnet-paper`` also the share of pixels outside [0, 1]);
- ``per_example``: which examples stayed correctly classified (bitset, see
  :mod:`mgbench.attacks.examples`), from the attack's own check pass on the returned batch, and
  for anytime models after each step too (``steps``); the summary uses it for the per-example
  worst case (per step as well) and the checks;
- AutoAttack only: ``autoattack:<stage>`` robust accuracy after each attack of the cascade, and
  ``autoattack_checks`` with the warnings of pyautoattack's checks.

A table may set ``limit = N`` to evaluate only N of the run's images (the same fixed seeded
subset the data options use), e.g. to keep AutoAttack affordable on a CPU.

Conditions marked ``optional`` (the default rescaler-off run, ``per_step`` attacks) run only on
models they apply to (:meth:`AttackCondition.applies_to`, asked by the runner); the verdict's
probes (``checks``) are ordinary conditions too, cached and resumed like any other cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from mgbench import distributed
from mgbench.attacks.bounds import PerturbationStats, check_ball
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.spec import TABLE_KEYS, AttackOutput, AttackSpec, Planned, check_attack_target, plan_table
from mgbench.attacks.variants import numbered
from mgbench.conditions import register_condition_type
from mgbench.data import open_dataset
from mgbench.errors import InputError
from mgbench.metrics import accuracy_row
from mgbench.models import forward_steps, load_model, num_steps
from mgbench.provenance import library_versions
from mgbench.rows import MetricRow, present

if TYPE_CHECKING:
    import pandas as pd

    from mgbench.data import DataSpec, OpenedData
    from mgbench.models import LoadedModel


@dataclass
class _CellRecord:
    """What one cell's batches add up to (reset after ``extra_rows``)."""

    model: nn.Module | None = None
    ids: list[torch.Tensor] = field(default_factory=list)
    correct: list[torch.Tensor] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)  # [T, B] per batch, correctness after each step
    stats: PerturbationStats = field(default_factory=PerturbationStats)
    stages: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    target_classes: int | None = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per cascade attack that ran
    budget: list[float] | float | None = None


# Bump when a change of the attacks moves their numbers: stored attack cells are then recomputed.
# 2: all-glimpses keeps the iterate that fooled the final prediction; cells store per-step correctness.
CONDITION_VERSION = 2


@dataclass
class AttackCondition:
    condition_type = "attack"
    condition_version = CONDITION_VERSION
    spec: AttackSpec
    source: "LoadedModel | None" = None
    needs_grad: bool = True
    optional: bool = False
    key: dict[str, Any] = field(init=False)
    _cell: _CellRecord = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = self.spec.key()
        self.needs_grad = self.spec.kind.needs_grad
        if self.source is not None:
            # Not a wide store column, but part of the cell's key: retraining the source recomputes.
            self.key["source_weights"] = self.source.weights
        self._cell = _CellRecord()

    def check_model(self, model: "LoadedModel") -> None:
        """Called by the runner before the store is opened: fail early, with the model's name,
        when this attack cannot run on it (a transfer source was checked when it was loaded)."""
        if not self.spec.transfer_from and not self.optional:
            check_attack_target(self.spec, model.module, model.name)

    def applies_to(self, model: "LoadedModel") -> bool:
        """Whether the runner should compute this cell for ``model``: always, except an optional
        attack on a model it cannot run on (no gradient rescaler, too few anytime steps), and a
        ``glimpse=T`` attack where step T is the final one (the default run covers it)."""
        if not self.optional:
            return True
        try:
            check_attack_target(self.spec, model.module, model.name)
        except InputError:
            return False
        step = numbered(self.spec.variants, "glimpse")
        return step is None or step < num_steps(model.module)

    def _source_module(self, model: nn.Module, x: torch.Tensor) -> nn.Module | None:
        if self.source is None:
            return None
        source = self.source.module.to(x.device).eval()
        if not self._cell.ids:
            with torch.no_grad():
                ours, theirs = model(x[:1]).shape[-1], source(x[:1]).shape[-1]
            if ours != theirs:
                raise InputError(
                    f"transfer source {self.source.name} predicts {theirs} classes, the target {ours}: "
                    "use a source trained on the same data"
                )
        return source

    def apply(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self._cell.model is not model:
            self._cell = _CellRecord(model=model)
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # from the runner's seeded RNG
        reseed = numbered(self.spec.variants, "seed")
        if reseed is not None:  # seed=N: an independent random stream for this batch
            seed = (seed * 1_000_003 + reseed) % (2**31 - 1)
            torch.manual_seed(seed)
        out: AttackOutput = self.spec.run(model, x, y, source=self._source_module(model, x), seed=seed)
        eps, _, unit_range = self.spec.budget(model, x.device)
        check_ball(out.x_adv, x, norm=self.spec.norm, eps=eps, unit_range=unit_range, what=self.spec.label)
        with torch.no_grad():
            hits = forward_steps(model, out.x_adv).logits.argmax(dim=2) == y  # [T, B]
        cell = self._cell
        cell.ids.append(ids.detach().cpu())
        cell.correct.append(hits[-1].cpu())
        cell.steps.append(hits.cpu())
        cell.stats.update(out.x_adv, x)
        cell.budget = eps.flatten().tolist() if isinstance(eps, torch.Tensor) else eps
        if out.cascade is not None:
            for stage, flags in out.cascade.robust.items():
                cell.stages.setdefault(stage, []).append(flags.cpu())
            for message, count in out.cascade.warnings.items():
                cell.warnings[message] = cell.warnings.get(message, 0) + count
            cell.target_classes = out.cascade.target_classes
            cell.settings.update(out.cascade.settings)
        return out.x_adv

    def gather(self) -> None:
        """Under torchrun, replace this rank's records of the cell by the union of every rank's
        (called by the runner before ``extra_rows``; a no-op in a single process)."""
        if not distributed.active():
            return
        merged = _CellRecord(model=self._cell.model)
        for part in distributed.gather_objects(replace(self._cell, model=None)):
            merged.ids += part.ids
            merged.correct += part.correct
            merged.steps += part.steps
            merged.stats = merged.stats.merged(part.stats)
            for stage, flags in part.stages.items():
                merged.stages.setdefault(stage, []).extend(flags)
            for message, count in part.warnings.items():
                merged.warnings[message] = merged.warnings.get(message, 0) + count
            merged.target_classes = part.target_classes or merged.target_classes
            merged.settings.update(part.settings)
            merged.budget = part.budget if part.budget is not None else merged.budget
        self._cell = merged

    def extra_rows(self) -> list[MetricRow]:
        cell, self._cell = self._cell, _CellRecord()
        if self.source is not None:
            self.source.module.cpu()
        if not cell.ids:
            return []
        ids = torch.cat(cell.ids).numpy()
        examples = ExampleSet.from_ids(ids, torch.cat(cell.correct).numpy())
        per_example = examples.to_detail()
        steps = torch.cat(cell.steps, dim=1).numpy()
        if steps.shape[0] > 1:  # anytime model: which examples each step's prediction got right
            per_example["steps"] = [ExampleSet.from_ids(ids, hits).to_detail() for hits in steps]
        n = examples.n
        versions = library_versions()
        detail: dict[str, Any] = {
            "hyperparameters": self.spec.hyperparameters(),
            "protocol": self.spec.protocol,
            "pixel_budget": cell.budget,
            "versions": {k: versions[k] for k in ("mgbench", "torch", "pyautoattack")},
            **cell.stats.as_dict(),
        }
        if self.source is not None:
            detail["transfer_source"] = {**self.source.identity(), "params": self.source.params}
        if self.spec.protocol == "mgnet-paper":
            detail["note"] = ("official MGNet attack: eps and step in normalised units (pixel budget eps*std), "
                              "no random start, no clipping; not comparable with honest results")
        value = cell.stats.max_linf if self.spec.norm == "linf" else cell.stats.max_l2
        rows = [
            MetricRow("perturbation", value, n=n, detail=detail),
            MetricRow("per_example", examples.n_correct / n, n=n, detail=per_example),
        ]
        if cell.stages:
            for stage, flags in cell.stages.items():
                robust = int(torch.cat(flags).sum())
                row = accuracy_row(f"autoattack:{stage}", robust, n)
                row.detail = {"cascade_order": list(cell.stages)}
                if stage in cell.settings:
                    row.detail["settings"] = cell.settings[stage]
                rows.append(row)
            rows.append(MetricRow(
                "autoattack_checks", float(len(cell.warnings)), n=n,
                detail={"warnings": cell.warnings, "target_classes": cell.target_classes,
                        "note": "warnings of pyautoattack's checks (auto-attack logger)"},
            ))
        return rows


@dataclass
class LimitedAttackCondition(AttackCondition):
    """An attack condition evaluated on at most ``limit`` of the run's images (the fixed
    seeded subset of :func:`mgbench.data.subset_indices`)."""

    limit: int = 0

    def open_data(self, spec: "DataSpec") -> "OpenedData":
        limit = self.limit if spec.limit is None else min(self.limit, spec.limit)
        return open_dataset(replace(spec, limit=limit))


def _check_table_extras(table: dict[str, Any]) -> int | None:
    """Validate the keys the runner reads (limit) and the probes' (square_queries)."""
    limit = table.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"attack table: limit must be a positive whole number, not {limit!r}")
    queries = table.get("square_queries")
    if queries is not None and (isinstance(queries, bool) or not isinstance(queries, int) or queries < 1):
        raise InputError(f"attack table: square_queries must be a positive whole number, not {queries!r}")
    return limit


def attack_label(key: "pd.Series | dict[str, Any]") -> str:
    """``pgd linf 4/255``, with the protocol when it is not the honest one and the variant when
    it is not the default: ``pgd linf 4/255 [mgnet-paper] (no-rescale)``; a summary's attack is
    its name (``worst-case linf 4/255``, ``verdict linf``)."""
    threat = key["threat"]
    parts = [key.get("attack"), threat, key.get("eps_str")]
    if present(key.get("protocol")) and key.get("protocol") != "honest":
        parts.append(f"[{key['protocol']}]")
    if present(key.get("variant")) and key.get("variant") not in ("", "default"):
        parts.append(f"({key['variant']})")
    return " ".join(str(p) for p in parts if present(p))


@register_condition_type("attack", TABLE_KEYS, threats=("linf", "l2"), label=attack_label)
def expand_attack_table(table: dict[str, Any]) -> list[AttackCondition]:
    """A ``type = "attack"`` table -> one condition per combination (see :mod:`mgbench.attacks.spec`)."""
    limit = _check_table_extras(table)
    planned: list[Planned] = plan_table(table)
    sources = {name: load_model(name) for name in {p.spec.transfer_from for p in planned if p.spec.transfer_from}}
    for item in planned:
        if item.spec.transfer_from:
            check_attack_target(item.spec, sources[item.spec.transfer_from].module, item.spec.transfer_from)
    out: list[AttackCondition] = []
    for item in planned:
        source = sources[item.spec.transfer_from] if item.spec.transfer_from else None
        if limit is not None:
            out.append(LimitedAttackCondition(item.spec, source, optional=item.optional, limit=limit))
        else:
            out.append(AttackCondition(item.spec, source, optional=item.optional))
    return out

