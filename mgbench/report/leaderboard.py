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
from typing import Any, Callable

import numpy as np
import pandas as pd

from mgbench.attacks.attack import describe
from mgbench.attacks.verdict import WORST_CASE, WORST_CASE_APGD
from mgbench.conditions import condition_label
from mgbench.report.tables import verdict_word

# The corruption sets a leaderboard's mean is taken over, in order of preference.
NAMED_SETS = ("common", "all", "extra")
# The budget of the headline robust number (the attacks suite's, RobustBench's ImageNet one).
HEADLINE_EPS = "4/255"


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
    robust_steps: dict[AttackColumn, list[float]] = field(default_factory=dict)
    robust_attacks: dict[AttackColumn, list[str]] = field(default_factory=dict)  # what a worst case covers
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
            cell = rows[(rows["cell_key"] == row.cell_key) & (rows["metric"] == "top1")]
            entry.robust_steps[column] = _steps(cell)
            record = json.loads(row.detail) if isinstance(row.detail, str) else {}
            entry.robust_attacks[column] = [str(a) for a in record.get("attacks", [])]
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
             if c in entry.robust and _autoattack_code(c.attack) and c.protocol == "honest"
             and c.variant == "default"]
    if not found:
        return None
    return max(found, key=lambda item: (describe(item[0].attack).strength == 0, item[0].eps))


def _autoattack_code(stored: str) -> bool:
    found = describe(stored).attack
    return found is not None and found.autoattack_code


def robust_steps_at(entry: Entry, eps_str: str = HEADLINE_EPS) -> list[float]:
    """An anytime card's robust top-1 after each glimpse at ``eps_str``: the worst case over every
    attack there, attacks aimed at that glimpse included (empty when none stored steps)."""
    found = robust_at(entry, eps_str)
    return [] if found is None else entry.robust_steps.get(found[0], [])


def aimed_steps(entry: Entry, eps_str: str = HEADLINE_EPS, name: str = WORST_CASE) -> set[int]:
    """The glimpses (1-based) of an anytime card that its worst case ``name`` at ``eps_str``
    attacked directly: the final one (every attack aims at the final prediction) and each
    ``glimpse=t`` that a covered attack names. At any other glimpse the robust number is an attack
    on the final logits read off at that step: an upper bound on that glimpse's robust accuracy."""
    found = robust_at(entry, eps_str, name)
    if found is None:
        return set()
    steps = {int(t) for attack in entry.robust_attacks.get(found[0], []) for t in re.findall(r"glimpse=(\d+)", attack)}
    return steps | {len(entry.robust_steps.get(found[0], []))}


def worst_case(entry: Entry, columns: list[AttackColumn], name: str = WORST_CASE) -> list[tuple[AttackColumn, Acc]]:
    return [(c, entry.robust[c]) for c in columns if c in entry.robust and c.attack == name]


def robust_at(entry: Entry, eps_str: str = HEADLINE_EPS, name: str = WORST_CASE) -> tuple[AttackColumn, Acc] | None:
    """A card's robust accuracy at ``eps_str`` (L-inf, honest protocol): the per-example worst case
    over every attack run at that budget, as the attack summary stores it (``worst-case`` rows;
    ``name=WORST_CASE_APGD``: over APGD-CE+T alone); None when no attack ran there."""
    for column, acc in worst_case(entry, attack_columns([entry]), name):
        if column.norm == "linf" and column.eps_str == eps_str and column.protocol == "honest":
            return column, acc
    return None


def like_with_like(cards: list[Entry], eps_str: str = HEADLINE_EPS) -> str:
    """Which worst case compares a model's seed cards like with like at ``eps_str``: every
    attack's (``WORST_CASE``) when each card that has one covers the same attack families, else
    APGD-CE+T's (``WORST_CASE_APGD``, the attack every seed card of the CPU reference runs) when
    each of those cards has it; every attack's otherwise (the seeds' sets then differ, and the
    attack column says so). Cards with no worst case yet are left out either way (the mean's *)."""
    found = [(card, column) for card in cards if (column := robust_at(card, eps_str)) is not None]
    families = {tuple(attack_families(card.robust_attacks.get(column[0], []))) for card, column in found}
    if len(families) > 1 and all(robust_at(card, eps_str, WORST_CASE_APGD) is not None for card, _ in found):
        return WORST_CASE_APGD
    return WORST_CASE


def attack_families(labels: list[str]) -> list[str]:
    """The attacks a worst case covers (its stored labels, e.g. ``pgd 4/255 (100 steps, 2 restarts)
    [rescaler-off]``) as family names, strongest first, each once (other attacks by their stored
    name, after those)."""
    found = sorted((describe(label.split()[0]) for label in labels if label.split()),
                   key=lambda name: (name.strength, name.stored))
    return list(dict.fromkeys(name.family for name in found))


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


# A seed card: ``<model>.s<seed>``, with the precision tag of a non-fp32 entry after it.
SEED_CARD = re.compile(r"^(?P<base>.+)\.s(?P<seed>\d+)(?P<tag> \[[^\]]+\])?$")
SEED_METRICS = ("clean", "corruption mean", "headline robust")


def split_seed(model: str) -> tuple[str, int | None]:
    """A card's model (architecture + dataset + training: the name without its seed suffix) and
    seed; a name without a seed suffix is a model of its own (seed None)."""
    match = SEED_CARD.match(model)
    if match is None:
        return model, None
    return match["base"] + (match["tag"] or ""), int(match["seed"])


@dataclass
class SeedStat:
    """One metric of one model over its seeds: the values and each value's 95% interval half-width."""

    values: list[float]
    half_widths: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def spread(self) -> float | None:
        """Sample standard deviation over the seeds (numpy, ddof=1); None for a single value."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    @property
    def range(self) -> float:
        return max(self.values) - min(self.values)

    @property
    def sampling(self) -> float:
        """The mean half-width of the seeds' 95% Wilson intervals (the test set's sampling error)."""
        return sum(self.half_widths) / len(self.half_widths) if self.half_widths else 0.0


def seed_stat(accs: list[Acc | float]) -> SeedStat:
    values = [a.value if isinstance(a, Acc) else float(a) for a in accs]
    halves = [(a.high - a.low) / 2 for a in accs if isinstance(a, Acc) and a.low is not None and a.high is not None]
    return SeedStat(values, halves)


@dataclass
class ModelGroup:
    """One model on one dataset (architecture + dataset + training): its seed cards
    ``<name>.s<seed>`` in seed order, or the one card of a name without a seed suffix."""

    name: str
    dataset: str
    cards: list[Entry]
    seeds: list[int | None]

    @property
    def key(self) -> str:
        """The model without its dataset (what a plot colours by): architecture + training."""
        return self.name.replace(f".{self.dataset}", "", 1)

    def stat(self, read: Any) -> SeedStat | None:
        """``read(card)`` (an :class:`Acc`, a number or None) over the cards that have it."""
        found = [value for value in (read(card) for card in self.cards) if value is not None]
        return seed_stat(found) if found else None


def model_groups(entries: list[Entry]) -> list[ModelGroup]:
    """The entries grouped into models (cards that differ only in the seed suffix), by dataset
    then name."""
    grouped: dict[tuple[str, str], list[tuple[int | None, Entry]]] = {}
    for entry in entries:
        name, seed = split_seed(entry.model)
        grouped.setdefault((entry.dataset, name), []).append((seed, entry))
    groups = []
    for (dataset, name), members in sorted(grouped.items()):
        members.sort(key=lambda item: (item[0] is None, item[0] or 0, item[1].model))
        groups.append(ModelGroup(name, dataset, [e for _, e in members], [s for s, _ in members]))
    return groups


@dataclass
class SeedGroup:
    """The cards ``<base>.s<seed>`` of one model on one dataset."""

    base: str
    dataset: str
    seeds: list[int]
    metrics: dict[str, SeedStat]


def robust_reader(cards: list[Entry]) -> Callable[[Entry], Acc | None]:
    """The reader of a card's headline robust accuracy among ``cards`` (one model's seeds): the
    worst case :func:`like_with_like` picks for them."""
    name = like_with_like(cards)

    def read(entry: Entry) -> Acc | None:
        found = robust_at(entry, name=name)
        return None if found is None else found[1]
    return read


# Per seed metric: (one model's cards) -> the reader of a card's value.
SEED_READERS: dict[str, Callable[[list[Entry]], Callable[[Entry], Any]]] = {
    "clean": lambda cards: lambda e: e.clean,
    "corruption mean": lambda cards: lambda e: e.corruption_mean,
    "headline robust": robust_reader,
}


def seed_groups(entries: list[Entry]) -> list[SeedGroup]:
    """The models with two seed cards or more. A metric counts only where every seed has it."""
    groups = []
    for group in model_groups(entries):
        seeds = [s for s in group.seeds if s is not None]
        if len(seeds) < 2 or len(seeds) != len(group.cards):
            continue
        metrics = {}
        for name in SEED_METRICS:
            stat = group.stat(SEED_READERS[name](group.cards))
            if stat is not None and len(stat.values) == len(group.cards):
                metrics[name] = stat
        groups.append(SeedGroup(group.name, group.dataset, seeds, metrics))
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
