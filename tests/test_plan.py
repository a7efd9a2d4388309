"""A run's plan: cells to compute and cells stored (counted independently here from the suite's
tables), the timed probe of every pending cell, and --plan writing nothing."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from support import benchmark_script, sql_rows, write_suite

from mgbench.attacks.eps import parse_eps_list
from mgbench.attacks.spec import make_spec
from mgbench.attacks.variants import parse_variant
from mgbench.data import DataSpec
from mgbench.plan import cell_type, make_plan, stored_seconds_per_image
from mgbench.runner import RunOptions, prepare

pytestmark = pytest.mark.usefixtures("one_thread")
MODELS = "resnet-tiny.digits.s0,mgnet-tiny.digits.s0"


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    # clean: 1 cell per model; FGSM at two eps: 2 per model, plus the rescaler-off run on MGNet (2):
    # 2 x 1 + 2 x 2 + 2 = 8 cells.
    return write_suite(tmp_path, "tiny", '[[conditions]]\ntype = "clean"\n[[conditions]]\ntype = "attack"\n'
                       'attack = "fgsm"\neps = ["2/255", "8/255"]\nchecks = false\n', description="plan test", limit=12)


def _plan_line(out: str) -> tuple[int, int]:
    found = re.search(r"plan: (\d+) cell\(s\) to compute, (\d+) already in", out)
    assert found, out
    return int(found[1]), int(found[2])


def test_plan_counts_estimates_and_writes_nothing(run_cli, suite_file: Path, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    code, out, err = run_cli("run", "--suite", str(suite_file), "--model", MODELS, "--store", str(store),
                             "--plan", "--plan-images", "4", "-q")
    assert code == 0, err
    assert _plan_line(out) == (8, 0)
    assert "estimated" in out and "load average" in out and "from probes of 4 image(s) per cell" in out
    assert "fgsm linf rescaler-off" in out  # the cell types, one row per model and type
    assert not store.exists()  # the plan reads the store only
    code, out, err = run_cli("run", "--suite", str(suite_file), "--model", MODELS, "--store", str(store), "-q")
    assert code == 0, err
    assert _plan_line(out) == (8, 0) and "8 cell(s) computed" not in out  # compute cells are extra
    assert "estimated" not in out  # counts only without --plan
    code, out, err = run_cli("run", "--suite", str(suite_file), "--model", MODELS, "--store", str(store), "--plan",
                             "-q")
    assert code == 0, err
    assert _plan_line(out) == (0, 8)
    code, out, err = run_cli("run", "--suite", str(suite_file), "--model", MODELS, "--store", str(store), "--plan",
                             "--force", "-q")
    assert code == 0 and _plan_line(out) == (8, 0)  # --force recomputes every cell


def test_every_pending_cell_is_probed_and_scaled_to_its_images(suite_file: Path, tmp_path: Path) -> None:
    from mgbench.suites import load_suite

    prepared = prepare(load_suite(str(suite_file)), models=MODELS.split(","), data=DataSpec("digits", limit=12),
                       options=RunOptions(device="cpu", batch_size=4))
    plan = make_plan(prepared, tmp_path / "absent.sqlite", probe_images=3)
    assert len(plan.cells) == 8 and len(plan.pending) == 8
    assert all(c.images == 12 and c.probe_images == 3 and c.seconds is not None and c.seconds > 0
               for c in plan.pending)
    assert plan.seconds == pytest.approx(sum(c.seconds for c in plan.pending))
    rows = {(r["model"], r["cell type"]): r for r in plan.by_type()}
    assert rows[("mgnet-tiny.digits.s0", "fgsm linf rescaler-off")]["to compute"] == 2
    assert rows[("resnet-tiny.digits.s0", "clean")]["to compute"] == 1
    assert ("resnet-tiny.digits.s0", "fgsm linf rescaler-off") not in rows  # no rescaler, no such cell
    counts = make_plan(prepared, tmp_path / "absent.sqlite", probe_images=0)
    assert all(c.seconds is None for c in counts.cells)  # counts only: nothing was run


def test_cell_types_drop_eps_severity_and_glimpse() -> None:
    spec = make_spec("pgd", "linf", parse_eps_list("4/255")[0], variants=parse_variant("glimpse=2+rescaler-off"))
    assert cell_type({**spec.key(), "type": "attack"}) == "pgd linf 100x2 glimpse=*+rescaler-off"
    chance = make_spec("pgd", "linf", parse_eps_list("1/2")[0], steps=20, restarts=1, random_start=False)
    assert cell_type({**chance.key(), "type": "attack"}) == "pgd linf 20x1"  # the probe: another cost
    fog = {"type": "corruption", "threat": "corruption", "corruption": "fog", "severity": 3}
    assert cell_type(fog) == "corruption"


def _set_timing(store: Path, **detail: float) -> None:
    """Overwrite every stored attack cell's timing detail (the runner's images_per_s row)."""
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT rowid, detail FROM results WHERE metric = 'images_per_s' AND attack IS NOT NULL")
        for rowid, text in rows.fetchall():
            conn.execute("UPDATE results SET detail = ? WHERE rowid = ?",
                         (json.dumps({**json.loads(text), **detail}), rowid))


def test_attack_cells_are_estimated_from_stored_timings_taken_alone(run_cli, tmp_path: Path) -> None:
    # FGSM at 8/255 on resnet-tiny is stored; FGSM at 2/255 (same cell type, same architecture) is
    # estimated from it, and only while its timing says it had its cores to itself.
    suite = write_suite(tmp_path, "one", '[[conditions]]\ntype = "attack"\nattack = "fgsm"\neps = "8/255"\n'
                        'checks = false\n', description="plan test", limit=12)
    store = tmp_path / "r.sqlite"
    model = "resnet-tiny.digits.s0"
    assert run_cli("run", "--suite", str(suite), "--model", model, "--store", str(store), "--batch-size", "4",
                   "-q")[0] == 0
    [(text,)] = sql_rows(store, "SELECT detail FROM results WHERE metric = 'images_per_s'")
    recorded = json.loads(text)
    assert recorded["threads"] == 1 and recorded["batch_size"] == 4 and recorded["models_sharing_the_pass"] == 1
    assert 0 < recorded["cpu_share"] <= 1.5 and {"load_before", "load_after"} <= set(recorded)
    from mgbench.suites import load_suite

    suite.write_text(suite.read_text().replace("8/255", "2/255"))
    prepared = prepare(load_suite(str(suite)), models=[model], data=DataSpec("digits", limit=30),
                       options=RunOptions(device="cpu", batch_size=4))
    _set_timing(store, cpu_share=0.97, seconds=6.0)  # 6 s for 12 images, taken alone: 0.5 s/image
    (cell,) = make_plan(prepared, store, probe_images=2).pending
    assert (cell.timed_cells, cell.probe_images) == (1, 0) and cell.seconds == pytest.approx(0.5 * 30)
    _set_timing(store, cpu_share=0.5)  # shared its cores: not a timing of the cell, so it is probed
    (cell,) = make_plan(prepared, store, probe_images=2).pending
    assert (cell.timed_cells, cell.probe_images) == (0, 2) and cell.seconds != pytest.approx(0.5 * 30)
    _set_timing(store, cpu_share=0.97)
    other = prepare(load_suite(str(suite)), models=[model], data=DataSpec("digits", limit=30),
                    options=RunOptions(device="cpu", batch_size=8))
    plan = make_plan(other, store, probe_images=2)
    (cell,) = plan.pending  # no cell at batch 8: the nearest batch size's stand in, and the plan says so
    assert (cell.timed_cells, cell.timed_batch, cell.probe_images) == (1, 4, 0)
    assert cell.seconds == pytest.approx(0.5 * 30)
    assert [row["from"] for row in plan.by_type()] == ["1 stored at batch 4"]
    assert [row["from"] for row in make_plan(prepared, store, probe_images=2).by_type()] == ["1 stored"]


def test_stored_timings_at_the_run_batch_size_come_first_then_the_nearest() -> None:
    common = {"arch": "resnet-tiny", "device": "cpu:x86_64x1", "threads": 1, "cpu_share": 0.95,
              "models_sharing_the_pass": 1, "condition": {"type": "attack", "attack": "pgd", "norm": "linf"}}
    timings = [{**common, "batch_size": 256, "images": 100, "seconds": 60.0},
               {**common, "batch_size": 256, "images": 100, "seconds": 40.0},
               {**common, "batch_size": 32, "images": 100, "seconds": 30.0},
               {**common, "batch_size": 64, "images": 100, "seconds": 900.0, "cpu_share": 0.5}]  # contended
    known = stored_seconds_per_image(timings, "cpu:x86_64x1", 1, 64)
    assert known == {("resnet-tiny", "pgd linf"): (0.3, 1, 32)}  # 32 is nearer 64 than 256 is
    assert stored_seconds_per_image(timings, "cpu:x86_64x1", 1, 256)[("resnet-tiny", "pgd linf")] == (0.5, 2, 256)
    assert stored_seconds_per_image(timings, "cpu:x86_64x1", 1, 128)[("resnet-tiny", "pgd linf")][2] == 256
    assert stored_seconds_per_image(timings, "cpu:x86_64x1", 2, 64) == {}  # other thread counts stand in for nothing
    timings.append({**common, "batch_size": 64, "images": 100, "seconds": 20.0})
    assert stored_seconds_per_image(timings, "cpu:x86_64x1", 1, 64)[("resnet-tiny", "pgd linf")] == (0.2, 1, 64)


def test_the_cost_table_reads_only_timings_taken_alone() -> None:
    script = benchmark_script("perf/cost_table.py")
    attack = {"type": "attack", "attack": "pgd", "norm": "linf", "eps_str": "4/255", "variant": "default"}
    common = {"arch": "resnet-tiny", "device": "cpu:x86_64x1", "threads": 1, "batch_size": 256,
              "models_sharing_the_pass": 1, "load_before": 1.0, "load_after": 1.1}
    timings = [{**common, "condition": attack, "images": 100, "seconds": 50.0, "cpu_share": 0.98},
               {**common, "condition": {**attack, "eps_str": "8/255"}, "images": 200, "seconds": 300.0,
                "cpu_share": 0.95, "load_before": 2.0},
               {**common, "condition": attack, "images": 100, "seconds": 900.0, "cpu_share": 0.4},  # contended
               {**common, "condition": {"type": "clean"}, "images": 100, "seconds": 1.0}]  # no share recorded
    rows, left_out = script.cost_rows(timings)
    assert left_out == 2
    (row,) = rows
    assert row[:7] == ("resnet-tiny", "pgd linf", "cpu:x86_64x1", 1, 256, 2, 300)
    assert row[7:] == ("1", "0.5-1.5", "0.95", "1.00-2.00", "1.10-1.10")
