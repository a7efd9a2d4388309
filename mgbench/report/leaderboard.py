"""Leaderboards derived from the tidy store, nothing by hand.

:func:`collect` turns the results frame into one :class:`Entry` per model x dataset; the writers
render the entries as GitHub markdown, a CSV, and one RobustBench-format JSON per model. When a
store holds the same condition more than once (say a ``--limit`` run and a full run), the cell with
the largest n wins, then the newest: "the same condition" is the cells' ``cell_group``
(:attr:`mgbench.cellkey.CellKey.group`). Runs under another precision than fp32 are entries of
their own (``model [bf16]``), never mixed into the fp32 numbers. Rows of untrained
(``random-init``) weights are no result to rank: :func:`trained_rows` leaves them out unless the
caller asks for them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mgbench.report.tables import condition_label, verdict_word

# The corruption sets a leaderboard's mean is taken over, in order of preference.
NAMED_SETS = ("common", "all", "extra")


@dataclass
class Acc:
    """An accuracy with its 95% interval and n."""

    value: float
    low: float | None = None
    high: float | None = None
    n: int | None = None

    def pct(self) -> str:
        return f"{100 * self.value:.1f}"

    def with_ci(self) -> str:
        if self.low is None or self.high is None or _nan(self.low):
            return self.pct()
        return f"{self.pct()} [{100 * self.low:.1f}, {100 * self.high:.1f}]"


@dataclass(frozen=True)
class AttackColumn:
    attack: str
    norm: str
    eps_str: str
    eps: float
    protocol: str
    variant: str

    def label(self) -> str:
        return condition_label({"threat": self.norm, "attack": self.attack, "eps_str": self.eps_str,
                                "protocol": self.protocol, "variant": self.variant})


@dataclass
class Entry:
    model: str
    dataset: str
    arch: str
    weights: str
    params: float | None = None
    gmacs: float | None = None
    gmacs_steps: list[float] = field(default_factory=list)
    clean: Acc | None = None
    clean_steps: list[float] = field(default_factory=list)
    corruption_mean: Acc | None = None
    corruption_steps: list[float] = field(default_factory=list)
    corruption_grid: dict[tuple[str, int], float] = field(default_factory=dict)
    mce: float | None = None
    relative_mce: float | None = None
    mce_normaliser: str | None = None
    corruption_set: str | None = None  # the set the mean and mCE cover; "(partial)" when not a named set
    robust: dict[AttackColumn, Acc] = field(default_factory=dict)
    unreliable: bool | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def anytime(self) -> bool:
        return len(self.gmacs_steps) > 1


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int(value: Any) -> int | None:
    return None if _nan(value) else int(value)


def trained_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of trained weights, and the names of the models left out for being random-init."""
    from mgbench.models import RANDOM_INIT

    untrained = frame["weights"] == RANDOM_INIT
    return frame[~untrained], sorted(frame.loc[untrained, "model"].unique())


def latest_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model x dataset x condition x metric x step: from the cell with the largest n,
    then the newest."""
    if frame.empty:
        return frame
    ranked = frame.assign(_n=frame["n"].fillna(-1)).sort_values(["_n", "finished_at"], kind="stable")
    keys = ["cell_group", "metric", "step"]
    return ranked.drop_duplicates(keys, keep="last").drop(columns="_n")


def _acc(row: pd.Series) -> Acc:
    low, high = row.get("ci_low"), row.get("ci_high")
    return Acc(float(row["value"]), None if _nan(low) else float(low), None if _nan(high) else float(high),
               _int(row.get("n")))


def _steps(rows: pd.DataFrame) -> list[float]:
    stepped = rows[rows["step"].notna()].sort_values("step")
    return [float(v) for v in stepped["value"]]


def _final(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["step"].isna()]


def collect(frame: pd.DataFrame) -> list[Entry]:
    """Leaderboard entries, sorted by dataset then model."""
    frame = latest_cells(frame)
    # The compute cell has no precision of its own: it belongs to every precision's entry.
    precisions = frame["precision"].fillna("fp32")
    entries = []
    for (model, dataset), rows in frame.groupby(["model", "dataset"], sort=True):
        run = precisions[rows.index]
        for precision in sorted(set(run[rows["threat"] != "compute"]) or {"fp32"}, key=lambda p: p != "fp32"):
            chosen = rows[(run == precision) | (rows["threat"] == "compute")]
            entries.append(_entry(model if precision == "fp32" else f"{model} [{precision}]", dataset, chosen))
    return entries


def _entry(model: str, dataset: str, rows: pd.DataFrame) -> Entry:
    first = rows.iloc[0]
    entry = Entry(model, dataset, str(first["arch"]), str(first["weights"]))
    _fill_compute(entry, rows[rows["threat"] == "compute"])
    _fill_clean(entry, rows[(rows["threat"] == "clean") & (rows["metric"] == "top1")])
    _fill_corruptions(entry, rows[rows["threat"] == "corruption"])
    _fill_attacks(entry, rows[rows["threat"].isin(["linf", "l2"])])
    return entry


def _fill_compute(entry: Entry, rows: pd.DataFrame) -> None:
    params = _final(rows[rows["metric"] == "params"])
    gmacs = rows[rows["metric"] == "gmacs"]
    if not params.empty:
        entry.params = float(params["value"].iloc[-1])
    if not _final(gmacs).empty:
        entry.gmacs = float(_final(gmacs)["value"].iloc[-1])
    entry.gmacs_steps = _steps(gmacs)


def _fill_clean(entry: Entry, rows: pd.DataFrame) -> None:
    final = _final(rows)
    if not final.empty:
        entry.clean = _acc(final.iloc[-1])
    entry.clean_steps = _steps(rows)


def _set_of(cell: pd.DataFrame) -> tuple[str, bool]:
    """A corruption summary cell's set and whether it is partial (not a named set, or with
    cells missing)."""
    condition = json.loads(cell["condition_json"].iloc[0])
    name = str(condition.get("corruptions", "?"))
    mean = _final(cell[cell["metric"] == "mean_top1"])
    detail = mean["detail"].iloc[0] if not mean.empty else None
    record = json.loads(detail) if isinstance(detail, str) else {}
    return name, bool(record.get("partial", name not in NAMED_SETS))


def _fill_corruptions(entry: Entry, rows: pd.DataFrame) -> None:
    """The corruption grid, and the mean and mCE of one summary: the first complete named set
    (common, all, extra) stored, else the partial set with the most cells, labelled partial."""
    cells = rows[(rows["metric"] == "top1") & rows["severity"].notna() & (rows["corruption"] != "mean")]
    for row in _final(cells).itertuples():
        entry.corruption_grid[(str(row.corruption), int(row.severity))] = float(row.value)
    overall = rows[(rows["corruption"] == "mean") & rows["severity"].isna()]
    if overall.empty:
        return
    summaries = [(cell, *_set_of(cell)) for _, cell in overall.groupby("cell_key", sort=False)]

    def preference(item: tuple[pd.DataFrame, str, bool]) -> tuple[int, float]:
        cell, name, partial = item
        rank = NAMED_SETS.index(name) if name in NAMED_SETS and not partial else len(NAMED_SETS)
        return rank, -float(cell["n"].max() if cell["n"].notna().any() else 0)

    overall, name, partial = min(reversed(summaries), key=preference)  # the newest among equals
    entry.corruption_set = name + (" (partial)" if partial else "")
    mean = overall[overall["metric"] == "mean_top1"]
    if not _final(mean).empty:
        entry.corruption_mean = _acc(_final(mean).iloc[-1])
        entry.corruption_steps = _steps(mean)
    for metric, attr in (("mce", "mce"), ("relative_mce", "relative_mce")):
        found = _final(overall[overall["metric"] == metric])
        if not found.empty:
            setattr(entry, attr, float(found["value"].iloc[-1]))
            detail = found["detail"].iloc[-1]
            record = json.loads(detail) if isinstance(detail, str) else {}
            if "normaliser" in record:
                entry.mce_normaliser = normaliser_name(record["normaliser"])


def normaliser_name(normaliser: Any) -> str:
    """The corruption summary's normaliser record (``{"kind": "model", "model": ...}`` or
    ``{"kind": "alexnet", ...}``) as the short name the tables print."""
    if isinstance(normaliser, dict):
        if normaliser.get("kind") == "alexnet":
            return "AlexNet (ImageNet-C errors)"
        return str(normaliser.get("model", normaliser))
    return str(normaliser)


def _fill_attacks(entry: Entry, rows: pd.DataFrame) -> None:
    accuracy = _final(rows[(rows["metric"] == "top1") & rows["eps"].notna()])
    for row in accuracy.itertuples():
        column = AttackColumn(str(row.attack), str(row.norm or row.threat), str(row.eps_str), float(row.eps),
                              str(row.protocol or "honest"), str(row.variant or "default"))
        acc = _acc(pd.Series(row._asdict()))
        # Several step/restart settings of one attack: the strongest (lowest accuracy) is reported.
        if column not in entry.robust or acc.value < entry.robust[column].value:
            entry.robust[column] = acc
    verdicts = _final(rows[rows["metric"] == "unreliable"])
    if not verdicts.empty:
        entry.unreliable = bool(verdicts["value"].max() > 0)
        for detail in verdicts["detail"]:
            if isinstance(detail, str):
                entry.reasons += list(json.loads(detail).get("reasons", []))


def attack_columns(entries: list[Entry]) -> list[AttackColumn]:
    """All attack columns, honest protocol first, then by variant, norm, attack and eps; every
    field takes part, so the order never depends on set iteration (the files stay byte-stable)."""
    columns = {c for e in entries for c in e.robust}
    return sorted(columns, key=lambda c: (c.protocol != "honest", c.protocol, c.variant != "default", c.variant,
                                          c.norm, c.attack, c.eps, c.eps_str))


def headline_attack(entry: Entry, columns: list[AttackColumn]) -> tuple[AttackColumn, Acc] | None:
    """The AutoAttack result (honest protocol, default variant) at the largest eps it ran at:
    the standard version (RobustBench's protocol) when it ran, else another version; None when
    AutoAttack never ran."""
    found = [(c, entry.robust[c]) for c in columns
             if c in entry.robust and c.attack.startswith("autoattack") and c.protocol == "honest"
             and c.variant == "default"]
    if not found:
        return None
    return max(found, key=lambda item: (item[0].attack == "autoattack-standard", item[0].eps))


def worst_case(entry: Entry, columns: list[AttackColumn]) -> list[tuple[AttackColumn, Acc]]:
    return [(c, entry.robust[c]) for c in columns if c in entry.robust and c.attack == "worst-case"]


def verdict_text(entry: Entry) -> str:
    return verdict_word(entry.unreliable)


# ----------------------------------------------------------------------------- flat table


def summary_frame(entries: list[Entry]) -> pd.DataFrame:
    """One row per model x dataset with every leaderboard number (the CSV)."""
    columns = attack_columns(entries)
    rows = []
    for e in entries:
        row: dict[str, Any] = {
            "dataset": e.dataset, "model": e.model, "arch": e.arch, "weights": e.weights,
            "params_m": None if e.params is None else e.params / 1e6, "gmacs": e.gmacs,
            "gmacs_per_step": " / ".join(f"{g:.4f}" for g in e.gmacs_steps),
            "clean_top1": e.clean.value if e.clean else None,
            "clean_ci_low": e.clean.low if e.clean else None,
            "clean_ci_high": e.clean.high if e.clean else None,
            "clean_n": e.clean.n if e.clean else None,
            "clean_top1_per_step": " / ".join(f"{v:.4f}" for v in e.clean_steps),
            "corruption_set": e.corruption_set,
            "corruption_mean_top1": e.corruption_mean.value if e.corruption_mean else None,
            "corruption_mean_top1_per_step": " / ".join(f"{v:.4f}" for v in e.corruption_steps),
            "mce": e.mce, "relative_mce": e.relative_mce, "mce_normaliser": e.mce_normaliser,
            "verdict": verdict_text(e), "unreliable": e.unreliable, "reasons": "; ".join(e.reasons),
        }
        for column in columns:
            acc = e.robust.get(column)
            row[column.label()] = acc.value if acc else None
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- RobustBench JSON


def robustbench_json(entry: Entry, columns: list[AttackColumn]) -> dict[str, Any]:
    """The RobustBench leaderboard fields (accuracies as percent strings, as RobustBench writes
    them), plus mgbench's extras."""
    headline = headline_attack(entry, columns)

    def pct(acc: Acc | float | None) -> str | None:
        if acc is None:
            return None
        value = acc.value if isinstance(acc, Acc) else acc
        return f"{100 * value:.2f}"

    footnote = []
    if entry.mce_normaliser:
        footnote.append(f"mCE normalised by {entry.mce_normaliser} on the same data")
    if entry.reasons:
        footnote.append("unreliable: " + "; ".join(entry.reasons))
    return {
        "name": entry.model,
        "architecture": entry.arch,
        "dataset": entry.dataset,
        "eps": headline[0].eps_str if headline else None,
        "clean_acc": pct(entry.clean),
        "autoattack_acc": pct(headline[1]) if headline else None,
        "corruptions_acc": pct(entry.corruption_mean),
        "corruptions_mce": pct(entry.mce),
        "unreliable": bool(entry.unreliable) if entry.unreliable is not None else None,
        "footnote": ". ".join(footnote) or None,
        "mgbench": {
            "weights": entry.weights,
            "params": entry.params,
            "gmacs": entry.gmacs,
            "gmacs_per_step": entry.gmacs_steps,
            "clean_n": entry.clean.n if entry.clean else None,
            "clean_ci95": [entry.clean.low, entry.clean.high] if entry.clean else None,
            "clean_acc_per_step": entry.clean_steps,
            "corruptions_acc_per_step": entry.corruption_steps,
            "relative_mce": entry.relative_mce,
            "verdict": verdict_text(entry),
            "robust_acc": {c.label(): entry.robust[c].value for c in columns if c in entry.robust},
            "verdict_reasons": entry.reasons,
        },
    }


# ----------------------------------------------------------------------------- seeds


SEED_CARD = re.compile(r"^(?P<base>.+)\.s(?P<seed>\d+)$")
SEED_METRICS = ("clean", "corruption mean", "headline robust")


@dataclass
class SeedStat:
    """One metric of one model over its seeds: the values and each value's 95% interval half-width."""

    values: list[float]
    half_widths: list[float]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def spread(self) -> float:
        """Sample standard deviation over the seeds."""
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    @property
    def range(self) -> float:
        return max(self.values) - min(self.values)

    @property
    def sampling(self) -> float:
        """The mean half-width of the seeds' 95% Wilson intervals (the test set's sampling error)."""
        return sum(self.half_widths) / len(self.half_widths) if self.half_widths else 0.0


@dataclass
class SeedGroup:
    """The cards ``<base>.s<seed>`` of one model on one dataset."""

    base: str
    dataset: str
    seeds: list[int]
    metrics: dict[str, SeedStat]


def _seed_metrics(entry: Entry) -> dict[str, Acc]:
    found: dict[str, Acc] = {}
    if entry.clean is not None:
        found["clean"] = entry.clean
    if entry.corruption_mean is not None:
        found["corruption mean"] = entry.corruption_mean
    headline = headline_attack(entry, attack_columns([entry]))
    if headline is not None:
        found["headline robust"] = headline[1]
    return found


def seed_groups(entries: list[Entry]) -> list[SeedGroup]:
    """Entries named ``<base>.s<seed>`` grouped by base and dataset (two seeds or more). A metric
    counts only where every seed of the group has it."""
    grouped: dict[tuple[str, str], list[tuple[int, Entry]]] = {}
    for entry in entries:
        match = SEED_CARD.match(entry.model)
        if match:
            grouped.setdefault((entry.dataset, match["base"]), []).append((int(match["seed"]), entry))
    groups = []
    for (dataset, base), members in sorted(grouped.items()):
        if len(members) < 2:
            continue
        members.sort(key=lambda item: item[0])
        per_seed = [_seed_metrics(entry) for _, entry in members]
        metrics = {}
        for name in SEED_METRICS:
            accs = [found[name] for found in per_seed if name in found]
            if len(accs) == len(members):
                halves = [(a.high - a.low) / 2 for a in accs if a.low is not None and a.high is not None]
                metrics[name] = SeedStat([a.value for a in accs], halves)
        groups.append(SeedGroup(base, dataset, [seed for seed, _ in members], metrics))
    return groups


def beyond_noise(a: SeedStat, b: SeedStat) -> bool:
    """Whether two models' means differ by more than either model's seed range (max - min over its
    seeds) and more than either model's sampling interval (mean 95% half-width)."""
    gap = abs(a.mean - b.mean)
    return gap > max(a.range, b.range) and gap > max(a.sampling, b.sampling)


def seed_differences(groups: list[SeedGroup]) -> pd.DataFrame:
    """Every pair of models on the same dataset, per metric both have: the gap between their
    means (first minus second) and whether it is beyond the noise (:func:`beyond_noise`)."""
    rows = []
    for i, first in enumerate(groups):
        for second in groups[i + 1:]:
            if second.dataset != first.dataset:
                continue
            for name in SEED_METRICS:
                if name in first.metrics and name in second.metrics:
                    a, b = first.metrics[name], second.metrics[name]
                    rows.append({"dataset": first.dataset, "first": first.base, "second": second.base,
                                 "metric": name, "gap": a.mean - b.mean, "beyond_noise": beyond_noise(a, b)})
    return pd.DataFrame(rows, columns=["dataset", "first", "second", "metric", "gap", "beyond_noise"])


def seed_markdown(entries: list[Entry]) -> str:
    """The seed section of the leaderboard: mean +- spread per model, and which gaps are beyond noise
    (empty when no model has two seed cards or more)."""
    groups = seed_groups(entries)
    if not groups:
        return ""
    lines = ["### Across seeds\n",
             "Models with several seed cards (`NAME.s0`, `NAME.s1`, ...): mean over the seeds +- their "
             "standard deviation, the seed range (max - min) and the mean 95% sampling half-width, in "
             "points. A gap between two models is **beyond noise** when it is larger than both models' "
             "seed ranges and both sampling half-widths.\n",
             "| model | dataset | seeds | " + " | ".join(SEED_METRICS) + " |",
             "|---|---|---|" + "---|" * len(SEED_METRICS)]
    for group in groups:
        cells = []
        for name in SEED_METRICS:
            stat = group.metrics.get(name)
            cells.append("-" if stat is None else f"{100 * stat.mean:.1f} +- {100 * stat.spread:.1f} "
                         f"(range {100 * stat.range:.1f}, sampling {100 * stat.sampling:.1f})")
        lines.append(f"| {group.base} | {group.dataset} | {', '.join(map(str, group.seeds))} | " + " | ".join(cells)
                     + " |")
    differences = seed_differences(groups)
    if not differences.empty:
        lines += ["", "| models | dataset | metric | gap (points) | beyond noise |", "|---|---|---|---|---|"]
        for row in differences.itertuples():
            lines.append(f"| {row.first} - {row.second} | {row.dataset} | {row.metric} | {100 * row.gap:+.1f} | "
                         f"{'**yes**' if row.beyond_noise else 'no'} |")
    return "\n".join(lines) + "\n"
