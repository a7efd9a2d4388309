"""Console tables: readable at 80 columns, grouped by model, subset and n visible, filters narrow."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from support import SYNTHETIC_MODELS, synthetic_cell, synthetic_store

from mgbench.report.tables import grouped_tables
from mgbench.rows import MetricRow
from mgbench.store import Store


def _store(tmp_path: Path) -> Path:
    path = synthetic_store(tmp_path / "s.sqlite")
    with Store(path) as store:  # a long variant label and a second subset of the same condition
        synthetic_cell(store, "attack", "gamma.digits",
              {"threat": "linf", "attack": "pgd", "protocol": "honest", "variant": "all-glimpses+rescaler-off",
               "norm": "linf", "eps": 4 / 255, "eps_str": "4/255"},
              [MetricRow("top1", 0.321, 0.301, 0.342, 500), *[MetricRow("top1", 0.3 + t / 100, step=t + 1, n=500)
                                                              for t in range(4)]])
    return path


def _render(tables: list, width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    for table in tables:
        console.print(table)
    return console.file.getvalue()


def test_tables_fit_80_columns_without_cutting_anything(tmp_path: Path) -> None:
    with Store(_store(tmp_path)) as store:
        frame = store.frame()
    text = _render(grouped_tables(frame))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    for model in SYNTHETIC_MODELS:  # one accuracy table per model, its name whole in the title
        assert sum(line.startswith(f"accuracy, {model}, digits") for line in lines) == 1
    gamma = text[text.index("accuracy, gamma.digits"):]
    assert "32.1" in gamma and "30.1-34.2" in gamma and " 500 " in gamma  # n of the variant cell
    assert "rescaler" in gamma and "31.0 32.0" in gamma  # wrapped, not cut
    clean = [line for line in lines if line.startswith(" clean ")]
    assert len(clean) == 4  # alpha's two clean cells (n 1000 and 100) differ in n on the page
    assert "verdicts" in text and "unreliable" in text and "reliable" in text


def test_results_show_filters_narrow_it(run_cli, tmp_path: Path) -> None:
    store = _store(tmp_path)
    code, out, err = run_cli("results", "show", "--store", str(store), "--model", "gamma.digits", "--attack", "pgd")
    assert code == 0, err
    assert "accuracy, gamma.digits, digits" in out and "alpha.digits" not in out
    assert "pgd linf 4/255" in out and "autoattack" not in out and out.strip().endswith("2 cells, 6 rows")
    code, out, _ = run_cli("results", "show", "--store", str(store), "--subset", "s", "--threat", "clean")
    assert code == 0 and out.strip().endswith("3 cells, 6 rows")  # alpha's smaller run is on subset "first 100"
    code, out, _ = run_cli("results", "show", "--store", str(store), "--subset", "fir", "--threat", "clean")
    assert code == 0 and "50.0" in out and out.strip().endswith("1 cells, 1 rows")
