"""Running a suite: cells in, tidy rows out.

:func:`prepare` then :func:`run` (together: :func:`run_suite`) are what the public
:func:`mgbench.evaluate` and the CLI (through :mod:`mgbench.api`) call, like lm-eval's
``simple_evaluate``. For every model it writes one *compute* cell (parameters and GMACs per
step) and one cell per condition; each cell's rows go to the store in one transaction, and a
cell already in the store is skipped unless ``force`` is set. All input is validated (suite,
data, models) before the store is opened, so bad input writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import pandas as pd
import torch
import torch.nn as nn

from mgbench import distributed, flops, progress
from mgbench.cellkey import CellKey, canonical_json, compute_key, condition_key, run_options, summary_key
from mgbench.conditions import (
    Condition,
    LiveModel,
    SummaryContext,
    condition_label,
    summariser,
    summary_depends_on,
    summary_tables,
    summary_version,
)
from mgbench.data import DataSpec, OpenedData, make_loader, open_dataset
from mgbench.data.spec import ArrayDataset
from mgbench.device import to_unit
from mgbench.errors import InputError
from mgbench.metrics import AccuracyCounter
from mgbench.models import LoadedModel, forward_steps, load_model, num_steps
from mgbench.models.outputs import check_batch, check_outputs
from mgbench.provenance import device_name, git_sha, library_versions, now_iso, stable_hash
from mgbench.rows import CellRecord, MetricRow
from mgbench.store import DEFAULT_STORE, Store
from mgbench.suites import Suite

ProgressHook = Callable[[str, int, int], None]  # (description, done, total)


@dataclass
class RunOptions:
    """How cells are computed. ``precision="bf16"`` runs the models' forward (and an attack's
    forward and backward) under bf16 autocast while images and perturbations stay fp32;
    ``channels_last`` stores images and weights NHWC (faster convolutions on GPUs);
    ``compile`` wraps each model's ``forward`` in ``torch.compile``."""

    device: str = "auto"
    batch_size: int = 256
    workers: int | None = None
    seed: int = 0
    force: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"--batch-size must be a positive whole number, not {self.batch_size!r}")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"--workers must be 0 or more, not {self.workers!r}")
        if self.precision not in ("fp32", "bf16"):
            raise InputError(f"--precision must be fp32 or bf16, not {self.precision!r}")

    def autocast(self, device: torch.device) -> ContextManager[Any]:
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model on ``device`` in eval mode, in the memory format and compiled as asked."""
        model = model.to(device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            model.forward = torch.compile(model.forward)
        return model

    def key(self) -> dict[str, Any]:
        """What of these options changes the numbers (part of every cell's key)."""
        return run_options(self.precision, self.seed)


@dataclass
class CellOutcome:
    cell_key: str
    model: str
    condition: dict[str, Any]
    computed: bool
    rows: list[MetricRow] = field(default_factory=list)


def _workers(opened: OpenedData, options: RunOptions) -> int | None:
    """In-memory data (the embedded digits) loads fastest without worker processes."""
    base = opened.dataset
    while hasattr(base, "dataset"):  # subsets (--limit, a plan's probe) of the data
        base = base.dataset
    return 0 if isinstance(base, ArrayDataset) and options.workers is None else options.workers


def evaluate_condition(
    models: Sequence[nn.Module],
    opened: OpenedData,
    condition: Condition,
    num_classes: int,
    device: torch.device,
    options: RunOptions,
    progress: ProgressHook | None = None,
    names: Sequence[str] | None = None,
) -> list[list[MetricRow]]:
    """Rows of each model's cell on ``opened`` under ``condition``; the conditioned batch is fed
    to a fresh forward pass, so the numbers never come from the condition's own bookkeeping.

    A condition that does not depend on the model (``model_free``: clean, corruptions) conditions
    each batch once and every model sees the same images; any other condition (attacks) takes one
    model per call. ``images_per_s`` is what the cell would cost alone: the loop's wall time
    minus the other models' forward passes. Its detail says whether the timing is worth reading:
    batch size, torch threads, the load average before and after, and ``cpu_share``, the process's CPU time
    over wall time x threads for the whole pass, on the CPU (near 1: the pass had its cores to
    itself; well below 1: something else shared them, and the figure measures that as well).

    Every batch's logits are checked (shape, finite values) before they are counted; ``names``
    (default: the class names) name the models in that error."""
    names = list(names) if names is not None else [type(model).__name__ for model in models]
    shared = bool(getattr(condition, "model_free", False))
    if len(models) != 1 and not shared:
        raise ValueError("a condition that depends on the model evaluates one model at a time")
    counters = [AccuracyCounter(num_steps(model)) for model in models]
    forward_seconds = [0.0] * len(models)
    loader = make_loader(distributed.shard(opened.dataset), options.batch_size, device=device,
                         workers=_workers(opened, options))
    skipped = 0
    described = condition_label(condition.key)
    load_before = os.getloadavg()
    cpu_started = time.process_time()
    started = time.perf_counter()
    for index, (images, labels, ids, batch_skipped) in enumerate(loader):
        skipped += batch_skipped
        if images is None:
            continue
        x = to_unit(images, device)
        if options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels.to(device, non_blocking=True)
        if shared:
            with torch.no_grad():
                x_shared = condition.apply(models[0], x, y, ids)
        for i, (model, counter) in enumerate(zip(models, counters)):
            clock = time.perf_counter()
            if shared:
                x_cond = x_shared
            elif condition.needs_grad:
                with options.autocast(device):
                    x_cond = condition.apply(model, x, y, ids)
            else:
                with torch.no_grad():
                    x_cond = condition.apply(model, x, y, ids)
            with torch.no_grad(), options.autocast(device):
                outputs = forward_steps(model, x_cond)
            check_batch(outputs.logits, len(y), model, names[i], num_classes,
                        where=f"batch {index + 1} of {described}")
            counter.update(outputs.logits, y)  # reads the counts back: the device is synchronised
            forward_seconds[i] += time.perf_counter() - clock
        if progress is not None:
            progress("batches", index + 1, len(loader))
    wall = time.perf_counter() - started
    timing: dict[str, Any] = {"models_sharing_the_pass": len(models), "batch_size": options.batch_size,
                              "threads": torch.get_num_threads(),
                              "load_before": round(load_before[0], 2), "load_after": round(os.getloadavg()[0], 2)}
    if device.type == "cpu":  # on an accelerator the CPU mostly waits: its share says nothing
        timing["cpu_share"] = round((time.process_time() - cpu_started) / (wall * timing["threads"]), 3)
    skipped = int(distributed.all_sum([skipped])[0])
    gather = getattr(condition, "gather", None)  # optional: merge per-rank state under torchrun
    if gather is not None:
        gather()
    out = []
    for i, counter in enumerate(counters):
        counter.reduce()
        if counter.n == 0:
            raise InputError("no readable image in the data: check --data-root")
        seconds = distributed.all_max(wall - sum(forward_seconds) + forward_seconds[i])
        rows = counter.rows("top1", num_classes)
        if opened.requested is not None and opened.requested > opened.available:
            rows[0].detail = {"limit_requested": opened.requested, "images_available": opened.available}
        rows += condition.extra_rows()
        rows.append(MetricRow("images_per_s", counter.n / seconds, n=counter.n,
                              detail={"seconds": seconds, **timing}))
        if skipped:
            rows.append(MetricRow("skipped_images", float(skipped),
                                  detail={"reason": "unreadable", "images_read": counter.n}))
        out.append(rows)
    return out


def cell_provenance(
    config: dict[str, Any], seed: int, device: torch.device, started: str, runtime: float
) -> dict[str, Any]:
    return {
        "config_hash": stable_hash(config),
        "seed": seed,
        "versions": library_versions(),
        "git_sha": git_sha(),
        "device": device_name(device) + (f" x{distributed.world_size()} ranks" if distributed.active() else ""),
        "started_at": started,
        "finished_at": now_iso(),
        "runtime_s": runtime,
    }


def run_suite(
    suite: Suite,
    *,
    models: list[str] | None = None,
    data: DataSpec | None = None,
    store: str | Path = DEFAULT_STORE,
    options: RunOptions | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    reporter: progress.Reporter | None = None,
) -> list[CellOutcome]:
    """Run ``suite`` for ``models`` (default: the suite's) on ``data`` (default: the suite's
    dataset and limit) and store every finished cell. Returns one outcome per cell, computed or skipped.
    Progress (cells, batches, attack steps) goes to ``reporter`` when given, else to the one installed
    by :func:`mgbench.progress.reporting` (none: silent).

    Under ``torchrun`` every rank evaluates its shard of each cell, counts are summed across
    ranks, and only rank 0 opens the store and writes."""
    prepared = prepare(suite, models=models, data=data, options=options, overrides=overrides)
    return run(prepared, store, reporter)


def run(prepared: "Prepared", store: str | Path = DEFAULT_STORE,
        reporter: progress.Reporter | None = None) -> list[CellOutcome]:
    """Compute and store the cells of a prepared run (:func:`prepare`) not yet in ``store``."""
    store = Path(store)
    created = not store.exists()
    results = Store(store) if distributed.is_main() else None
    try:
        with progress.reporting(reporter):
            return _SuiteRun(results, prepared).cells()
    except BaseException:
        if results is not None:
            results.close()
            results = None
            if created:
                _remove_if_empty(store)
        raise
    finally:
        if results is not None:
            results.close()


@dataclass
class Prepared:
    """A suite run's validated input: its conditions with the data each reads, the loaded
    models, the device. Everything a run or a plan of it needs before the store is opened."""

    suite: Suite
    data: DataSpec
    opened: OpenedData
    options: RunOptions
    device: torch.device
    overrides: dict[str, dict[str, Any]] | None
    conditions: list[tuple[Condition, OpenedData]]
    loaded: list[LoadedModel]

    def cell_keys(self, condition: Condition, opened: OpenedData) -> list[tuple[int, CellKey]]:
        """(model index, cell key) of every model this condition applies to."""
        data_key = opened.key(self.data)
        applies = getattr(condition, "applies_to", None)  # optional: a condition for some models only
        return [(index, condition_key(condition, item.identity(), data_key, self.options.key()))
                for index, item in enumerate(self.loaded) if applies is None or applies(item)]


def prepare(
    suite: Suite,
    *,
    models: list[str] | None = None,
    data: DataSpec | None = None,
    options: RunOptions | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Prepared:
    """Validate a run's input and load its models (see :func:`run_suite`); touches no store."""
    options = options or RunOptions()
    data = data or DataSpec(name=suite.dataset, limit=suite.limit)
    names = models or suite.models
    if not names:
        raise InputError(f"suite {suite.name} names no models: pass --model")
    conditions = suite.expand(overrides)
    device = distributed.init(options.device)
    opened = open_dataset(data)
    # Conditions that read files of their own (pre-generated ImageNet-C) open them now, so a
    # missing folder is reported before the store is touched.
    cells = [(condition, _open_cell_data(condition, data, opened)) for condition in conditions]
    loaded = [load_model(name, data=data) for name in names]
    probe = _probe_images(opened, device)
    for item in loaded:
        item.check_dataset(data)
        check_outputs(item.module.to(device).eval(), item.name, probe, data.num_classes)
        for condition in conditions:
            check_model = getattr(condition, "check_model", None)
            if check_model is not None:  # optional: a condition that needs something of the model
                check_model(item)
    return Prepared(suite, data, opened, options, device, overrides, cells, loaded)


def _remove_if_empty(path: Path) -> None:
    """A store this run created and never finished a cell in is removed, so a failed run leaves
    nothing behind."""
    with Store(path) as results:
        empty = results.counts()[0] == 0
    if empty:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _probe_images(opened: OpenedData, device: torch.device, n: int = 4) -> torch.Tensor:
    """The first ``n`` readable images of the data, to check every model's outputs on before the
    store is opened."""
    for images, _, _, _ in make_loader(opened.dataset, n, device=device, workers=0):
        if images is not None:
            return to_unit(images, device)
    raise InputError("no readable image in the data: check --data-root")


@dataclass
class _SuiteRun:
    """The state shared by all cells of one :func:`run` call. ``results`` is None on ranks > 0."""

    results: Store | None
    prepared: Prepared
    cell_task: progress.Task | None = None

    def __post_init__(self) -> None:
        run = self.prepared
        self.suite, self.data, self.opened, self.options = run.suite, run.data, run.opened, run.options
        self.device, self.overrides = run.device, run.overrides

    def cells(self) -> list[CellOutcome]:
        """Condition by condition (so a model-free condition conditions each batch once for all
        models): every model's compute cell, its condition cells, and its summaries as soon as its
        last cell is stored (not at the end of the run: a long run stopped part-way, such as the
        CPU reference across sessions, keeps the summaries of every model it finished); last, the
        stored summaries of other models that read the cells this run added (:meth:`_dependents`).
        Returns the outcomes of this run's models' cells only."""
        loaded, conditions = self.prepared.loaded, self.prepared.conditions
        # Only the cells that apply: an optional condition (MGNet's rescaler-off) has none for a
        # ResNet, and counting it would leave the count short of its total and inflate the ETA.
        left = [0] * len(loaded)  # per model, its cells still to come
        for condition, opened in conditions:
            for index, _ in self.prepared.cell_keys(condition, opened):
                left[index] += 1
        with progress.task(f"suite {self.suite.name}: cell", total=sum(left)) as self.cell_task:
            self.cell_task.update(status="compute (GMACs)")
            per_model = [[self._compute_cell(item)] for item in loaded]  # counted on the plain module
            modules = [self.options.prepare(item.module, self.device) for item in loaded]

            def finish(index: int) -> None:
                item = loaded[index]
                self.cell_task.update(status=f"{item.name}: summaries")
                per_model[index] += self._summaries(item, per_model[index])
                item.module.cpu()

            for index in (i for i, count in enumerate(left) if count == 0):
                finish(index)
            for condition, opened in conditions:
                for index, outcome in self._condition_cells(loaded, modules, condition, opened):
                    per_model[index].append(outcome)
                    left[index] -= 1
                    if left[index] == 0:
                        finish(index)
            summarised = {o.cell_key for outcomes in per_model for o in outcomes}
            for item, outcomes in zip(loaded, per_model):
                if any(o.computed and o.condition["type"] != "summary" for o in outcomes):
                    self.cell_task.update(status=f"summaries that read {item.name}")
                    self._dependents(item, summarised)
        return [outcome for outcomes in per_model for outcome in outcomes]

    def _skipped(self) -> None:
        """A cell found in the store: one fewer to compute (the count and ETA cover work left)."""
        if self.cell_task is not None and self.cell_task.total:
            self.cell_task.update(total=self.cell_task.total - 1)

    def _done(self, key: CellKey) -> bool:
        """Whether the cell is stored already (rank 0 decides for everyone)."""
        stored = self.results.has_cell(key.hash) if self.results is not None else None
        return bool(distributed.broadcast(stored)) and not self.options.force

    def _write(self, item: LoadedModel, key: CellKey, rows: list[MetricRow], started: str, runtime: float,
               replace: bool) -> None:
        if self.results is None:
            return
        config = {
            "suite": self.suite.name,
            "suite_file": str(self.suite.source),
            "model": key.model,
            "data": key.data,
            "condition": key.condition,
            "seed": self.options.seed,
            "batch_size": self.options.batch_size,
            "precision": self.options.precision,
            "channels_last": self.options.channels_last,
            "compile": self.options.compile,
            "world_size": distributed.world_size(),
        }
        record = CellRecord(key, self.suite.name, item.params, config,
                            cell_provenance(config, self.options.seed, self.device, started, runtime), rows)
        # Another writer that finished the same cell meanwhile wins: its rows are as good as ours.
        self.results.write_cell(record, replace=replace)

    def _compute_cell(self, item: LoadedModel) -> CellOutcome:
        key = compute_key(item.identity(), {"dataset": self.data.label, "input_size": self.data.input_size})
        if self._done(key):
            return CellOutcome(key.hash, item.name, key.condition, computed=False)
        rows: list[MetricRow] = []
        started, clock = now_iso(), time.perf_counter()
        if distributed.is_main():
            rows = flops.profile(item.module, self.data.input_size).rows()
        self._write(item, key, rows, started, time.perf_counter() - clock, replace=self.options.force)
        return CellOutcome(key.hash, item.name, key.condition, True, rows)

    def _condition_cells(
        self, loaded: list[LoadedModel], modules: list[nn.Module], condition: Condition, opened: OpenedData
    ) -> Iterator[tuple[int, CellOutcome]]:
        """(model index, outcome) of every model's cell of one condition, each as soon as it is
        stored (the caller may write that model's summaries before the next model's cell)."""
        pending = []
        for index, key in self.prepared.cell_keys(condition, opened):
            item = loaded[index]
            if self._done(key):
                self._skipped()
                yield index, CellOutcome(key.hash, item.name, key.condition, computed=False)
            else:
                pending.append((index, key))
        groups = [pending] if getattr(condition, "model_free", False) else [[p] for p in pending]
        for group in (g for g in groups if g):
            torch.manual_seed(self.options.seed)
            started, clock = now_iso(), time.perf_counter()
            names = ", ".join(loaded[i].name for i, _ in group) if len(group) <= 3 else f"{len(group)} models"
            if self.cell_task is not None:
                self.cell_task.update(status=f"{names}: {condition_label(condition.key)}")
            with progress.task("batches") as batches:
                results = evaluate_condition([modules[i] for i, _ in group], opened, condition,
                                             self.data.num_classes, self.device, self.options,
                                             lambda _, done, total: batches.update(completed=done, total=total),
                                             names=[loaded[i].name for i, _ in group])
            if self.cell_task is not None:
                self.cell_task.advance(len(group))
            runtime = (time.perf_counter() - clock) / len(group)
            # A model-free group is written whole before any of its models' summaries: an mCE
            # reads its normaliser's cell of the same corruption.
            written = []
            for (index, key), rows in zip(group, results):
                item = loaded[index]
                self._write(item, key, rows, started, runtime, replace=self.options.force)
                written.append((index, CellOutcome(key.hash, item.name, key.condition, True, rows)))
            yield from written

    def _summaries(self, item: LoadedModel, cells: list[CellOutcome]) -> list[CellOutcome]:
        """Derived cells, recomputed every run (on rank 0; the other ranks wait) from every stored
        cell of this model under these run options on this run's images, whichever suite or
        command wrote it (see :func:`summary_frame`), plus this run's own cells."""
        out: list[CellOutcome] = []
        if self.results is not None:
            data_key = self.opened.key(self.data)
            frame = summary_frame(self.results, item.identity(), data_key, self.options.key(),
                                  [c.cell_key for c in cells])
            live = LiveModel(item, self.data, self.opened, self.device, self.options.batch_size)
            for kind in sorted(k for k in self.suite.types() if summariser(k) is not None):
                context = SummaryContext(frame, self.suite.tables(kind, self.overrides), item.identity(), data_key,
                                         self.results, self.options.key(), live)
                for key, rows in summarise(kind, context):
                    # Unchanged numbers are not rewritten: a rerun of a finished sweep changes nothing.
                    changed = not self.results.same_rows(key.hash, rows)
                    if changed:
                        self._write(item, key, rows, now_iso(), 0.0, replace=True)
                        self.results.drop_superseded(key)  # the same summary by an older version of its code
                    out.append(CellOutcome(key.hash, item.name, key.condition, changed, rows))
        distributed.barrier()
        return out

    def _dependents(self, item: LoadedModel, summarised: set[str]) -> list[CellOutcome]:
        """Recompute the stored summaries that read ``item``'s cells besides their own model's
        (corruption summaries whose mCE normaliser it is), on this run's data under its options,
        from the stored cells as a merge does; rewritten only where their rows change. So the order
        of runs does not matter: a model run before its normaliser gets its mCE when the normaliser
        runs. ``summarised``: the summaries this run just computed (not recomputed again)."""
        out: list[CellOutcome] = []
        if self.results is not None:
            data_key, options = self.opened.key(self.data), self.options.key()
            name = item.identity()["model"]
            groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
            for cell_key, condition, model_json in self.results.summary_cells(canonical_json(data_key),
                                                                             canonical_json(options)):
                kind = condition.get("of")
                if (cell_key in summarised or summariser(kind) is None
                        or condition.get("version") != summary_version(kind)
                        or name not in summary_depends_on(kind, condition)):
                    continue
                groups.setdefault((kind, model_json), []).append((cell_key, condition))
            for (kind, model_json), stored in groups.items():
                model = json.loads(model_json)
                try:
                    restated = restate(self.results, kind, model, data_key, options, [c for _, c in stored])
                except InputError:  # a table that no longer parses here: left as it is (a merge reports it)
                    continue
                params = next((r["params"] for cell_key, _ in stored for r in self.results.raw_cell(cell_key)[1]
                               if r.get("params") is not None), None)
                for key, rows in restated:
                    changed = not self.results.same_rows(key.hash, rows)
                    if changed:
                        self._write_derived(key, rows, params, because=name)
                        self.results.drop_superseded(key)
                    out.append(CellOutcome(key.hash, model["model"], key.condition, changed, rows))
        distributed.barrier()
        return out

    def _write_derived(self, key: CellKey, rows: list[MetricRow], params: int | None, because: str) -> None:
        """Write a recomputed summary of another model (it reads ``because``'s cells)."""
        if self.results is None:
            return
        config = {"suite": self.suite.name, "model": key.model, "data": key.data, "condition": key.condition,
                  "seed": self.options.seed, "precision": self.options.precision, "recomputed_after": because}
        record = CellRecord(key, self.suite.name, params, config,
                            cell_provenance(config, self.options.seed, self.device, now_iso(), 0.0), rows)
        self.results.write_cell(record, replace=True)


def _nested(data: dict[str, Any], within: dict[str, Any]) -> bool:
    """Whether ``data``'s images are among ``within``'s: same dataset, split and preprocessing and
    no more images (the seeded ``--limit`` subsets are nested: the first N of one fixed permutation)."""
    same = all(data.get(k) == within.get(k) for k in ("dataset", "split", "preprocessing"))
    return same and (data == within or (data.get("n_images") or 0) <= (within.get("n_images") or 0))


def summary_frame(store: Store, model: dict[str, Any], data: dict[str, Any], options: dict[str, Any],
                  also: list[str]) -> pd.DataFrame:
    """What a summary sees: the rows of every stored non-summary cell of ``model`` under
    ``options`` on ``data`` or on a subset of its images (an attack table's own ``limit``),
    whichever suite or command wrote it, plus the cells ``also`` (a folder-backed corruption
    reads other data). Summarisers select among them by the canonical condition and data."""
    stored = store.frame(model_json=canonical_json(model), options_json=canonical_json(options))
    keep = {text for text in stored["data_json"].unique() if _nested(json.loads(text), data)}
    frame = stored[stored["data_json"].isin(keep) | stored["cell_key"].isin(also)]
    # astype(bool): an empty mask of dtype object would select columns, not rows
    summaries = frame["condition_json"].map(lambda c: json.loads(c)["type"] == "summary").astype(bool)
    return frame[~summaries].reset_index(drop=True)


def restate(store: Store, kind: str, model: dict[str, Any], data: dict[str, Any], options: dict[str, Any],
            keys: list[dict[str, Any]]) -> list[tuple[CellKey, list[MetricRow]]]:
    """Summaries of ``kind`` recomputed from the stored cells alone (no live model), for the
    condition tables that the stored summary condition ``keys`` were computed from: what a merge
    does for every summary, and a run for the summaries of other models that read its model's
    cells (an mCE normaliser). May raise InputError (a table that no longer parses here, e.g. a
    folder-backed set whose folder is not on this machine)."""
    stored = store.frame(model_json=canonical_json(model), options_json=canonical_json(options))
    # a folder-backed corruption cell names its images in the condition, not in the data key
    own_images = stored.loc[stored["condition_json"].str.contains('"imagenet_c_root"'), "cell_key"]
    frame = summary_frame(store, model, data, options, own_images.unique().tolist())
    return summarise(kind, SummaryContext(frame, summary_tables(kind, keys), model, data, store, options))


def summarise(kind: str, ctx: SummaryContext) -> list[tuple[CellKey, list[MetricRow]]]:
    """The summary cells of ``kind`` for ``ctx``, keyed (the runner and a merge both call this)."""
    found = summariser(kind)
    if found is None:
        return []
    return [(summary_key(kind, summary_version(kind), s.key, ctx.model, ctx.data, ctx.options), s.rows)
            for s in found(ctx)]


def _open_cell_data(condition: Condition, data: DataSpec, opened: OpenedData) -> OpenedData:
    """The data a condition's cell reads: its own (``open_data``) or the suite's."""
    open_data = getattr(condition, "open_data", None)
    return open_data(data) if open_data is not None else opened
