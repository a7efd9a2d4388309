"""The CI guard on accuracy versus compute: a fresh run of the regression suite against a
committed baseline table.

The baseline (``results/baseline/<name>.csv``) holds, per model x condition, the final top-1
(with n) and the GMACs after each step. A fresh row fails when

- its accuracy is lower than the baseline's by more than the statistical margin: the 95%
  two-proportion margin ``1.96 * sqrt(p0 (1 - p0) / n0 + p1 (1 - p1) / n1)``, so a change
  smaller than the noise of n images passes and a real drop does not;
- its compute is higher than the baseline's by more than 1%;
- it is missing (the suite lost a model or condition).

Rows the baseline does not know are reported as new and do not fail.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mgbench.conditions import condition_label
from mgbench.errors import InputError

KEY = ["model", "dataset", "condition", "metric", "step"]
COLUMNS = [*KEY, "value", "n"]
Z = 1.96
COMPUTE_TOLERANCE = 0.01


def table_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The guarded numbers of a results frame: final top-1 of every accuracy cell and GMACs."""
    accuracy = frame[(frame["metric"] == "top1") & frame["step"].isna() & (frame["threat"] != "compute")
                     & frame["n"].notna()]
    compute = frame[(frame["threat"] == "compute") & (frame["metric"] == "gmacs")]
    rows = []
    for row in pd.concat([accuracy, compute]).to_dict("records"):
        step = None if pd.isna(row["step"]) else int(row["step"])
        rows.append({"model": row["model"], "dataset": row["dataset"], "condition": condition_label(row),
                     "metric": row["metric"], "step": -1 if step is None else step, "value": float(row["value"]),
                     "n": None if pd.isna(row["n"]) else int(row["n"])})
    table = pd.DataFrame(rows, columns=COLUMNS)
    duplicated = table.duplicated(KEY, keep=False)
    if duplicated.any():
        clash = table[duplicated].iloc[0]
        raise InputError(f"the run holds {clash['condition']} for {clash['model']} twice: guard one setting only")
    return table.sort_values(KEY).reset_index(drop=True)


def read_baseline(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"no baseline table at {path}: create it with `mgbench regress --baseline {path} --update`")
    table = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise InputError(f"{path} is not a regression baseline (lacks {', '.join(missing)}): rewrite it with --update")
    return table


def write_baseline(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)


def margin(p0: float, n0: int, p1: float, n1: int) -> float:
    """The 95% margin of a difference of two proportions."""
    return Z * math.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)


def compare(baseline: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """One row per guarded number with ``status``: ok, accuracy-drop, compute-rise, missing or new."""
    merged = baseline.merge(fresh, on=KEY, how="outer", suffixes=("_base", "_new"), indicator=True)
    out = []
    for row in merged.to_dict("records"):
        entry = {k: row[k] for k in KEY} | {"base": row.get("value_base"), "new": row.get("value_new"),
                                            "n_base": row.get("n_base"), "n_new": row.get("n_new")}
        if row["_merge"] == "left_only":
            entry |= {"delta": None, "allowed": None, "status": "missing"}
        elif row["_merge"] == "right_only":
            entry |= {"delta": None, "allowed": None, "status": "new"}
        elif row["metric"] == "gmacs":
            allowed = row["value_base"] * COMPUTE_TOLERANCE
            delta = row["value_new"] - row["value_base"]
            entry |= {"delta": delta, "allowed": allowed, "status": "compute-rise" if delta > allowed else "ok"}
        else:
            allowed = margin(row["value_base"], int(row["n_base"]), row["value_new"], int(row["n_new"]))
            delta = row["value_new"] - row["value_base"]
            entry |= {"delta": delta, "allowed": allowed, "status": "accuracy-drop" if -delta > allowed else "ok"}
        out.append(entry)
    return pd.DataFrame(out)


def failed(comparison: pd.DataFrame) -> bool:
    return bool(comparison["status"].isin(["accuracy-drop", "compute-rise", "missing"]).any())
