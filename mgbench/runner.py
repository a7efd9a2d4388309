"""Running a suite: cells in, tidy rows out.

``evaluate`` is the one entry point the CLI and the tests call (like lm-eval's
``simple_evaluate``). For every model it writes one *compute* cell (parameters and GMACs per
step) and one cell per condition; each cell's rows go to the store in one transaction, and a
cell already in the store is skipped unless ``force`` is set. All input is validated (suite,
data, models) before the store is opened, so bad input writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from mgbench import flops
from mgbench.conditions import Condition, Summary, SummaryContext, summariser
from mgbench.data import DataSpec, OpenedData, make_loader, open_dataset
from mgbench.errors import InputError
from mgbench.metrics import AccuracyCounter
from mgbench.models import LoadedModel, forward_steps, load_model, num_steps
from mgbench.provenance import device_name, git_sha, library_versions, now_iso, stable_hash
from mgbench.store import DEFAULT_STORE, CellRecord, MetricRow, Store
from mgbench.suites import Suite

ProgressHook = Callable[[str, int, int], None]  # (description, done, total)


@dataclass
class RunOptions:
    device: str = "auto"
    batch_size: int = 256
    workers: int | None = None
    seed: int = 0
    force: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InputError(f"--batch-size must be a positive whole number, not {self.batch_size!r}")
        if self.workers is not None and self.workers < 0:
            raise InputError(f"--workers must be 0 or more, not {self.workers!r}")


@dataclass
class CellOutcome:
    cell_key: str
    model: str
    condition: dict[str, Any]
    computed: bool
    rows: list[MetricRow] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"unknown device {name!r}: use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but no CUDA GPU is visible: use --device cpu")
    return device


def _workers(opened: OpenedData, options: RunOptions) -> int | None:
    """In-memory data (the embedded digits) loads fastest without worker processes."""
    from mgbench.data.spec import ArrayDataset

    base = getattr(opened.dataset, "dataset", opened.dataset)
    return 0 if isinstance(base, ArrayDataset) and options.workers is None else options.workers


def to_unit(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NCHW from the loader -> float [0, 1] on the device."""
    return images.to(device, non_blocking=True).float().div_(255.0)


def evaluate_condition(
    model: nn.Module,
    opened: OpenedData,
    condition: Condition,
    num_classes: int,
    device: torch.device,
    options: RunOptions,
    progress: ProgressHook | None = None,
) -> list[MetricRow]:
    """Accuracy of ``model`` on ``opened`` under ``condition``; the conditioned batch is fed to
    a fresh forward pass, so the numbers never come from the condition's own bookkeeping."""
    counter = AccuracyCounter(num_steps(model))
    loader = make_loader(opened.dataset, options.batch_size, device=device, workers=_workers(opened, options))
    skipped = 0
    started = time.perf_counter()
    for index, (images, labels, ids, batch_skipped) in enumerate(loader):
        skipped += batch_skipped
        if images is None:
            continue
        x = to_unit(images, device)
        y = labels.to(device, non_blocking=True)
        if condition.needs_grad:
            x_cond = condition.apply(model, x, y, ids)
        else:
            with torch.no_grad():
                x_cond = condition.apply(model, x, y, ids)
        with torch.no_grad():
            outputs = forward_steps(model, x_cond)
        counter.update(outputs.logits, y)
        if progress is not None:
            progress("batches", index + 1, len(loader))
    seconds = time.perf_counter() - started
    if counter.n == 0:
        raise InputError("no readable image in the data: check --data-root")
    rows = counter.rows("top1", num_classes)
    rows += condition.extra_rows()
    rows.append(MetricRow("images_per_s", counter.n / seconds, n=counter.n, detail={"seconds": seconds}))
    if skipped:
        rows.append(MetricRow("skipped_images", float(skipped), detail={"reason": "unreadable"}))
    return rows


def _provenance(
    config: dict[str, Any], seed: int, device: torch.device, started: str, runtime: float
) -> dict[str, Any]:
    return {
        "config_hash": stable_hash(config),
        "seed": seed,
        "versions": library_versions(),
        "git_sha": git_sha(),
        "device": device_name(device),
        "started_at": started,
        "finished_at": now_iso(),
        "runtime_s": runtime,
    }


def evaluate(
    suite: Suite,
    *,
    models: list[str] | None = None,
    data: DataSpec | None = None,
    store: str | Path = DEFAULT_STORE,
    options: RunOptions | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress: ProgressHook | None = None,
) -> list[CellOutcome]:
    """Run ``suite`` for ``models`` (default: the suite's) on ``data`` (default: the suite's
    dataset) and store every finished cell. Returns one outcome per cell, computed or skipped."""
    options = options or RunOptions()
    data = data or DataSpec(name=suite.dataset)
    names = models or suite.models
    if not names:
        raise InputError(f"suite {suite.name} names no models: pass --model")
    conditions = suite.expand(overrides)
    device = resolve_device(options.device)
    opened = open_dataset(data)
    loaded = [load_model(name) for name in names]
    for item in loaded:
        _check_dataset(item, data)
        for condition in conditions:
            check_model = getattr(condition, "check_model", None)
            if check_model is not None:  # optional: a condition that needs something of the model
                check_model(item)

    outcomes: list[CellOutcome] = []
    with Store(store) as results:
        for item in loaded:
            model = item.module.to(device).eval()
            mine = [_compute_cell(results, suite, item, data, options, device)]
            for condition in conditions:
                mine.append(
                    _condition_cell(results, suite, item, model, data, opened, condition, options, device, progress)
                )
            mine += _summaries(results, suite, item, data, opened, mine, options, device, overrides)
            outcomes += mine
            item.module.cpu()
    return outcomes


def _summaries(
    results: Store, suite: Suite, item: LoadedModel, data: DataSpec, opened: OpenedData,
    cells: list[CellOutcome], options: RunOptions, device: torch.device,
    overrides: dict[str, dict[str, Any]] | None,
) -> list[CellOutcome]:
    """Derived cells (recomputed every run from the stored rows of ``cells``)."""
    out = []
    frame = results.frame(cell_key=[c.cell_key for c in cells])
    for kind in sorted(suite.types()):
        summarise = summariser(kind)
        if summarise is None:
            continue
        context = SummaryContext(frame, suite.tables(kind, overrides), item, data, opened, results, device,
                                 options.batch_size)
        for summary in summarise(context):
            out.append(_summary_cell(results, suite, item, data, opened, summary, options, device))
    return out


def _summary_cell(
    results: Store, suite: Suite, item: LoadedModel, data: DataSpec, opened: OpenedData, summary: Summary,
    options: RunOptions, device: torch.device,
) -> CellOutcome:
    data_key = opened.key(data)
    key = stable_hash({"model": item.identity(), "data": data_key, "summary": summary.key, "seed": options.seed})
    started = now_iso()
    record_options = RunOptions(options.device, options.batch_size, options.workers, options.seed, force=True)
    _write(results, suite, item, data_key, summary.key, summary.rows, record_options, device, started, 0.0, key)
    return CellOutcome(key, item.name, summary.key, True, summary.rows)


def _check_dataset(item: LoadedModel, data: DataSpec) -> None:
    if item.card is not None and item.card.dataset != data.label:
        raise InputError(
            f"model card {item.name} was trained on {item.card.dataset}, not {data.label}: "
            "choose a card for this dataset or pass --data"
        )


def _write(
    results: Store, suite: Suite, item: LoadedModel, data_key: dict[str, Any], condition_key: dict[str, Any],
    rows: list[MetricRow], options: RunOptions, device: torch.device, started: str, runtime: float, key: str,
) -> None:
    config = {
        "suite": suite.name,
        "suite_file": str(suite.source),
        "model": item.identity(),
        "data": data_key,
        "condition": condition_key,
        "seed": options.seed,
        "batch_size": options.batch_size,
    }
    record = CellRecord(
        cell_key=key,
        suite=suite.name,
        identity={**item.identity(), "params": item.params},
        data={k: data_key.get(k) for k in ("dataset", "split", "preprocessing", "subset")},
        condition=condition_key,
        config=config,
        provenance=_provenance(config, options.seed, device, started, runtime),
        rows=rows,
    )
    results.write_cell(record, replace=options.force)


def _compute_cell(
    results: Store, suite: Suite, item: LoadedModel, data: DataSpec, options: RunOptions, device: torch.device
) -> CellOutcome:
    condition_key = {"threat": "compute"}
    data_key = {"dataset": data.label, "input_size": data.input_size}
    key = stable_hash({"model": item.identity(), "data": data_key, "condition": condition_key})
    if results.has_cell(key) and not options.force:
        return CellOutcome(key, item.name, condition_key, computed=False)
    started, clock = now_iso(), time.perf_counter()
    rows = flops.profile(item.module, data.input_size).rows()
    _write(results, suite, item, data_key, condition_key, rows, options, device, started,
           time.perf_counter() - clock, key)
    return CellOutcome(key, item.name, condition_key, True, rows)


def _condition_cell(
    results: Store, suite: Suite, item: LoadedModel, model: nn.Module, data: DataSpec, opened: OpenedData,
    condition: Condition, options: RunOptions, device: torch.device, progress: ProgressHook | None,
) -> CellOutcome:
    cell_data = getattr(condition, "open_data", None)
    cell_opened = cell_data(data) if cell_data is not None else opened
    data_key = cell_opened.key(data)
    key = stable_hash({"model": item.identity(), "data": data_key, "condition": condition.key, "seed": options.seed})
    if results.has_cell(key) and not options.force:
        return CellOutcome(key, item.name, condition.key, computed=False)
    torch.manual_seed(options.seed)
    started, clock = now_iso(), time.perf_counter()
    rows = evaluate_condition(model, cell_opened, condition, data.num_classes, device, options, progress)
    _write(results, suite, item, data_key, condition.key, rows, options, device, started,
           time.perf_counter() - clock, key)
    return CellOutcome(key, item.name, condition.key, True, rows)
