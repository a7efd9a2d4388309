"""The verdict's model facts (one pass over the data), counted against an independent loop, and
their round trip through the store, which lets a merge recompute a verdict without the model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from mgbench.attacks.checks import ModelFacts, StoredAttack
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.verdict import (
    SUMMARY_VERSION,
    _checks_enabled,
    _worst_case_summaries,
    covered,
    model_facts,
    read_attacks,
    stored_facts,
    tables_from_summaries,
)
from mgbench.cellkey import summary_key
from mgbench.conditions import LiveModel, SummaryContext
from mgbench.data import DataSpec, open_dataset
from mgbench.data.spec import OpenedData
from mgbench.metrics import binomial_ci
from mgbench.models import LoadedModel
from mgbench.provenance import now_iso
from mgbench.rows import CellRecord, MetricRow
from mgbench.runner import cell_provenance
from mgbench.store import Store

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


class Constant(nn.Module):
    """Outputs fixed values for every image (plus ``jitter`` with the sign alternating per call:
    two passes over one batch differ by exactly 2 * jitter)."""

    def __init__(self, values: list[float], jitter: float = 0.0):
        super().__init__()
        self.values, self.jitter, self.calls = torch.tensor(values), jitter, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.values + self.jitter * (-1) ** self.calls
        return out.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


@pytest.mark.parametrize("values, probabilities", [
    ([0.1] * 10, True),
    (torch.softmax(torch.tensor([30.0] + [0.0] * 9), 0).tolist(), True),  # 1.0 and 9e-14: still probabilities
    ([0.15] * 10, False),  # in [0, 1] but summing to 1.5 (sigmoid-like)
    ([0.6, 0.6, -0.2] + [0.0] * 7, False),  # sums to 1 but negative
    ([1 + 5e-5] + [-5e-6] * 9, False),  # sums to 1 within 1e-4, min above -1e-5, but max above 1 + 1e-5
])
def test_probability_outputs_by_their_range_and_sums(values: list[float], probabilities: bool) -> None:
    assert model_facts(_live(Constant(values))).probabilities is probabilities


@pytest.mark.parametrize("jitter, randomised", [
    (0.0, False),
    (2.5e-4, False),    # two passes differ by 5e-4 < 1e-4 x (1 + max |logit| = 10): float noise, not randomness
    (5.25e-4, True),    # 1.05e-3 > 1e-4 x (1 + 9.000525)
])
def test_randomness_is_judged_relative_to_the_logits_scale(jitter: float, randomised: bool) -> None:
    assert model_facts(_live(Constant([9.0] + [0.0] * 9, jitter))).randomised is randomised


def test_stored_facts_come_from_this_model_data_and_options_verdict_only(tmp_path) -> None:
    mine = ModelFacts(False, False, ExampleSet.from_ids(np.array([1, 2]), np.array([True, True])), 0, 2, 10)
    other = ModelFacts(True, True, ExampleSet.from_ids(np.array([1, 2]), np.array([False, False])), 2, 2, 10)
    model, data, options = {"model": "m", "arch": "a", "weights": "w"}, {"dataset": "digits", "n_images": 2}, {}
    provenance = cell_provenance({}, 0, torch.device("cpu"), now_iso(), 0.0)

    def write(store: Store, key: dict, data: dict, options: dict, facts: ModelFacts) -> None:
        row = MetricRow("unreliable" if key["attack"] == "verdict" else "top1", 0.0, n=2,
                        detail={"facts": facts.to_detail()})
        full = summary_key("attack", SUMMARY_VERSION, {"threat": "linf", "norm": "linf", **key}, model, data, options)
        store.write_cell(CellRecord(full, "test", None, {}, provenance, [row]))

    with Store(tmp_path / "s.sqlite") as store:
        # decoys written first: another attack row with facts, the verdicts of other data and other options
        write(store, {"attack": "worst-case", "eps": 0.1}, data, options, other)
        write(store, {"attack": "verdict"}, {**data, "n_images": 3}, options, other)
        write(store, {"attack": "verdict"}, data, {"precision": "bf16"}, other)
        write(store, {"attack": "verdict"}, data, options, mine)
        found = stored_facts(SummaryContext(store.frame(), [], model, data, store, options))
    assert found is not None and found.to_detail() == mine.to_detail()


def _cell(key: str, rows: list[tuple[str, object]], attack: str = "pgd") -> list[dict]:
    """Rows of one stored attack cell, as a summary's frame holds them."""
    common = {"cell_key": key, "threat": "linf", "attack": attack, "protocol": "honest", "variant": "default",
              "norm": "linf", "eps": 4 / 255, "eps_str": "4/255", "steps": 10, "step_size": 1 / 255,
              "restarts": 1, "random_start": True, "step": None}
    return [{**common, "metric": metric, "detail": detail if isinstance(detail, str) else json.dumps(detail)}
            for metric, detail in rows]


def test_read_attacks_keeps_every_cell_steps_and_warnings() -> None:
    ids = np.array([0, 1, 2])
    final = ExampleSet.from_ids(ids, np.array([True, False, True]))
    steps = [ExampleSet.from_ids(ids, np.array([True, True, True])), final]
    frame = pd.DataFrame(
        _cell("old", [("top1", None)])  # stored before per-example results: skipped, not the end
        + _cell("anytime", [("top1", None), ("per_example", {**final.to_detail(), "steps": [s.to_detail()
                                                                                            for s in steps]})])
        + _cell("broken", [("per_example", "{not json")])
        + _cell("aa", [("per_example", final.to_detail()), ("autoattack_checks", {"warnings": {"flag": 2}})],
                attack="autoattack")
        + [{"cell_key": "clean", "threat": "clean", "attack": None, "metric": "top1", "step": None, "detail": None}])
    read = read_attacks(frame)
    assert [c.attack for c in read] == ["pgd", "pgd", "autoattack"]  # the frame's order, not the keys' ("aa" first)
    cells = {c.attack + ("-broken" if c.examples is None else ""): c for c in read}
    assert sorted(cells) == ["autoattack", "pgd", "pgd-broken"]
    anytime = cells["pgd"]
    assert [s.correct.tolist() for s in anytime.step_examples] == [s.correct.tolist() for s in steps]
    assert anytime.examples is not None and anytime.examples.n_correct == 2
    assert cells["pgd-broken"].step_examples == []
    assert cells["autoattack"].warnings == {"flag": 2} and anytime.warnings == {}


def test_read_attacks_reads_each_setting() -> None:
    examples = ExampleSet.from_ids(np.array([0, 1]), np.array([True, False])).to_detail()
    paper = _cell("paper", [("per_example", examples)])
    for row in paper:
        row.update(protocol="mgnet-paper", step_size=0.5 / 255)
    legacy = _cell("legacy", [("per_example", examples), ("autoattack_checks", {})], attack="autoattack")
    for row in legacy:
        row.update(protocol=None, variant=None, steps=None, restarts=None, random_start=None, step_size=float("nan"),
                   threat="l2", norm=None)
    cells = {c.attack: c for c in read_attacks(pd.DataFrame(paper + legacy))}
    assert cells["pgd"].protocol == "mgnet-paper" and cells["pgd"].step_size == pytest.approx(0.5 / 255)
    assert (cells["pgd"].steps, cells["pgd"].restarts, cells["pgd"].random_start) == (10, 1, True)
    old = cells["autoattack"]  # written before these columns existed: the defaults
    assert (old.protocol, old.variant, old.norm, old.steps, old.restarts, old.random_start, old.step_size) == (
        "honest", "default", "l2", None, None, None, None)
    assert old.warnings == {}  # AutoAttack's checks stored without warnings


def test_worst_case_of_overlapping_subsets_covers_the_largest_and_excludes_the_other() -> None:
    """Neither attack evaluated every example the other did: the worst case is over the attack
    with the most examples, and the other is listed as excluded (never mixed in)."""
    a = ExampleSet.from_ids(np.arange(0, 10), np.zeros(10, dtype=bool))  # breaks all of 0-9
    b = ExampleSet.from_ids(np.arange(5, 20), np.ones(15, dtype=bool))  # breaks none of 5-19
    worst, labels, excluded = covered([("a", a), ("b", b)])
    assert (labels, excluded) == (["b"], ["a"])
    assert (worst.n, worst.n_correct) == (15, 15)


def test_checks_run_unless_a_table_switches_them_off() -> None:
    assert _checks_enabled([]) is True
    assert _checks_enabled([{"type": "attack"}]) is True
    assert _checks_enabled([{"checks": False}, {"checks": False}]) is False
    assert _checks_enabled([{"checks": False}, {"checks": True}]) is True


class _Unreadable(torch.utils.data.Dataset):
    """Six digits images of which the first ``broken`` cannot be read (``None``, as with
    ``--on-bad-image skip``)."""

    def __init__(self, broken: int):
        self.images, self.broken = open_dataset(DataSpec("digits", limit=6)).dataset, broken

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        return None if index < self.broken else self.images[index]


def test_a_batch_of_only_unreadable_images_is_skipped_not_the_end() -> None:
    """With batches of two, the first batch holds only unreadable images: the facts cover the
    four readable ones after it (the third to the sixth item), not none."""
    spec = DataSpec("digits", limit=6)
    dataset = _Unreadable(broken=2)
    opened = OpenedData(dataset, 6, "h", "none", "test")
    facts = model_facts(LiveModel(LoadedModel(Linear().eval(), "linear", "linear", "w"), spec, opened,
                                  torch.device("cpu"), 2))
    assert facts.n == 4 and facts.clean.n == 4
    readable = sorted(int(dataset.images[i][2]) for i in range(2, 6))
    assert np.flatnonzero(facts.clean.members).tolist() == readable


def _stored(eps_str: str, examples: ExampleSet | None, steps: list[ExampleSet] | None = None, attack: str = "pgd",
            random_start: bool = True, variant: str = "default") -> StoredAttack:
    numerator, denominator = eps_str.split("/")
    return StoredAttack(attack, "honest", variant, "linf", int(numerator) / int(denominator), eps_str, 10, 0.01, 1,
                        random_start, examples, step_examples=steps or [])


def _set(correct: list[bool]) -> ExampleSet:
    return ExampleSet.from_ids(np.arange(len(correct)), np.array(correct, dtype=bool))


def test_worst_case_summaries_row_by_row() -> None:
    """Each eps in order: 1/255 has no per-example results (skipped, not the end), 2/255 has an
    empty example set (skipped), 3/255 one example of two steps (kept), 4/255 two anytime PGDs of three steps
    each beside the chance-level probe (never part of a worst case). Expected rows by hand."""
    pgd_a = _stored("4/255", _set([True, True, False, True]),
                    [_set([True, False, True, True]), _set([True, True, True, True]), _set([True, True, False, True])])
    pgd_b = _stored("4/255", _set([False, True, True, True]), [_set([True, True, True, False]),
                                                                 _set([False, True, True, True]),
                                                                 _set([False, True, True, True])], attack="pgd-margin")
    chance = _stored("128/255", _set([False] * 4), random_start=False)
    single = _stored("3/255", _set([True]), [_set([True]), _set([False])])  # one example, two steps
    cells = [_stored("1/255", None), _stored("2/255", _set([])), single, pgd_a, pgd_b, chance]
    summaries = _worst_case_summaries("linf", cells)
    assert [s.key for s in summaries] == [
        {"threat": "linf", "attack": "worst-case", "protocol": "honest", "variant": "default", "norm": "linf",
         "eps": eps, "eps_str": eps_str} for eps, eps_str in ((3 / 255, "3/255"), (4 / 255, "4/255"))]
    one, four = summaries[0].rows, summaries[1].rows
    note = ("per-example worst case over the listed attacks, on the examples every one of them evaluated; "
            "excluded attacks evaluated fewer examples")
    assert one == [MetricRow("top1", 1.0, *binomial_ci(1, 1), 1, detail={
        "attacks": ["pgd 3/255 (10 steps, 1 restart)"], "excluded": [], "examples": _set([True]).to_detail(),
        "note": note}), MetricRow("top1", 1.0, *binomial_ci(1, 1), 1, step=1),
        MetricRow("top1", 0.0, *binomial_ci(0, 1), 1, step=2)]
    worst = _set([False, True, False, True])  # correct under both PGDs
    labels = ["pgd 4/255 (10 steps, 1 restart)", "pgd-margin 4/255 (10 steps, 1 restart)"]
    assert four[0] == MetricRow("top1", 0.5, *binomial_ci(2, 4), 4, detail={
        "attacks": labels, "excluded": [], "examples": worst.to_detail(), "note": note})
    # after step t: correct under both attacks' step-t results, among the worst case's examples (all four)
    by_step = [(2, [True, False, True, False]), (3, [False, True, True, True]), (2, [False, True, False, True])]
    assert four[1:] == [MetricRow("top1", k / 4, *binomial_ci(k, 4), 4, step=t + 1)
                        for t, (k, _) in enumerate(by_step)]


@pytest.mark.parametrize("steps_a, steps_b", [(1, 1), (2, 3), (0, 0)])
def test_worst_case_has_step_rows_only_for_equal_step_counts_above_one(steps_a: int, steps_b: int) -> None:
    cells = [_stored("4/255", _set([True, False]), [_set([True, True])] * steps_a),
             _stored("4/255", _set([True, True]), [_set([True, True])] * steps_b, attack="pgd-margin")]
    [summary] = _worst_case_summaries("linf", cells)
    assert [row.step for row in summary.rows] == [None]


def test_the_apgd_worst_case_takes_apgd_on_the_model_and_with_the_rescaler_off_only() -> None:
    """``worst-case:apgd`` (what every seed card of the CPU reference runs): the APGD-CE+T cells of
    the model as it is and with its rescaler off; not the reseeded probe, an attack aimed at an
    earlier glimpse, or PGD, which only the full worst case takes. Expected sets by hand."""
    apgd = "autoattack-custom:apgd-ce+apgd-t"
    cells = [_stored("4/255", _set([True, True, True, False]), attack=apgd),
             _stored("4/255", _set([True, False, True, True]), attack=apgd, variant="rescaler-off"),
             _stored("4/255", _set([False, True, True, True]), attack=apgd, variant="seed=1"),
             _stored("4/255", _set([True, True, False, True]), attack=apgd, variant="glimpse=1"),
             _stored("4/255", _set([True, True, True, True]), attack="pgd")]
    full, shared = _worst_case_summaries("linf", cells)
    assert (full.key["attack"], shared.key["attack"]) == ("worst-case", "worst-case:apgd")
    assert full.rows[0].value == 0.0 and full.rows[0].n == 4  # every example falls to one of the five
    assert shared.rows[0].value == 0.5 and shared.rows[0].n == 4  # correct under both: examples 0 and 2
    assert shared.rows[0].detail["attacks"] == [f"{apgd} 4/255", f"{apgd} 4/255 [rescaler-off]"]
    assert shared.rows[0].detail["examples"] == _set([True, False, True, False]).to_detail()
