"""One attack cell's bookkeeping (``mgbench.attacks.condition``) on tiny hand-made models: the
stored rows against a fresh forward pass of the returned images and perturbations measured
here, the per-step sets of an anytime model, the AutoAttack stage rows of a scripted cascade,
the seed=N stream, which models a cell applies to, transfer sources, the paper's protocol and
the table keys the runner reads."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator

import numpy as np
import pytest
import torch
import torch.nn as nn
from attack_support import Judge, ToyAnytime
from by_hand import wilson

from mgbench.attacks.autoattack import CascadeResult
from mgbench.attacks.bounds import AttackBoundsError
from mgbench.attacks.condition import AttackCondition, LimitedAttackCondition, expand_attack_table
from mgbench.attacks.eps import parse_eps
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.noise import random_noise
from mgbench.attacks.spec import AttackOutput, AttackSpec, make_spec
from mgbench.data import DataSpec
from mgbench.errors import InputError
from mgbench.models import LoadedModel
from mgbench.models.anytime import StepOutputs
from mgbench.models.layers import Normalize
from mgbench.provenance import library_versions

EPS = parse_eps("1/10")


def linear(classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, classes)).eval()


class TwoSteps(nn.Module):
    """An anytime model: step 1 reads the first two pixels, step 2 all four."""

    num_steps = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.first, self.second = nn.Linear(2, 3), nn.Linear(4, 3)

    def forward_steps(self, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
        flat = x.flatten(1)
        logits = [self.first(flat[:, :2]), self.second(flat)]
        return StepOutputs(torch.stack(logits[: steps or 2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).logits[-1]


def batches() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Two batches of 1x2x2 images with dataset indices out of order."""
    torch.manual_seed(5)
    x = torch.rand(5, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 1, 0])
    ids = torch.tensor([5, 0, 2, 7, 3])
    return [(x[:3], y[:3], ids[:3]), (x[3:], y[3:], ids[3:])]


def run_cell(condition: AttackCondition, model: nn.Module) -> tuple[list[torch.Tensor], list[Any]]:
    outs = [condition.apply(model, x, y, ids) for x, y, ids in batches()]
    return outs, condition.extra_rows()


def test_a_cells_rows_match_a_fresh_forward_pass_and_the_perturbations_measured_here() -> None:
    model, spec = linear(), make_spec("fgsm", "linf", EPS)
    outs, rows = run_cell(AttackCondition(spec), model)
    x = torch.cat([b[0] for b in batches()])
    y, ids = torch.cat([b[1] for b in batches()]), torch.cat([b[2] for b in batches()])
    x_adv = torch.cat(outs)
    with torch.no_grad():
        correct = (model(x_adv).argmax(dim=1) == y).numpy()
    linf = (x_adv - x).flatten(1).abs().amax(dim=1)
    l2 = (x_adv - x).flatten(1).norm(dim=1)
    assert [r.metric for r in rows] == ["perturbation", "per_example"]
    perturbation, per_example = rows
    assert (perturbation.value, perturbation.n) == (pytest.approx(float(linf.max())), 5)
    versions = library_versions()
    assert perturbation.detail == {
        "hyperparameters": spec.hyperparameters(), "protocol": "honest", "pixel_budget": 0.1,
        "versions": {"mgbench": versions["mgbench"], "torch": versions["torch"],
                     "pyautoattack": versions["pyautoattack"]},
        "max_linf": pytest.approx(float(linf.max())), "max_linf_255": pytest.approx(255 * float(linf.max())),
        "mean_linf": pytest.approx(float(linf.mean())), "max_l2": pytest.approx(float(l2.max())),
        "outside_unit_range_share": 0.0, "examples": 5}
    assert (per_example.value, per_example.n) == (correct.sum() / 5, 5)
    stored = ExampleSet.from_detail(per_example.detail)
    assert np.flatnonzero(stored.members).tolist() == [0, 2, 3, 5, 7]
    assert np.flatnonzero(stored.correct).tolist() == sorted(int(i) for i in ids[correct])
    assert "steps" not in per_example.detail
    assert AttackCondition(spec).extra_rows() == []  # no batches, no rows


def test_the_cell_starts_afresh_after_its_rows_and_for_another_model() -> None:
    condition = AttackCondition(make_spec("fgsm", "linf", EPS))
    _, first = run_cell(condition, linear())
    assert condition.extra_rows() == []
    (x, y, ids), (x2, y2, ids2) = batches()
    condition.apply(linear(), x, y, ids)
    condition.apply(linear(seed=1), x2, y2, ids2)  # another model: the first one's three images are dropped
    assert condition.extra_rows()[1].n == 2 and first[1].n == 5


def test_an_anytime_model_stores_each_steps_correct_examples() -> None:
    model = TwoSteps()
    outs, rows = run_cell(AttackCondition(make_spec("fgsm", "linf", EPS)), model)
    y, ids = torch.cat([b[1] for b in batches()]), torch.cat([b[2] for b in batches()])
    with torch.no_grad():
        logits = model.forward_steps(torch.cat(outs)).logits
    steps = rows[1].detail["steps"]
    assert len(steps) == 2
    for t in range(2):
        correct = (logits[t].argmax(dim=1) == y).numpy()
        assert np.flatnonzero(ExampleSet.from_detail(steps[t]).correct).tolist() == sorted(int(i) for i in ids[correct])
    final = (logits[1].argmax(dim=1) == y).numpy()
    assert rows[1].value == final.sum() / 5


def test_autoattack_stage_rows_add_up_a_scripted_cascade(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch's cascade says which examples survive each stage and what pyautoattack's
    checks logged; the cell adds them up over batches."""
    script = iter([
        CascadeResult(torch.empty(0), {"clean": torch.tensor([True, True, False]),
                                       "apgd-ce": torch.tensor([True, False, False])}, {"a": 1}, 2),
        CascadeResult(torch.empty(0), {"clean": torch.tensor([True, True]), "apgd-ce": torch.tensor([False, False])},
                      {"a": 2, "b": 1}, 2),
    ])

    def scripted(self: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **_: Any) -> AttackOutput:
        cascade = next(script)
        return AttackOutput(x.clone(), replace(cascade, x_adv=x.clone()))

    monkeypatch.setattr(AttackSpec, "run", scripted)
    _, rows = run_cell(AttackCondition(make_spec("apgd", "linf", EPS)), linear())
    assert [r.metric for r in rows] == ["perturbation", "per_example", "autoattack:clean", "autoattack:apgd-ce",
                                        "autoattack_checks"]
    clean, apgd, checks = rows[2:]
    assert (clean.value, clean.n, (clean.ci_low, clean.ci_high)) == (0.8, 5, pytest.approx(wilson(4, 5)))
    assert (apgd.value, apgd.n, (apgd.ci_low, apgd.ci_high)) == (0.2, 5, pytest.approx(wilson(1, 5)))
    assert clean.detail == apgd.detail == {"cascade_order": ["clean", "apgd-ce"]}
    assert (checks.value, checks.n) == (2.0, 5)
    assert checks.detail == {"warnings": {"a": 3, "b": 1}, "target_classes": 2,
                             "note": "warnings of pyautoattack's checks (auto-attack logger)"}
    assert rows[0].value == 0.0


def test_under_torchrun_a_cell_gathers_every_ranks_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks, one batch each, gathered on rank 0: the rows of one process that saw both."""
    def script() -> Iterator[CascadeResult]:
        yield CascadeResult(torch.empty(0), {"clean": torch.tensor([True, True, False])}, {"a": 1}, None)
        yield CascadeResult(torch.empty(0), {"clean": torch.tensor([True, False])}, {"a": 2, "b": 1}, 2)

    def scripted(steps: Iterator[CascadeResult]) -> Any:
        def run(self: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **_: Any) -> AttackOutput:
            return AttackOutput(x.clone(), replace(next(steps), x_adv=x.clone()))
        return run

    spec, model, (first, second) = make_spec("apgd", "linf", EPS), TwoSteps(), batches()
    monkeypatch.setattr(AttackSpec, "run", scripted(script()))
    alone = AttackCondition(spec)
    alone.apply(model, *first)
    alone.apply(model, *second)
    expected = alone.extra_rows()
    steps = script()
    monkeypatch.setattr(AttackSpec, "run", scripted(steps))
    rank0, rank1 = AttackCondition(spec), AttackCondition(spec)
    rank0.apply(model, *first)
    rank1.apply(model, *second)
    monkeypatch.setattr("mgbench.distributed.active", lambda: True)
    sent = []
    monkeypatch.setattr("mgbench.distributed.gather_objects",
                        lambda mine: sent.append(mine) or [mine, replace(rank1._cell, model=None)])
    rank0.gather()
    assert sent[0].model is None  # the records travel between ranks, the model does not
    assert rank0.extra_rows() == expected
    # a last rank that had no batch (fewer images than ranks) adds nothing and erases nothing
    monkeypatch.setattr(AttackSpec, "run", scripted(script()))
    busy, idle = AttackCondition(spec), AttackCondition(spec)
    busy.apply(model, *first)
    busy.apply(model, *second)
    monkeypatch.setattr("mgbench.distributed.gather_objects", lambda mine: [mine, replace(idle._cell, model=None)])
    busy.gather()
    assert busy.extra_rows() == expected
    assert [r.metric for r in expected] == ["perturbation", "per_example", "autoattack:clean", "autoattack_checks"]
    assert expected[3].detail["warnings"] == {"a": 3, "b": 1} and expected[3].detail["target_classes"] == 2
    assert len(expected[1].detail["steps"]) == 2 and expected[0].detail["pixel_budget"] == 0.1


def test_seed_n_derives_an_independent_stream_from_the_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def record(self: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, source: Any = None,
               seed: int = 0) -> AttackOutput:
        seen.append(seed)
        return AttackOutput(x.clone())

    monkeypatch.setattr(AttackSpec, "run", record)
    model, (x, y, ids) = linear(), batches()[0]
    torch.manual_seed(123)
    base = int(torch.randint(0, 2**31 - 1, (1,)).item())
    after_plain = torch.rand(1)
    torch.manual_seed(123)
    AttackCondition(make_spec("pgd", "linf", EPS)).apply(model, x, y, ids)
    assert torch.equal(torch.rand(1), after_plain)  # the runner's stream, one draw further
    torch.manual_seed(123)
    AttackCondition(make_spec("pgd", "linf", EPS, variants=("seed=2",))).apply(model, x, y, ids)
    reseeded = torch.rand(1)
    derived = (base * 1_000_003 + 2) % (2**31 - 1)
    assert seen == [base, derived]
    torch.manual_seed(derived)
    assert torch.equal(reseeded, torch.rand(1)) and not torch.equal(reseeded, after_plain)


def loaded(module: nn.Module, name: str = "m") -> LoadedModel:
    return LoadedModel(module, name, "arch", f"sha-{name}")


def test_which_models_a_cell_applies_to() -> None:
    bare, anytime = loaded(linear(), "bare"), loaded(TwoSteps(), "anytime")
    rescaled = loaded(ToyAnytime(), "rescaled")  # has MGNet's gradient_rescaler switch
    rescaler_off = make_spec("pgd", "linf", EPS, variants=("rescaler-off",))
    assert not AttackCondition(rescaler_off, optional=True).applies_to(bare)
    assert AttackCondition(rescaler_off, optional=True).applies_to(rescaled)
    assert AttackCondition(rescaler_off).applies_to(bare)  # asked for: the runner's check_model fails it
    AttackCondition(rescaler_off, optional=True).check_model(bare)
    AttackCondition(rescaler_off).check_model(rescaled)
    with pytest.raises(InputError) as error:
        AttackCondition(rescaler_off).check_model(bare)
    assert str(error.value) == ("attack variant rescaler-off needs a model with a gradient_rescaler(enabled) context "
                                "manager (MGNet); bare has none: drop the variant for this model")
    glimpse = {t: make_spec("pgd", "linf", EPS, variants=(f"glimpse={t}",)) for t in (1, 2, 3)}
    # glimpse=2 of a 2-step model is its final prediction: the default run covers it
    assert [AttackCondition(glimpse[t], optional=True).applies_to(anytime) for t in (1, 2, 3)] == [True, False, False]
    with pytest.raises(InputError, match="; anytime has 2: drop the variant"):
        AttackCondition(glimpse[3]).check_model(anytime)
    assert AttackCondition(make_spec("pgd", "linf", EPS, transfer_from="src", variants=("rescaler-off",))) \
        .check_model(bare) is None  # the source is checked when loaded
    assert AttackCondition(make_spec("noise", "linf", EPS)).needs_grad is False
    assert AttackCondition(make_spec("fgsm", "linf", EPS)).needs_grad is True


def test_a_transfer_source_is_keyed_recorded_and_must_predict_the_same_classes() -> None:
    spec = make_spec("fgsm", "linf", EPS, transfer_from="src")
    source = loaded(linear(seed=3), "src")
    condition = AttackCondition(spec, source)
    assert condition.key == {**spec.key(), "source_weights": "sha-src"}
    _, rows = run_cell(condition, linear())
    assert rows[0].detail["transfer_source"] == {"model": "src", "arch": "arch", "weights": "sha-src", "params": 15}
    wrong = AttackCondition(spec, loaded(linear(classes=4), "src"))
    x, y, ids = batches()[0]
    with pytest.raises(InputError) as error:
        wrong.apply(linear(), x, y, ids)
    assert str(error.value) == ("transfer source src predicts 4 classes, the target 3: use a source trained on the "
                                "same data")


def test_the_papers_protocol_records_its_pixel_budget_and_a_note() -> None:
    model = nn.Sequential(Normalize([0.5], [0.25]), linear()).eval()
    _, rows = run_cell(AttackCondition(make_spec("pgd", "linf", parse_eps("4/255"), protocol="mgnet-paper")), model)
    detail = rows[0].detail
    assert detail["pixel_budget"] == [pytest.approx(4 / 255 * 0.25)]
    assert detail["note"] == ("official MGNet attack: eps and step in normalised units (pixel budget eps*std), no "
                              "random start, no clipping; not comparable with honest results")
    assert rows[0].value <= 4 / 255 * 0.25 + 1e-7


@pytest.mark.parametrize("extra, message", [
    ({"limit": 0}, "attack table: limit must be a positive whole number, not 0"),
    ({"limit": True}, "attack table: limit must be a positive whole number, not True"),
    ({"limit": 2.5}, "attack table: limit must be a positive whole number, not 2.5"),
    ({"square_queries": 0}, "attack table: square_queries must be a positive whole number, not 0"),
    ({"square_queries": "9"}, "attack table: square_queries must be a positive whole number, not '9'"),
])
def test_bad_table_extras_are_named(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as error:
        expand_attack_table({"type": "attack", "attack": "pgd", "eps": "4/255", **extra})
    assert str(error.value) == message


def test_the_smallest_limit_and_query_budget_are_one() -> None:
    table = {"type": "attack", "attack": "square", "eps": "4/255", "limit": 1, "square_queries": 1, "checks": False}
    (cell,) = expand_attack_table(table)
    assert cell.limit == 1 and cell.spec.steps == 1


def test_a_table_limit_evaluates_the_smaller_of_its_limit_and_the_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    conditions = expand_attack_table({"type": "attack", "attack": "fgsm", "eps": "4/255", "limit": 3,
                                      "variant": "default", "checks": False})
    assert len(conditions) == 1 and isinstance(conditions[0], LimitedAttackCondition) and conditions[0].limit == 3
    opened = []
    monkeypatch.setattr("mgbench.attacks.condition.open_dataset", lambda spec: opened.append(spec.limit))
    for limit in (None, 2, 10):
        conditions[0].open_data(DataSpec("digits", limit=limit))
    assert opened == [3, 2, 3]
    plain = expand_attack_table({"type": "attack", "attack": "fgsm", "eps": "4/255", "checks": False})
    assert [type(c).__name__ for c in plain] == ["AttackCondition", "AttackCondition"]
    assert [c.optional for c in plain] == [False, True]  # the default rescaler-off run is optional


# ----------------------------------------------------------------------------- the random-noise probe

@pytest.mark.parametrize("threshold, sizes", [(2.0, [8] * 10), (-1.0, [8])])
def test_noise_draws_until_each_example_is_fooled_or_the_draws_run_out(threshold: float, sizes: list[int]) -> None:
    judge, x = Judge(threshold), torch.full((8, 1, 2, 2), 0.5)
    out = random_noise(judge, x, torch.zeros(8, dtype=torch.long), norm="linf", eps=0.1)
    assert judge.sizes == sizes
    assert torch.allclose((out - x).abs(), torch.full_like(x, 0.1))  # every pixel moved by +-eps
    assert {round(v, 4) for v in out.flatten().tolist()} == {0.4, 0.6}  # both signs drawn
    for start, kept in ((0.0, {0.0, 0.1}), (1.0, {0.9, 1.0})):  # clipped to the image range
        edge = random_noise(judge, torch.full((8, 1, 2, 2), start), torch.zeros(8, dtype=torch.long), norm="linf",
                            eps=0.1)
        assert {round(v, 4) for v in edge.flatten().tolist()} == kept


def test_noise_keeps_the_first_draw_that_fools_the_model() -> None:
    torch.manual_seed(0)
    judge, x = Judge(0.55), torch.full((64, 1, 2, 2), 0.5)
    out = random_noise(judge, x, torch.zeros(64, dtype=torch.long), norm="linf", eps=0.1, draws=3)
    fooled = out.flatten(1)[:, 0] > 0.55
    # each draw fools half of the examples still standing: 64 -> ~32 -> ~16 left
    assert judge.sizes[0] == 64
    assert all(later < earlier for earlier, later in zip(judge.sizes, judge.sizes[1:]))
    assert 64 - int(fooled.sum()) < judge.sizes[-1]  # the last draw fooled some more


def test_l2_noise_lies_on_the_sphere_of_radius_eps() -> None:
    torch.manual_seed(0)
    x = torch.full((16, 3, 4, 4), 0.5)
    out = random_noise(Judge(2.0), x, torch.zeros(16, dtype=torch.long), norm="l2", eps=0.25, draws=1)
    assert torch.allclose((out - x).flatten(1).norm(dim=1), torch.full((16,), 0.25), atol=1e-6)
    # one pixel: the direction is the sign of a normal draw, however small the draw
    x = torch.full((256, 1, 1, 1), 0.5)
    out = random_noise(Judge(2.0), x, torch.zeros(256, dtype=torch.long), norm="l2", eps=0.25, draws=1)
    assert torch.allclose((out - x).abs(), torch.full_like(x, 0.25))
    far = random_noise(Judge(2.0), torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long), norm="l2", eps=5.0)
    assert far.min() >= 0 and far.max() <= 1  # clipped to the image range


def test_an_l2_cell_reports_its_largest_l2_perturbation() -> None:
    model = linear()
    outs, rows = run_cell(AttackCondition(make_spec("fgsm", "l2", parse_eps("1/2"))), model)
    x = torch.cat([b[0] for b in batches()])
    l2 = (torch.cat(outs) - x).flatten(1).norm(dim=1)
    assert rows[0].value == pytest.approx(float(l2.max()))
    assert rows[0].value != pytest.approx(rows[0].detail["max_linf"])


def test_images_outside_the_unit_range_are_refused_under_the_honest_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the ball but outside [0, 1]: an attack defect the cell must catch, naming the attack."""
    monkeypatch.setattr(AttackSpec, "run", lambda self, model, x, y, **_: AttackOutput((x + 0.05).clamp(min=0)))
    x, y, ids = batches()[0]
    with pytest.raises(AttackBoundsError, match=r"^fgsm linf 1/10: .*\[0, 1\]"):
        AttackCondition(make_spec("fgsm", "linf", EPS)).apply(linear(), torch.clamp(x + 0.97, max=1), y, ids)
