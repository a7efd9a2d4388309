"""Every registered architecture: no dead parameters, no counted compute that cannot reach the output.

A parameter that is meant to learn must get a gradient from the model's training loss (its
``training_loss`` when it has one, else cross-entropy; MGNet's auxiliary ``glimpse_fc`` learns
only through it). The check runs after one optimiser step (Adam's first), so that
zero-initialised gammas (timm's ``zero_init_last_bn``) have moved off zero, and in float64, so
that a term the softmax removes exactly (gradient 0 up to rounding, ~1e-7 in float32) is told
apart from a small live gradient: dead means ``max |grad| <= 1e-9 x`` the largest gradient of
the model. A branch that is dead for the whole training (not only at initialisation) fails it,
and so does a parameter behind a saturated softmax or sigmoid.

Compute: fvcore counts the forward pass. Every leaf module that fvcore counts must have its
output reach the model's outputs (all steps' logits for anytime models): a module call whose
output gets no gradient from the outputs is compute that cannot influence them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from liveness import batch, dead_module_calls, dead_parameters, fvcore_by_module

from mgbench.models import create_model, get_entry, list_architectures

pytestmark = pytest.mark.usefixtures("one_thread")
SLOW = {name for name in list_architectures() if get_entry(name).defaults["input_size"] == 224}  # CPU time


def _architectures() -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in list_architectures()]


def _model(name: str) -> tuple[nn.Module, int]:
    size = get_entry(name).defaults["input_size"]
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).double()
    return model, size


@pytest.mark.parametrize("name", _architectures())
def test_every_parameter_learns_and_every_counted_module_reaches_the_output(name: str) -> None:
    model, size = _model(name)
    x, y = batch(size)
    assert dead_parameters(model, x, y) == []
    dead_calls = dead_module_calls(model, x.detach().clone())
    counted = fvcore_by_module(model, size)
    wasted = {module: counted.get(module, 0) * n / calls for module, (n, calls) in dead_calls.items()}
    assert {module: macs for module, macs in wasted.items() if macs > 0} == {}


class _DeadBranch(nn.Module):
    """A classifier with a branch whose output is computed and discarded (and a constant added
    before a softmax): both must be caught."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3)
        self.unused = nn.Conv2d(3, 4, 3)
        self.shift = nn.Linear(4, 1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x).flatten(2)  # [B, 4, N]
        self.unused(x)
        scores = features.sum(1) + self.shift(features.mean(2))  # the shift is the same at every position
        pooled = torch.einsum("bn,bcn->bc", scores.softmax(1), features)
        return self.fc(pooled)


def test_the_checks_catch_a_dead_branch_and_a_constant_under_softmax() -> None:
    torch.manual_seed(0)
    model = _DeadBranch().double()
    x, y = batch(64)
    assert sorted(dead_parameters(model, x, y)) == ["shift.bias", "shift.weight", "unused.bias", "unused.weight"]
    dead_calls = dead_module_calls(model, x.detach().clone())
    assert dead_calls == {"unused": (1, 1), "shift": (1, 1)}
    counted = fvcore_by_module(model, 64)
    # fvcore's trace drops an output nobody reads, but counts the term that the softmax removes
    assert counted.get("unused", 0) == 0 and counted["shift"] > 0
