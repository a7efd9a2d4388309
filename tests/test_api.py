"""The top-level API (mgbench.create_model / list_models / evaluate) and the README's example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mgbench

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_names_resolve_to_the_library() -> None:
    from mgbench.models import list_architectures, list_cards

    names = mgbench.list_models()
    assert set(list_cards()) <= set(names) and set(list_architectures()) <= set(names)
    seeds = [f"mgnet-tiny.digits.s{seed}" for seed in range(3)]
    assert mgbench.list_models("mgnet-tiny*") == ["mgnet-tiny", *seeds]
    assert mgbench.list_models(architectures=False) == sorted(list_cards())
    with pytest.raises(AttributeError):
        mgbench.no_such_name  # noqa: B018


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The README's Python block, run as written on a smaller subset, in a scratch folder."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README holds one Python example"
    code = blocks[0]
    assert "limit=200" in code
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    exec(compile(code.replace("limit=200", "limit=12"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "mgnet-tiny.digits.s0" in printed and "resnet-tiny.digits.s0" in printed
    from mgbench.store import Store

    with Store(tmp_path / "results" / "example.sqlite") as store:
        frame = store.frame(metric="top1")
    final = frame[frame["step"].isna()]
    assert sorted(final["model"]) == ["mgnet-tiny.digits.s0", "resnet-tiny.digits.s0"]
    assert (final["n"] == 12).all()


def test_the_steps_of_evaluate_are_public(tmp_path: Path) -> None:
    """prepare (no store touched), plan, run: what `mgbench run` calls, and what evaluate is made of."""
    from mgbench import api

    store = tmp_path / "steps.sqlite"
    prepared = api.prepare("clean", "resnet-tiny.digits.s0", limit=8, options=api.RunOptions(device="cpu"))
    assert not store.exists()
    plan = api.plan(prepared, store)
    assert len(plan.pending) == len(plan.cells) == 1 and not store.exists()
    outcomes = api.run(prepared, store)
    assert [o.computed for o in outcomes] == [True, True]  # the compute cell and the clean cell
    rows = mgbench.evaluate("clean", "resnet-tiny.digits.s0", limit=8, store=store,
                            options=api.RunOptions(device="cpu"))
    assert set(rows["cell_key"]) == {o.cell_key for o in outcomes}
    assert len(api.plan(prepared, store).pending) == 0
