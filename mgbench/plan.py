"""A suite run's plan: the cells it would compute, those already stored, and how long the rest
would take on this machine.

An attack cell's estimate comes first from the timings of cells of the same architecture and
cell type already in the store, taken at the same device and torch threads, and only from cells
that had their cores to themselves (``cpu_share`` at least ``UNCONTENDED``: the runner records it
beside every cell's ``images_per_s``): the median seconds per image of those cells times the
cell's images. Cells at the run's batch size are preferred; without any, those at the nearest
batch size stand in (named in the plan: on one CPU thread 64 and 256 differ by up to 1.8x per
image, benchmarks/perf/batch_size.py, while a probe runs its few images as one small batch and is
off by far more). A cell with no such record, and every model-free condition (clean,
corruptions: cheap, conditioned once for all models), is estimated from a short timed probe: the
cell exactly as the run would compute it (same condition, model, batch size, device, threads) on
its first ``probe_images`` images, its wall time scaled to the cell's image count.

Why stored timings first: attacks pay much of their cost per batch, not per image (a Square
query, an APGD iteration: Python and kernel-launch overhead on a few-image batch is most of it),
so a probe of a few images *over*estimates cells whose images run in batches of hundreds, by far:
measured idle on the 2-core CPU, the 16-image probes of resnet-tiny's attacks-cpu cells had not
finished after 16 minutes, stuck mostly in Square's sequential queries. And attacks that stop
attacking an example once it is fooled cost more on robust examples, so a probe is only as good
as its few images are typical. Nothing is written: the store is only read.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from mgbench import progress
from mgbench.conditions import Condition
from mgbench.data import OpenedData
from mgbench.provenance import device_name
from mgbench.runner import Prepared, evaluate_condition
from mgbench.store import Store

PROBE_IMAGES = 8
UNCONTENDED = 0.9  # a stored timing with a lower cpu_share shared its cores: it estimates nothing


@dataclass
class PlannedCell:
    """One cell of the run: its model, its cell type (the condition without its eps, severity
    or glimpse), whether it is stored, its image count and, when pending, the probe's cost."""

    model: str
    cell_type: str
    stored: bool
    images: int
    arch: str = ""
    seconds: float | None = None  # estimated for the whole cell (pending cells only)
    probe_images: int = 0
    timed_cells: int = 0  # stored cells of its architecture and type that the estimate comes from
    timed_batch: int = 0  # the batch size those cells ran at


@dataclass
class Plan:
    cells: list[PlannedCell]
    load_average: tuple[float, float, float]
    threads: int
    device: str
    batch_size: int

    @property
    def pending(self) -> list[PlannedCell]:
        return [c for c in self.cells if not c.stored]

    @property
    def seconds(self) -> float:
        return sum(c.seconds or 0.0 for c in self.pending)

    def by_type(self) -> list[dict[str, Any]]:
        """One row per (model, cell type): cells to compute, cells stored, s/image, estimate."""
        groups: dict[tuple[str, str], list[PlannedCell]] = {}
        for cell in self.cells:
            groups.setdefault((cell.model, cell.cell_type), []).append(cell)
        rows = []
        for (model, cell_type), cells in groups.items():
            pending = [c for c in cells if not c.stored]
            images = sum(c.images for c in pending)
            seconds = sum(c.seconds or 0.0 for c in pending)
            timed = max((c.timed_cells for c in pending), default=0)
            batch = max((c.timed_batch for c in pending), default=0)
            probed = max((c.probe_images for c in pending), default=0)
            source = f"{timed} stored" + ("" if batch == self.batch_size else f" at batch {batch}")
            rows.append({"model": model, "cell type": cell_type, "to compute": len(pending),
                         "stored": len(cells) - len(pending),
                         "s/image": seconds / images if images else None, "seconds": seconds,
                         "from": source if timed else f"probe {probed}" if probed else "-"})
        return rows


def cell_type(key: dict[str, Any]) -> str:
    """What a cell costs like, from its condition's key: without eps, severity or corruption
    name, the glimpse an attack aims at collapsed (``glimpse=*``), with the steps and restarts of
    a multi-step attack (the chance-level PGD probe's 20 x 1 costs nothing like the default 100 x
    2), e.g. ``corruption`` or ``pgd-margin linf 100x2 rescaler-off``."""
    if key.get("type") != "attack":
        return str(key.get("type"))
    variant = re.sub(r"glimpse=\d+", "glimpse=*", str(key.get("variant", "")))
    steps, restarts = key.get("steps"), key.get("restarts")
    budget = f"{int(steps)}x{int(restarts or 1)}" if isinstance(steps, (int, float)) and steps > 1 and \
        key.get("attack") != "noise" else None
    parts = [key.get("attack"), key.get("norm"), key.get("protocol"), budget, variant]
    return " ".join(str(p) for p in parts if p not in (None, "", "default", "honest"))


def stored_seconds_per_image(timings: list[dict[str, Any]], device: str, threads: int,
                             batch_size: int) -> dict[tuple[str, str], tuple[float, int, int]]:
    """(architecture, cell type) -> (median seconds per image, cells, their batch size) over the
    stored timings (``Store.timings``) taken alone (``cpu_share`` >= ``UNCONTENDED``) at this
    device and thread count: those at ``batch_size`` when there are any, else those at the
    nearest batch size (by ratio; the smaller of two as near). Timings without that record (cells
    stored before it was kept) and cells whose pass was shared by several models are left out."""
    found: dict[tuple[str, str], dict[int, list[float]]] = {}
    for timing in timings:
        batch = timing.get("batch_size")
        if (timing.get("cpu_share", 0.0) < UNCONTENDED or timing.get("threads") != threads
                or not isinstance(batch, int) or batch < 1 or timing.get("device") != device
                or timing.get("models_sharing_the_pass") != 1 or not timing.get("images")):
            continue
        found.setdefault((timing["arch"], cell_type(timing["condition"])), {}).setdefault(batch, []).append(
            timing["seconds"] / timing["images"])
    out = {}
    for group, by_batch in found.items():
        nearest = min(by_batch, key=lambda b: (abs(math.log(b / batch_size)), b))
        out[group] = (statistics.median(by_batch[nearest]), len(by_batch[nearest]), nearest)
    return out


def _probe_data(opened: OpenedData, images: int) -> OpenedData:
    take = min(images, opened.n)
    return replace(opened, dataset=Subset(opened.dataset, range(take)), n=take)


def make_plan(prepared: Prepared, store: str | Path, probe_images: int = PROBE_IMAGES) -> Plan:
    """The plan of ``prepared``'s run into ``store`` (read only; a missing store holds nothing),
    every pending cell probed on ``probe_images`` images (0: counts only, no estimate)."""
    keyed = [(condition, opened, prepared.cell_keys(condition, opened)) for condition, opened in prepared.conditions]
    stored: set[str] = set()
    timings: list[dict[str, Any]] = []
    if Path(store).exists():
        with Store(Path(store), readonly=True) as results:
            if not prepared.options.force:
                stored = {key.hash for _, _, keys in keyed for _, key in keys if results.has_cell(key.hash)}
            if probe_images > 0:
                timings = results.timings()
    known = stored_seconds_per_image(timings, device_name(prepared.device), torch.get_num_threads(),
                                     prepared.options.batch_size)
    names = [item.name for item in prepared.loaded]
    archs = [item.architecture for item in prepared.loaded]
    cells: list[PlannedCell] = []
    pending: list[tuple[Condition, OpenedData, list[int], list[PlannedCell]]] = []
    for condition, opened, keys in keyed:
        group: list[int] = []
        planned: list[PlannedCell] = []
        shared = bool(getattr(condition, "model_free", False))
        for index, key in keys:
            kind = cell_type({**condition.key, "type": condition.condition_type})
            cell = PlannedCell(names[index], kind, key.hash in stored, opened.n, archs[index])
            cells.append(cell)
            if cell.stored:
                continue
            timed = None if shared else known.get((cell.arch, cell.cell_type))
            if timed is not None:
                cell.seconds, cell.timed_cells, cell.timed_batch = timed[0] * cell.images, timed[1], timed[2]
            else:
                group.append(index)
                planned.append(cell)
        if group and probe_images > 0:
            pending.append((condition, opened, group, planned))
    if not pending:  # counts only: no model is moved or run
        return Plan(cells, os.getloadavg(), torch.get_num_threads(), str(prepared.device),
                    prepared.options.batch_size)
    modules = [prepared.options.prepare(item.module, prepared.device) for item in prepared.loaded]
    with progress.task("plan: probe", total=sum(len(g) for _, _, g, _ in pending)) as task:
        for condition, opened, group, planned in pending:
            shared = bool(getattr(condition, "model_free", False))
            for members in ([list(zip(group, planned))] if shared else [[m] for m in zip(group, planned)]):
                probe = _probe_data(opened, probe_images)
                torch.manual_seed(prepared.options.seed)
                clock = time.perf_counter()
                evaluate_condition([modules[i] for i, _ in members], probe, condition, prepared.data.num_classes,
                                   prepared.device, prepared.options, names=[names[i] for i, _ in members])
                per_model = (time.perf_counter() - clock) / len(members)
                for _, cell in members:
                    cell.seconds = per_model / probe.n * cell.images
                    cell.probe_images = probe.n
                task.advance(len(members))
    for item in prepared.loaded:
        item.module.cpu()
    return Plan(cells, os.getloadavg(), torch.get_num_threads(), str(prepared.device), prepared.options.batch_size)
