"""A run's plan: cells to compute and cells stored (counted independently here from the suite's
tables), the timed probe of every pending cell, and --plan writing nothing."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from attack_support import one_thread  # noqa: F401

from mgbench.attacks.eps import parse_eps_list
from mgbench.attacks.spec import make_spec
from mgbench.attacks.variants import parse_variant
from mgbench.data import DataSpec
from mgbench.plan import cell_type, make_plan
from mgbench.runner import RunOptions, prepare

pytestmark = pytest.mark.usefixtures("one_thread")
MODELS = "resnet-tiny.digits.s0,mgnet-tiny.digits.s0"


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    # clean: 1 cell per model; FGSM at two eps: 2 per model, plus the rescaler-off run on MGNet (2):
    # 2 x 1 + 2 x 2 + 2 = 8 cells.
    path = tmp_path / "tiny.toml"
    path.write_text('name = "tiny"\ndescription = "plan test"\ndataset = "digits"\nlimit = 12\n'
                    '[[conditions]]\ntype = "clean"\n'
                    '[[conditions]]\ntype = "attack"\nattack = "fgsm"\neps = ["2/255", "8/255"]\nchecks = false\n')
    return path


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
    assert cell_type(SimpleNamespace(key=spec.key(), condition_type="attack")) == "pgd linf glimpse=*+rescaler-off"
    fog = {"threat": "corruption", "corruption": "fog", "severity": 3}
    assert cell_type(SimpleNamespace(key=fog, condition_type="corruption")) == "corruption"
