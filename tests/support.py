"""Helpers that tests of several topics share (tests/README.md, "Where the helpers live"): torch on
one thread, suite files, a synthetic store, what a refused command must leave as it was and the one
line it must print, the marker of the tests that need RobustBench, and a benchmark script loaded as
a module."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import sqlite3
import stat
import textwrap
from contextlib import closing, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
import torch

from mgbench.cellkey import CellKey
from mgbench.rows import CellRecord, MetricRow
from mgbench.store import Store


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: the tests' models and tensors are tiny, and on a shared, oversubscribed
    machine two OpenMP threads spin-waiting for each other run 5-20x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- suite files and cards

def write_suite(folder: Path, name: str, conditions: str, **top: object) -> Path:
    """``folder/NAME.toml``: a suite called ``name`` on the digits (unless ``dataset`` is given),
    with the top-level keys ``top`` (``models``, ``limit``, ...; JSON's strings, numbers and lists
    are TOML's) and the ``[[conditions]]`` tables ``conditions`` (dedented)."""
    path = folder / f"{name}.toml"
    keys = {"name": name, "dataset": "digits", **top}
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
                    + textwrap.dedent(conditions))
    return path


def clean_and_corruptions(corruptions: str, severities: str) -> str:
    """A clean table and a corruption table (``corruptions = "fog,contrast"``, ``severities = "1-2"``),
    the corruption table last, so that a caller may append keys to it."""
    return ('\n[[conditions]]\ntype = "clean"\n\n[[conditions]]\ntype = "corruption"\n'
            f'corruptions = "{corruptions}"\nseverities = "{severities}"\n')


def write_card(zoo: Path, name: str, tables: str) -> Path:
    """``zoo/NAME.toml``: a zoo card of ``resnet-tiny`` on the digits with the TOML ``tables``
    (``[arguments]``, ``[checkpoint]``)."""
    path = zoo / f"{name}.toml"
    path.write_text(f'name = "{name}"\narchitecture = "resnet-tiny"\ndataset = "digits"\n{tables}')
    return path


# ----------------------------------------------------------------------------- a synthetic store

PROVENANCE = {"config_hash": "h", "seed": 0, "versions": {"mgbench": "0", "torch": "t"}, "git_sha": "s",
              "device": "cpu", "started_at": "a", "finished_at": "b", "runtime_s": 0.0}

# model -> (clean top-1, corruption mean, pgd 4/255, autoattack 4/255, unreliable, gmacs per step)
SYNTHETIC_MODELS = {
    "alpha.digits": (0.95, 0.70, 0.20, 0.15, False, [0.064]),
    "beta.digits": (0.80, 0.60, 0.40, 0.35, True, [0.01, 0.02, 0.03]),
    "gamma.digits": (0.90, 0.50, 0.05, 0.01, False, [0.2]),
}


def synthetic_cell(store: Store, kind: str, model: str, condition: dict, rows: list[MetricRow],
                   n_finished: str = "1", subset: str = "s") -> None:
    """Write one cell of ``kind`` (a condition type, ``compute`` or ``summary``) on the digits,
    finished on 2026-01-0N."""
    key = CellKey({"type": kind, "version": 1, **condition},
                  {"dataset": "digits", "split": "test", "preprocessing": "none", "subset": subset},
                  {"model": model, "arch": model.split(".")[0], "weights": "w"}, {"precision": "fp32", "seed": 0})
    store.write_cell(CellRecord(key, "synthetic", 1_000_000, {},
                                {**PROVENANCE, "finished_at": f"2026-01-0{n_finished}"}, rows))


def synthetic_store(path: Path) -> Path:
    """The cells a leaderboard reads, for :data:`SYNTHETIC_MODELS`: compute, clean (per step for
    the anytime one), fog at two severities and its summary, PGD and AutoAttack at 4/255 with
    their worst case and verdict, and an older, smaller clean run of alpha that must lose."""
    with Store(path) as store:
        for model, (clean, corrupted, pgd, aa, unreliable, gmacs) in SYNTHETIC_MODELS.items():
            steps = [MetricRow("gmacs", g, step=t + 1) for t, g in enumerate(gmacs)] if len(gmacs) > 1 else []
            synthetic_cell(store, "compute", model, {"threat": "compute"},
                           [MetricRow("params", 1e6), MetricRow("gmacs", gmacs[-1]), *steps])
            clean_steps = ([MetricRow("top1", clean - 0.1 * (len(gmacs) - 1 - t), step=t + 1, n=1000)
                            for t in range(len(gmacs))] if len(gmacs) > 1 else [])
            synthetic_cell(store, "clean", model, {"threat": "clean"},
                           [MetricRow("top1", clean, clean - 0.02, clean + 0.02, 1000), *clean_steps])
            for severity in (1, 2):
                synthetic_cell(store, "corruption", model,
                               {"threat": "corruption", "corruption": "fog", "severity": severity, "backend": "torch"},
                               [MetricRow("top1", corrupted + (0.05 if severity == 1 else -0.05), n=1000)])
            normaliser = {"kind": "model", "model": "alpha.digits", "same_data": {"name": "digits"}}
            synthetic_cell(store, "summary", model, {"threat": "corruption", "corruption": "mean", "backend": "torch",
                                                     "corruptions": "common"},
                           [MetricRow("mean_top1", corrupted, n=2000),
                            MetricRow("mce", 1 - corrupted, detail={"normaliser": normaliser})])
            for attack, value in (("pgd", pgd), ("autoattack-standard", aa)):
                synthetic_cell(store, "attack", model,
                               {"threat": "linf", "attack": attack, "protocol": "honest", "variant": "default",
                                "norm": "linf", "eps": 4 / 255, "eps_str": "4/255"},
                               [MetricRow("top1", value, value - 0.01, value + 0.01, 1000)])
            # The attack summary's per-example worst case (here: each example broken by AutoAttack).
            synthetic_cell(store, "summary", model,
                           {"threat": "linf", "attack": "worst-case", "protocol": "honest", "variant": "default",
                            "norm": "linf", "eps": 4 / 255, "eps_str": "4/255"},
                           [MetricRow("top1", aa, aa - 0.01, aa + 0.01, 1000,
                                      detail={"attacks": ["pgd 4/255 (100 steps, 2 restarts)",
                                                          "autoattack-standard 4/255"]})])
            synthetic_cell(store, "summary", model,
                           {"threat": "linf", "attack": "verdict", "protocol": "honest", "variant": "default",
                            "norm": "linf"},
                           [MetricRow("unreliable", float(unreliable),
                                      detail={"reasons": ["square beat white-box"] if unreliable else []})])
        # A smaller, older run of one condition must lose against the full one.
        synthetic_cell(store, "clean", "alpha.digits", {"threat": "clean"}, [MetricRow("top1", 0.5, 0.4, 0.6, 100)],
                       n_finished="2", subset="first 100")
    return path


def sql_rows(store: Path, query: str, *params: object) -> list[tuple]:
    """The rows of ``query`` on a store, read with sqlite3 itself (not through mgbench)."""
    with closing(sqlite3.connect(store)) as conn:
        return conn.execute(query, params).fetchall()


# ----------------------------------------------------------------------------- refused input

def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under the roots (a root may be a file) with its content's hash, and every folder
    with its mode: what must not change when a command refuses its input (SQLite's -wal and -shm
    side files, which a read-only open may create, left out: the store is its main file)."""
    found: dict[str, str] = {}
    for root in roots:
        if root.is_file():
            found[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            found[str(root)] = oct(stat.S_IMODE(root.stat().st_mode))
            for path in sorted(p for p in root.rglob("*") if not p.name.endswith(("-wal", "-shm"))):
                found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file()
                                    else oct(stat.S_IMODE(path.stat().st_mode)))
    return found


def one_line_error(code: int, err: str, *words: str) -> None:
    """The CLI refused its input: exit code 2 and nothing on stderr but one line ``error: ...``
    naming every one of ``words``."""
    assert code == 2, err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


# ----------------------------------------------------------------------------- optional libraries

def _robustbench_installed() -> bool:
    """An installed distribution (pip's record), not just a folder named robustbench on the path."""
    try:
        return importlib.metadata.version("robustbench") == "1.1.1"
    except importlib.metadata.PackageNotFoundError:
        return False


needs_robustbench = pytest.mark.skipif(not _robustbench_installed(),
                                       reason="robustbench 1.1.1 (the [robustbench] extra) is not installed")


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_script(relative: str) -> ModuleType:
    """A script under benchmarks/ (e.g. ``perf/cost_table.py``) loaded as a module: the scripts are
    not a package, and their tests call their functions rather than a subprocess."""
    path = BENCHMARKS / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
