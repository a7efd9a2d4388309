"""The verdict's model facts (one pass over the data), counted against an independent loop, and
their round trip through the store, which lets a merge recompute a verdict without the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from mgbench.attacks.checks import ModelFacts
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.verdict import SUMMARY_VERSION, model_facts, stored_facts, tables_from_summaries
from mgbench.cellkey import summary_key
from mgbench.conditions import LiveModel, SummaryContext
from mgbench.data import DataSpec, open_dataset
from mgbench.models import LoadedModel
from mgbench.provenance import now_iso
from mgbench.runner import cell_provenance
from mgbench.store import CellRecord, MetricRow, Store

pytestmark = pytest.mark.usefixtures("one_thread")
N, BATCH = 40, 16  # three batches, the last one short


class Linear(nn.Module):
    """A fixed random linear classifier on 64x64 images; ``gate`` zeroes the input (and so the
    input gradient) of the images whose mean brightness is below it."""

    def __init__(self, gate: float = 0.0, softmax: bool = False, dropout: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 64 * 64, 10)
        self.gate, self.softmax, self.dropout = gate, softmax, nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (x.flatten(1).mean(dim=1) >= self.gate).float().view(-1, 1, 1, 1)
        out = self.fc(self.dropout(x * keep).flatten(1))
        return out.softmax(dim=1) if self.softmax else out


def _live(model: nn.Module) -> LiveModel:
    spec = DataSpec("digits", limit=N)
    return LiveModel(LoadedModel(model, "linear", "linear", "w"), spec, open_dataset(spec), torch.device("cpu"),
                     BATCH)


def _images() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The same images, labels and dataset indices, read without the loader."""
    opened = open_dataset(DataSpec("digits", limit=N))
    items = [opened.dataset[i] for i in range(N)]
    images = torch.stack([torch.as_tensor(item[0]) for item in items]).float() / 255
    return images, torch.tensor([int(item[1]) for item in items]), np.array([int(item[2]) for item in items])


def test_facts_of_a_healthy_model_match_an_independent_count() -> None:
    model = Linear().eval()
    facts = model_facts(_live(model))
    images, labels, ids = _images()
    with torch.no_grad():
        correct = (model(images).argmax(dim=1) == labels).numpy()
    assert (facts.n, facts.num_classes, facts.zero_grad) == (N, 10, 0)
    assert not facts.probabilities and not facts.randomised
    assert facts.clean.n == N and facts.clean.n_correct == int(correct.sum())
    expected = ExampleSet.from_ids(ids, correct)
    assert np.array_equal(facts.clean.resized(expected.members.size).correct, expected.correct)


def test_zero_gradients_are_counted_per_example() -> None:
    images, _, _ = _images()
    gate = float(images.flatten(1).mean(dim=1).median())
    dark = int((images.flatten(1).mean(dim=1) < gate).sum())
    assert 0 < dark < N
    assert model_facts(_live(Linear(gate=gate).eval())).zero_grad == dark


def test_probability_outputs_and_randomness_are_seen() -> None:
    assert model_facts(_live(Linear(softmax=True).eval())).probabilities
    randomised = model_facts(_live(Linear(dropout=0.5).train()))
    assert randomised.randomised and not randomised.probabilities


def test_facts_round_trip_through_a_stored_verdict(tmp_path) -> None:
    facts = ModelFacts(True, False, ExampleSet.from_ids(np.array([3, 5, 9]), np.array([True, False, True])), 2, 3,
                       10)
    again = ModelFacts.from_detail(facts.to_detail())
    assert (again.probabilities, again.randomised, again.zero_grad, again.n, again.num_classes) == (True, False, 2,
                                                                                                     3, 10)
    assert np.array_equal(again.clean.members, facts.clean.members)
    assert np.array_equal(again.clean.correct, facts.clean.correct)

    model, data, options = {"model": "m", "arch": "a", "weights": "w"}, {"dataset": "digits", "n_images": 3}, {}
    with Store(tmp_path / "s.sqlite") as store:
        ctx = SummaryContext(store.frame(), [], model, data, store, options)
        assert stored_facts(ctx) is None  # no verdict stored
        key = summary_key("attack", SUMMARY_VERSION, {"threat": "linf", "attack": "verdict", "norm": "linf"}, model,
                          data, options)
        row = MetricRow("unreliable", 0.0, n=3, detail={"verdict": "reliable", "facts": facts.to_detail()})
        provenance = cell_provenance({}, 0, torch.device("cpu"), now_iso(), 0.0)
        store.write_cell(CellRecord(key, "test", None, {}, provenance, [row]))
        found = stored_facts(ctx)
        other = SummaryContext(store.frame(), [], {**model, "weights": "v"}, data, store, options)
        assert stored_facts(other) is None  # another model's verdict is not this one's
    assert found is not None and found.to_detail() == facts.to_detail()


def test_tables_from_summaries_say_whether_the_checks_ran() -> None:
    worst = {"type": "summary", "of": "attack", "attack": "worst-case", "eps": 4 / 255}
    assert tables_from_summaries([worst]) == [{"type": "attack", "checks": False}]
    assert tables_from_summaries([worst, {**worst, "attack": "verdict"}]) == [{"type": "attack", "checks": True}]
