"""The ``corruption`` condition type and its summaries.

A suite table::

    [[conditions]]
    type = "corruption"
    corruptions = "common"          # common | extra | all | a list of names
    severities = "1-5"              # "1-5", "1,3,5", or a list
    backend = "torch"               # torch | reference | folder
    scaling = "native"              # native | resample224 (see mgbench.corruptions.scaling)
    preprocessing = "hendrycks"     # hendrycks | mgnet
    imagenet_c_root = "/data/imagenet-c"   # folder backend only
    mce_baseline = "resnet-tiny.digits.s0"    # normaliser of CE/mCE (a model, or "alexnet")
    workers = 2                     # reference backend: processes (default: one per core)

expands to one condition per corruption x severity. ``torch`` and ``reference`` corrupt each
batch in ``apply`` (after the clean preprocessing, Hendrycks' order); ``folder`` reads a
pre-generated ImageNet-C style folder. ``preprocessing`` is what happens to a corrupted
224 x 224 image before the model: ``hendrycks`` nothing (CenterCrop 224 of the folder's
images), ``mgnet`` Resize 256 + CenterCrop 224 as MGNet's code does (on the fly: a zoom by
256/224 of the corrupted image, at any size).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench.cellkey import canonical_json
from mgbench.conditions import (
    Condition,
    Summary,
    SummaryContext,
    check_keys,
    register_condition_type,
    register_summary,
)
from mgbench.corruptions import metrics
from mgbench.corruptions.names import GROUPS, parse_corruptions, parse_severities
from mgbench.corruptions.reference import ReferenceBackend
from mgbench.corruptions.scaling import Backend, check_scaling, corrupt_scaled
from mgbench.corruptions.torch_backend import TorchBackend
from mgbench.data import open_imagenet_c
from mgbench.errors import InputError
from mgbench.models import list_architectures, list_cards
from mgbench.rows import MetricRow

if TYPE_CHECKING:
    from mgbench.data import DataSpec, OpenedData

BACKENDS = ("torch", "reference", "folder")
PREPROCESSINGS = ("hendrycks", "mgnet")
_FOLDER_TRANSFORM = {"hendrycks": "crop224", "mgnet": "resize256-crop224"}
TABLE_KEYS = ("type", "corruptions", "severities", "backend", "scaling", "preprocessing", "imagenet_c_root",
              "mce_baseline", "workers")


@dataclass(frozen=True)
class Settings:
    """One ``[[conditions]]`` table of type corruption, validated."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    backend: str = "torch"
    scaling: str = "native"
    preprocessing: str = "hendrycks"
    imagenet_c_root: str | None = None
    mce_baseline: str | None = None
    workers: int | None = None

    @property
    def group(self) -> str:
        """The corruption set's name: a group name, or the names joined."""
        for name, members in GROUPS.items():
            if self.corruptions == members:
                return name
        return ",".join(self.corruptions)

    def _settings_key(self) -> dict[str, Any]:
        """What every cell of the table shares: where the images come from and how they are made."""
        key: dict[str, Any] = {"threat": "corruption", "backend": self.backend,
                               "corruption_preprocessing": self.preprocessing}
        if self.backend == "folder":
            key["imagenet_c_root"] = str(Path(self.imagenet_c_root or "").resolve())
        else:
            key["scaling"] = self.scaling
        return key

    def condition_key(self, corruption: str, severity: int) -> dict[str, Any]:
        return {**self._settings_key(), "corruption": corruption, "severity": severity}

    def summary_key(self) -> dict[str, Any]:
        """Everything a summary of this table depends on (:func:`tables_from_summaries` reads it back)."""
        return {**self._settings_key(), "corruptions": self.group, "severities": list(self.severities),
                "mce_baseline": self.mce_baseline}


def _choice(table: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise InputError(f"corruption {key} {value!r} is not one of {', '.join(choices)}: fix the suite or option")
    return value


def parse_table(table: dict[str, Any]) -> Settings:
    """Validate a corruption table (after command-line overrides)."""
    check_keys("corruption", table)
    backend = _choice(table, "backend", BACKENDS, "torch")
    root = table.get("imagenet_c_root")
    if backend == "folder":
        if not root or not Path(root).is_dir():
            raise InputError(f"backend folder needs imagenet_c_root (--imagenet-c-root) to be an existing folder, "
                             f"not {root!r}")
    workers = table.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise InputError(f"corruption workers must be a whole number >= 0, not {workers!r}")
    baseline = table.get("mce_baseline")
    if baseline is not None:
        _check_baseline(baseline)
    return Settings(
        corruptions=tuple(parse_corruptions(table.get("corruptions", "common"))),
        severities=tuple(parse_severities(table.get("severities", "1-5"))),
        backend=backend,
        scaling=check_scaling(table.get("scaling", "native")),
        preprocessing=_choice(table, "preprocessing", PREPROCESSINGS, "hendrycks"),
        imagenet_c_root=root,
        mce_baseline=baseline,
        workers=workers,
    )


def _check_baseline(name: object) -> None:
    # Existence is not checked here: a baseline without stored cells only skips mCE (with a note).
    if not isinstance(name, str) or not name:
        raise InputError(f"mce_baseline must be a model name or alexnet, not {name!r}")


def check_known_baseline(name: object) -> None:
    """A user's mce_baseline (suite file or --mce-baseline) names a model mgbench knows: alexnet,
    a zoo card, an architecture, or a ``FILE.py:factory`` / ``robustbench:NAME`` (checked when
    loaded). Stored summaries are not held to this (a merge reads names of any origin)."""
    if name is None or name == "alexnet" or (isinstance(name, str) and ":" in name):
        return
    _check_baseline(name)
    if name not in list_cards() and name not in list_architectures():
        raise InputError(f"unknown mce_baseline {name!r}: use alexnet, a zoo card or an architecture "
                         "(`mgbench models` lists them)")


@functools.lru_cache(maxsize=None)
def _backend(name: str, workers: int | None) -> Backend:
    return ReferenceBackend(workers) if name == "reference" else TorchBackend()


def mgnet_zoom(x: torch.Tensor) -> torch.Tensor:
    """MGNet's evaluation transform on an already cropped image: resize by 256/224
    (antialiased bilinear, like torchvision's Resize) and crop the centre back to its size. The
    filter's weights are non-negative and sum to 1, so the result stays in [0, 1]."""
    height, width = x.shape[-2:]
    size = (round(height * 256 / 224), round(width * 256 / 224))
    large = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return torch.round(large[..., top:top + height, left:left + width] * 255) / 255


# Bump when a change of a backend or of the preprocessing moves the numbers: stored corruption
# cells are then recomputed. SUMMARY_VERSION: the same for the summaries (2: named sets only,
# mCE only over a complete normaliser; 3: the normaliser in the key, so that summaries over two
# normalisers are two cells). CONDITION_VERSION 2: the torch backend's histogram equalisation
# (spatter's water drops, severities 1-3) rounds exact halves as OpenCV does, and pixelate
# reduces and enlarges as PIL does at box edges and exact ties (sizes like 37 or 40 px; the
# same images as before at 32, 64 and 224 px).
CONDITION_VERSION = 2
SUMMARY_VERSION = 3


@dataclass
class _CorruptionCell:
    """One (corruption, severity) cell of a corruption table; subclasses say where the images come from."""

    condition_type = "corruption"
    condition_version = CONDITION_VERSION
    settings: Settings
    corruption: str
    severity: int
    key: dict[str, Any] = field(init=False)
    needs_grad: bool = False
    model_free: bool = True  # the same corrupted batch serves every model of the run

    def __post_init__(self) -> None:
        self.key = self.settings.condition_key(self.corruption, self.severity)

    def extra_rows(self) -> list[MetricRow]:
        return []


class OnTheFlyCorruption(_CorruptionCell):
    """Corrupts each batch with the torch or reference backend."""

    def apply(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        backend = _backend(self.settings.backend, self.settings.workers)
        out = corrupt_scaled(backend, x, ids.tolist(), self.corruption, self.severity, self.settings.scaling)
        return mgnet_zoom(out) if self.settings.preprocessing == "mgnet" else out


class FolderCorruption(_CorruptionCell):
    """Reads the cell's images from a pre-generated ImageNet-C style folder."""

    def open_data(self, spec: "DataSpec") -> "OpenedData":
        if spec.name != "imagenet100":
            raise InputError(f"backend folder reads ImageNet-C style folders of ImageNet100, not {spec.name}: "
                             "use backend torch or reference")
        root = self.settings.imagenet_c_root or ""
        transform = _FOLDER_TRANSFORM[self.settings.preprocessing]
        return open_imagenet_c(spec, root, self.corruption, self.severity, transform)

    def apply(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return x


def corruption_label(key: "pd.Series | dict[str, Any]") -> str:
    """``fog s3``."""
    return f"{key['corruption']} s{int(key['severity'])}"


@register_condition_type("corruption", TABLE_KEYS, threats=("corruption",), label=corruption_label)
def expand_corruptions(table: dict[str, Any]) -> list[Condition]:
    settings = parse_table(table)
    kind = FolderCorruption if settings.backend == "folder" else OnTheFlyCorruption
    return [kind(settings, name, severity) for name in settings.corruptions for severity in settings.severities]


# ----------------------------------------------------------------------------- summaries

def _canonical(settings: Settings, corruption: str, severity: int) -> str:
    """The stored canonical condition of one cell of ``settings``."""
    return canonical_json({"type": "corruption", "version": CONDITION_VERSION,
                           **settings.condition_key(corruption, severity)})


def _tidy(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "corruption": rows["corruption"].values, "severity": rows["severity"].astype(int).values,
        "step": rows["step"].fillna(metrics.FINAL).astype(int).values, "accuracy": rows["value"].values,
        "n": rows["n"].values,
    })


def _latest(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per ``columns`` (+ step): the most recently finished."""
    keyed = rows.assign(step_key=rows["step"].fillna(metrics.FINAL))
    return keyed.drop_duplicates(subset=[*columns, "step_key"], keep="last").drop(columns="step_key")


def _same_run(rows: pd.DataFrame, ctx: SummaryContext) -> pd.DataFrame:
    """Rows of cells on this run's data under this run's options (precision, seed)."""
    data, options = canonical_json(ctx.data), canonical_json(ctx.options)
    return rows[(rows["data_json"] == data) & (rows["options_json"] == options)]


def _clean(ctx: SummaryContext, model: str, weights: str | None) -> pd.DataFrame | None:
    """A model's clean top-1 per step on this run's clean data, from the store."""
    rows = ctx.store.frame(model=model, dataset=ctx.data["dataset"], threat="clean", metric="top1")
    if weights is not None:
        rows = rows[rows["weights"] == weights]
    rows = _same_run(rows, ctx)
    if rows.empty:
        return None
    rows = _latest(rows, ["model"])
    return pd.DataFrame({"step": rows["step"].fillna(metrics.FINAL).astype(int).values,
                         "accuracy": rows["value"].values})


def _baseline(ctx: SummaryContext, name: str, wanted: set[str], backend: str) -> pd.DataFrame:
    """The baseline's stored cells with the same canonical condition, data and run options (a
    folder's cells read the folder's images, named by the condition, not the run's clean data)."""
    rows = ctx.store.frame(model=name, dataset=ctx.data["dataset"], threat="corruption", metric="top1")
    if backend == "folder":
        rows = rows[rows["options_json"] == canonical_json(ctx.options)]
    else:
        rows = _same_run(rows, ctx)
    rows = rows[rows["condition_json"].isin(wanted)]
    return _tidy(_latest(rows, ["corruption", "severity"]))


def _step(value: int) -> int | None:
    return None if value == metrics.FINAL else int(value)


def _rows(frame: pd.DataFrame, metric: str, column: str, detail: dict[str, Any] | None = None) -> list[MetricRow]:
    """Rows of one metric per step; a ratio with a zero denominator (a baseline no worse than
    clean) is left out rather than stored as NaN."""
    return [MetricRow(metric, float(r[column]), n=int(r["n"]) if "n" in r and pd.notna(r["n"]) else None,
                      step=_step(r["step"]), detail=detail)
            for _, r in frame.iterrows() if math.isfinite(float(r[column]))]


def summarise(ctx: SummaryContext, settings: Settings) -> list[Summary]:
    """Mean accuracies, CE and mCE (plain and relative) of one corruption table's cells: the
    stored cells of exactly its corruption set x severities on this run's data, backend and
    preprocessing. A set that is not a named group (common, extra, all), or that lacks stored
    cells, is labelled partial; mCE needs the normaliser's every cell of the set."""
    rows = ctx.frame[(ctx.frame["threat"] == "corruption") & (ctx.frame["metric"] == "top1")]
    if settings.backend != "folder":  # a folder's cells read the folder's images, not the run's
        rows = rows[rows["data_json"] == canonical_json(ctx.data)]
    wanted = {_canonical(settings, c, s) for c in settings.corruptions for s in settings.severities}
    mine = _latest(rows[rows["condition_json"].isin(wanted)], ["corruption", "severity"])
    if mine.empty:
        return []
    cells = _tidy(mine)
    common = settings.summary_key()
    covered = sorted({(str(c), int(s)) for c, s in zip(cells["corruption"], cells["severity"])})
    complete = len(covered) == len(wanted)
    scope = {"corruptions": list(settings.corruptions), "severities": list(settings.severities),
             "set": settings.group, "partial": not complete or settings.group not in GROUPS}
    if not complete:
        scope["cells"] = [f"{c} s{s}" for c, s in covered]
    notes: list[str] = []
    if scope["partial"]:
        notes.append(f"partial: {settings.group!r} is not a named set (common, extra, all)"
                     if complete else f"partial: {len(covered)} of the set's {len(wanted)} cells are stored")
    per_corruption = metrics.mean_accuracy(cells, by="corruption")
    overall = metrics.mean_accuracy(cells)

    ce = rce = None
    normaliser: dict[str, Any] | None = None
    if settings.mce_baseline is None:
        notes.append("mCE skipped: no mce_baseline set (suite key or --mce-baseline)")
    elif not complete:
        notes.append("mCE undefined: this model lacks cells of the set")
    else:
        if settings.mce_baseline == "alexnet":
            base, base_clean = metrics.alexnet_baseline(cells)
            normaliser = {"kind": "alexnet", "errors": "Hendrycks & Dietterich 2019, ImageNet-1k",
                          "clean_error": metrics.ALEXNET_CLEAN_ERROR}
            if set(settings.severities) != {1, 2, 3, 4, 5}:
                notes.append("AlexNet errors are means over severities 1-5; other severity sets are not comparable")
        else:
            base = _baseline(ctx, settings.mce_baseline, wanted, settings.backend)
            base_clean = _clean(ctx, settings.mce_baseline, None)
            normaliser = {"kind": "model", "model": settings.mce_baseline, "same_data": ctx.data}
        have = {(str(c), int(s)) for c, s in zip(base["corruption"], base["severity"])}
        missing = sorted(set(covered) - have)
        if missing:
            notes.append(f"mCE undefined: the normaliser {settings.mce_baseline} lacks {len(missing)} of the set's "
                         f"{len(covered)} cells ({', '.join(f'{c} s{s}' for c, s in missing[:4])}"
                         f"{', ...' if len(missing) > 4 else ''}) with the same settings and data: "
                         f"run this suite for {settings.mce_baseline} (its run adds the mCE here)")
        else:
            ce = metrics.corruption_errors(cells, base)
            clean = _clean(ctx, ctx.model["model"], ctx.model["weights"])
            if clean is None or base_clean is None:
                who = ctx.model["model"] if clean is None else settings.mce_baseline
                notes.append(f"relative mCE skipped: no clean accuracy of {who} on this data in the store "
                             "(add a clean condition to the suite)")
            else:
                rce = metrics.relative_corruption_errors(cells, clean, base, base_clean)

    out = []
    for corruption, group in per_corruption.groupby("corruption", sort=False):
        items = _rows(group, "mean_top1", "accuracy", scope | {"over": "severities"})
        if ce is not None:
            mine_ce = ce[ce["corruption"] == corruption].assign(n=None)
            items += _rows(mine_ce, "ce", "ce", {"normaliser": normaliser})
        if rce is not None:
            mine_rce = rce[rce["corruption"] == corruption].assign(n=None)
            items += _rows(mine_rce, "relative_ce", "relative_ce", {"normaliser": normaliser})
        out.append(Summary({**common, "corruption": corruption}, items))
    for severity, group in metrics.mean_accuracy(cells, by="severity").groupby("severity", sort=True):
        out.append(Summary({**common, "corruption": "mean", "severity": int(severity)},
                           _rows(group, "mean_top1", "accuracy", scope | {"over": "corruptions"})))
    items = _rows(overall, "mean_top1", "accuracy", scope | {"over": "corruptions and severities", "notes": notes})
    if ce is not None:
        mce = metrics.mean_over_corruptions(ce, "ce").assign(n=None)
        items += _rows(mce, "mce", "ce", {"normaliser": normaliser, "corruptions": sorted(ce["corruption"].unique())})
    if rce is not None and not rce.empty:
        rmce = metrics.mean_over_corruptions(rce, "relative_ce").assign(n=None)
        items += _rows(rmce, "relative_mce", "relative_ce", {"normaliser": normaliser})
    out.append(Summary({**common, "corruption": "mean"}, items))
    return out


def tables_from_summaries(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The corruption tables whose summaries have these condition keys (one per distinct set x
    severities x settings): what a merge recomputes them from."""
    tables: dict[str, dict[str, Any]] = {}
    for key in keys:
        table = {"type": "corruption", "corruptions": key["corruptions"], "severities": key["severities"],
                 "backend": key["backend"], "preprocessing": key["corruption_preprocessing"],
                 "mce_baseline": key.get("mce_baseline")}
        table.update({k: key[k] for k in ("scaling", "imagenet_c_root") if k in key})
        tables[canonical_json(table)] = {k: v for k, v in table.items() if v is not None}
    return list(tables.values())


def normalisers(key: dict[str, Any]) -> set[str]:
    """The model whose stored cells a summary with this key normalises CE and mCE by (none for
    ``alexnet``'s published errors or no baseline)."""
    baseline = key.get("mce_baseline")
    return {baseline} if isinstance(baseline, str) and baseline != "alexnet" else set()


@register_summary("corruption", SUMMARY_VERSION, tables_from_summaries, normalisers)
def summarise_tables(ctx: SummaryContext) -> list[Summary]:
    return [summary for table in ctx.tables for summary in summarise(ctx, parse_table(table))]

