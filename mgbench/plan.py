"""A suite run's plan: the cells it would compute, those already stored, and how long the rest
would take on this machine, from a short timed probe of every cell still to compute.

The probe runs each pending cell exactly as the run would (same condition, model, batch size,
device, torch threads), on the first ``probe_images`` images of the cell's data, and scales its
wall time to the cell's image count. Attacks that stop attacking an example once it is fooled
cost more on robust examples, so the estimate is as good as the probe's images are typical.
And attacks pay much of their cost per batch, not per image (a Square query, an APGD iteration:
Python and kernel-launch overhead on a 16-image batch is most of it), so a probe of a few images
*over*estimates cells whose images run in batches of hundreds: read an attack cell's estimate as
an upper bound. (Measured idle on the 2-core CPU: the 16-image probes of resnet-tiny's attacks-cpu
cells had not finished after 16 minutes, stuck mostly in Square's sequential queries, where the
whole suite's 500-image cells are about 2 hours of one core.) Model-free
conditions (clean, corruptions) condition each batch once for every model, as the run does.
Nothing is written: the store is only read.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from mgbench import progress
from mgbench.conditions import Condition
from mgbench.data import OpenedData
from mgbench.runner import Prepared, evaluate_condition
from mgbench.store import Store

PROBE_IMAGES = 8


@dataclass
class PlannedCell:
    """One cell of the run: its model, its cell type (the condition without its eps, severity
    or glimpse), whether it is stored, its image count and, when pending, the probe's cost."""

    model: str
    cell_type: str
    stored: bool
    images: int
    seconds: float | None = None  # estimated for the whole cell (pending cells only)
    probe_images: int = 0


@dataclass
class Plan:
    cells: list[PlannedCell]
    load_average: tuple[float, float, float]
    threads: int
    device: str

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
            rows.append({"model": model, "cell type": cell_type, "to compute": len(pending),
                         "stored": len(cells) - len(pending),
                         "s/image": seconds / images if images else None, "seconds": seconds})
        return rows


_DROPPED = ("eps", "eps_str", "severity", "corruption", "threat")


def cell_type(condition: Condition) -> str:
    """What a cell costs like: its condition's key without eps, severity or corruption name, the
    glimpse an attack aims at collapsed (``glimpse=*``), e.g. ``corruption`` or
    ``pgd-margin linf honest rescaler-off``."""
    key = condition.key
    if condition.condition_type in ("clean", "corruption"):
        return condition.condition_type
    variant = re.sub(r"glimpse=\d+", "glimpse=*", str(key.get("variant", "")))
    parts = [key.get("attack"), key.get("norm"), key.get("protocol"), variant]
    return " ".join(str(p) for p in parts if p not in (None, "", "default", "honest"))


def _probe_data(opened: OpenedData, images: int) -> OpenedData:
    take = min(images, opened.n)
    return replace(opened, dataset=Subset(opened.dataset, range(take)), n=take)


def make_plan(prepared: Prepared, store: str | Path, probe_images: int = PROBE_IMAGES) -> Plan:
    """The plan of ``prepared``'s run into ``store`` (read only; a missing store holds nothing),
    every pending cell probed on ``probe_images`` images (0: counts only, no estimate)."""
    keyed = [(condition, opened, prepared.cell_keys(condition, opened)) for condition, opened in prepared.conditions]
    stored: set[str] = set()
    if Path(store).exists() and not prepared.options.force:
        with Store(Path(store), readonly=True) as results:
            stored = {key.hash for _, _, keys in keyed for _, key in keys if results.has_cell(key.hash)}
    names = [item.name for item in prepared.loaded]
    cells: list[PlannedCell] = []
    pending: list[tuple[Condition, OpenedData, list[int], list[PlannedCell]]] = []
    for condition, opened, keys in keyed:
        group: list[int] = []
        planned: list[PlannedCell] = []
        for index, key in keys:
            cell = PlannedCell(names[index], cell_type(condition), key.hash in stored, opened.n)
            cells.append(cell)
            if not cell.stored:
                group.append(index)
                planned.append(cell)
        if group and probe_images > 0:
            pending.append((condition, opened, group, planned))
    if not pending:  # counts only: no model is moved or run
        return Plan(cells, os.getloadavg(), torch.get_num_threads(), str(prepared.device))
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
    return Plan(cells, os.getloadavg(), torch.get_num_threads(), str(prepared.device))
