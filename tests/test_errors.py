"""Wrong model outputs and failures in user-supplied code: one line ``error: ...``, exit code 2,
nothing stored; ``--debug`` / ``MGBENCH_DEBUG=1`` show the traceback instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import one_line_error, write_card

from mgbench.store import Store

# Cheap models on the digits (10 classes): this file is about the checks, not the networks.
FACTORIES = '''
import torch
import torch.nn as nn

from mgbench.models.anytime import StepOutputs


class Probe(nn.Module):
    def __init__(self, classes=10, mode="ok"):
        super().__init__()
        self.linear = nn.Linear(3, classes)
        self.mode = mode

    def forward(self, x):
        z = self.linear(x.mean(dim=(2, 3)))
        if self.mode == "nan" or (self.mode == "nan_in_big_batches" and x.shape[0] > 4):
            return z * float("nan")
        if self.mode == "tuple":
            return z, z
        if self.mode == "pairs":
            return torch.stack([z, z], dim=-1)
        return z


class Anytime(Probe):
    num_steps = 3

    def forward_steps(self, x, steps=None):
        z = self.forward(x)
        logits = [z, z * float("nan"), z] if self.mode == "nan_step" else [z, z]  # "two_steps": one short
        return StepOutputs(torch.stack(logits))


def seven(): return Probe(classes=7)
def nan(): return Probe(mode="nan")
def pair(): return Probe(mode="tuple")
def pairs(): return Probe(mode="pairs")
def nan_later(): return Probe(mode="nan_in_big_batches")
def two_steps(): return Anytime(mode="two_steps")
def nan_step(): return Anytime(mode="nan_step")
def raises(): raise RuntimeError("boom in the factory")
def needs(depth): return Probe()
'''


@pytest.fixture
def factories(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


def _run(run_cli, store_path: Path, model: str, *extra: str) -> tuple[int, str, str]:
    return run_cli("run", "--suite", "clean", "--model", model, "--limit", "16", "--batch-size", "8",
                   "--workers", "0", "--store", str(store_path), *extra)


@pytest.mark.parametrize("factory,problem", [
    ("seven", "logits of shape (4, 7), not (4, 10)"),       # 7 logits on the 10-class digits
    ("nan", "40 NaN or infinite value(s) among its 40 logits"),
    ("pair", "a tuple, not a tensor of logits"),
    ("pairs", "logits of shape (4, 10, 2), not (4, 10)"),
    ("two_steps", "(forward_steps) returns logits of shape (2, 4, 10), not (3, 4, 10)"),
    ("nan_step", "(forward_steps) returns 40 NaN or infinite value(s) among its 120 logits"),
])
def test_wrong_model_outputs_are_refused_before_anything_is_stored(
    run_cli, store_path: Path, factories: Path, factory: str, problem: str
) -> None:
    code, _, err = _run(run_cli, store_path, f"{factories}:{factory}")
    one_line_error(code, err)
    assert f"model {factories}:{factory}" in err and problem in err
    assert not store_path.exists()


def test_non_finite_logits_in_a_later_batch_stop_the_cell_unstored(run_cli, store_path: Path, factories: Path) -> None:
    """The probe batch (4 images) is fine; the first evaluated batch of 8 is NaN."""
    code, _, err = _run(run_cli, store_path, f"{factories}:nan_later")
    one_line_error(code, err)
    assert f"model {factories}:nan_later returns 80 NaN or infinite value(s)" in err and "batch 1 of clean" in err
    if store_path.exists():  # the compute cell finished before; the clean cell never is stored
        with Store(store_path) as store:
            assert set(store.frame().threat) <= {"compute"}


@pytest.mark.parametrize("factory,message", [
    ("raises", "the factory raised RuntimeError: boom in the factory: fix the factory"),
    ("needs", "the factory needs the argument(s) depth"),
    ("missing", "has no callable 'missing'"),
])
def test_failing_user_factories_are_one_line(run_cli, store_path: Path, factories: Path, factory, message) -> None:
    code, _, err = _run(run_cli, store_path, f"{factories}:{factory}")
    one_line_error(code, err)
    assert message in err and str(factories) in err
    assert not store_path.exists()


def test_a_user_module_that_fails_to_import_is_one_line(run_cli, store_path: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "half_written.py").write_text("def build(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = _run(run_cli, store_path, "half_written:build")
    one_line_error(code, err)
    assert "cannot import 'half_written'" in err and "SyntaxError" in err
    assert not store_path.exists()


def test_a_user_model_that_crashes_on_the_data_is_one_line(run_cli, store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "flat.py"  # expects 8x8 images; the digits are 64x64
    path.write_text("import torch.nn as nn\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(192, 10))\n")
    code, _, err = _run(run_cli, store_path, f"{path}:build")
    one_line_error(code, err)
    assert f"model {path}:build failed on a batch of 4 images" in err and "RuntimeError" in err
    assert not store_path.exists()


def test_bad_cards_are_one_line(run_cli, store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGBENCH_ZOO", str(tmp_path))
    write_card(tmp_path, "bogus.digits", "[arguments]\nnum_classes = 10\nbogus = 3\n")
    code, _, err = _run(run_cli, store_path, "bogus.digits")
    one_line_error(code, err)
    assert "model card bogus.digits" in err and "takes no argument 'bogus'" in err and "num_classes" in err

    write_card(tmp_path, "badvalue.digits", '[arguments]\nnum_classes = "ten"\n')
    code, _, err = _run(run_cli, store_path, "badvalue.digits")
    one_line_error(code, err)
    assert "model card badvalue.digits" in err and "raised TypeError" in err

    # Not a checkpoint at all: the reason, and never torch's advice to load with weights_only=False.
    (tmp_path / "garbage.pt").write_bytes(bytes(range(7, 256)) * 8)
    write_card(tmp_path, "garbage.digits", '[checkpoint]\npath = "garbage.pt"\n')
    code, _, err = _run(run_cli, store_path, "garbage.digits")
    one_line_error(code, err)
    assert "garbage.digits" in err and "not a loadable state_dict" in err
    assert "weights_only" not in err and "Re-running" not in err
    assert not store_path.exists()


def test_debug_shows_the_traceback(run_cli, store_path: Path, factories: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli("--debug", "run", "--suite", "clean", "--model", f"{factories}:raises",
                           "--store", str(store_path))
    assert code == 2 and "Traceback (most recent call last)" in err
    assert "RuntimeError: boom in the factory" in err  # the user's own exception, with its frames
    assert "InputError" in err and not store_path.exists()

    monkeypatch.setenv("MGBENCH_DEBUG", "1")
    code, _, err = _run(run_cli, store_path, f"{factories}:seven")
    assert code == 2 and "Traceback (most recent call last)" in err and "not (4, 10)" in err

    monkeypatch.setenv("MGBENCH_DEBUG", "0")
    code, _, err = _run(run_cli, store_path, f"{factories}:seven")
    one_line_error(code, err)
