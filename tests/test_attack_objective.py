"""The attack objective (which loss, on which logits, and when an example counts as fooled),
FGSM's use of it, and the L2 random start, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench.attacks.bounds import l2_norms
from mgbench.attacks.gradient import _ascent, _random_start, default_step_size, fgsm, objective, pgd
from mgbench.models import forward_steps
from mgbench.models.anytime import StepOutputs

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.kernels]


def test_the_default_objective_is_the_final_cross_entropy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).eval()
    x, y = torch.rand(6, 3, 2, 2), torch.tensor([0, 1, 2, 3, 4, 0])
    loss, fooled = objective()(model, x, y)
    logits = model(x)
    assert torch.allclose(loss, F.cross_entropy(logits, y, reduction="none"))
    assert fooled.tolist() == (logits.argmax(dim=1) != y).tolist()


class ThreeSteps(nn.Module):
    """An anytime model: three linear heads, one prediction per step."""

    num_steps = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.heads = nn.ModuleList(nn.Linear(12, 10) for _ in range(3))

    def forward_steps(self, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
        return StepOutputs(torch.stack([head(x.flatten(1)) for head in self.heads[:steps]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).logits[-1]


def test_all_steps_is_the_mean_of_each_steps_loss_and_fooled_is_the_final_step() -> None:
    model = ThreeSteps().eval()
    torch.manual_seed(1)
    x = torch.rand(64, 3, 2, 2)
    with torch.no_grad():
        logits = forward_steps(model, x).logits  # [3, 64, 10]
    final, middle = logits[-1].argmax(dim=1), logits[-2].argmax(dim=1)
    y = torch.where(torch.arange(64) % 2 == 0, final, (final + 1) % 10)  # the final step fools the odd ones
    assert bool((middle != final).any())  # the steps disagree somewhere: the final step is the one judged
    for kind in ("ce", "margin"):
        loss, fooled = objective(kind, "all")(model, x, y)
        per_step = [objective(kind)(lambda _, t=t: logits[t], x, y)[0] for t in range(3)]
        assert loss.shape == (64,)
        assert torch.allclose(loss, (per_step[0] + per_step[1] + per_step[2]) / 3, atol=1e-6)
        assert fooled.tolist() == (final != y).tolist() == [i % 2 == 1 for i in range(64)]


@pytest.mark.parametrize("args, message", [
    (("bogus",), "unknown loss 'bogus'"),
    (("ce", "every"), "unknown attack target 'every'"),
])
def test_unknown_objectives_are_refused(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError) as info:
        objective(*args)
    assert str(info.value) == message


def test_fgsm_ascends_the_given_loss_without_clipping_when_asked() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x, y = torch.full((2, 3, 2, 2), 0.95), torch.tensor([0, 1])

    def brightness(_: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images.flatten(1).sum(dim=1), torch.zeros(len(labels), dtype=torch.bool)  # gradient +1 everywhere

    x_adv = fgsm(model, x, y, norm="linf", eps=0.1, clip=False, loss=brightness)
    assert torch.allclose(x_adv, torch.full_like(x, 1.05))  # one step of +eps, not clipped to 1
    assert torch.allclose(fgsm(model, x, y, norm="linf", eps=0.1, loss=brightness), torch.ones_like(x))


def test_l2_random_start_radius_is_uniform_in_low_dimension() -> None:
    """Directions are normalised even when a Gaussian draw is shorter than 1 (likely in 2-D), so
    the radius is uniform in [0, eps]: a tenth of the starts lie beyond 0.9 eps."""
    torch.manual_seed(0)
    x, eps = torch.zeros(20000, 2), 0.5
    radius = l2_norms(_random_start(x, eps, "l2", clip=False)) / eps
    assert radius.max() <= 1 + 1e-6
    assert abs(float((radius > 0.9).float().mean()) - 0.1) < 0.01  # binomial sd 0.002


def test_an_l2_step_has_the_step_size_even_for_a_short_gradient() -> None:
    grad = torch.zeros(2, 3, 2, 2)
    grad[0, 0, 0, 0], grad[1, 2, 1, 1] = 0.1, -0.02  # L2 norms 0.1 and 0.02, below 1
    step = _ascent(grad, "l2", 0.5)
    assert torch.allclose(l2_norms(step), torch.tensor([0.5, 0.5]))
    assert step[0, 0, 0, 0] == pytest.approx(0.5) and step[1, 2, 1, 1] == pytest.approx(-0.5)


def test_pgd_starts_at_a_random_point_by_default() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).eval()
    x, y = torch.full((4, 3, 2, 2), 0.5), torch.tensor([0, 1, 2, 3])
    still = pgd(model, x, y, norm="linf", eps=0.1, steps=1, step_size=0.0, random_start=False)
    moved = pgd(model, x, y, norm="linf", eps=0.1, steps=1, step_size=0.0)  # a zero step: only the start moves
    assert torch.equal(still, x)
    assert not torch.equal(moved, x) and (moved - x).abs().max() <= 0.1 + 1e-7
    with pytest.raises(ValueError) as info:
        pgd(model, x, y, norm="l1", eps=0.1, steps=1, step_size=0.1)
    assert str(info.value) == "unknown norm 'l1'"


def test_pgd_refuses_an_unknown_keep_mode_and_a_per_example_l2_budget() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).eval()
    x, y = torch.full((2, 3, 2, 2), 0.5), torch.tensor([0, 1])
    with pytest.raises(ValueError) as info:
        pgd(model, x, y, norm="linf", eps=0.1, steps=1, step_size=0.1, keep="best")
    assert str(info.value) == "unknown keep mode 'best'"
    with pytest.raises(ValueError) as info:
        pgd(model, x, y, norm="l2", eps=torch.tensor([0.1, 0.2]), steps=1, step_size=0.1)
    assert str(info.value) == "an L2 budget must be one number"


class _Threshold(nn.Module):
    """Class 1 when an image's mean exceeds 0.5 (logits -/+ 10 (mean - 0.5)); keeps each forward
    pass's batch size, which shows which examples each step and restart attacked. For label 0
    every pixel's gradient is positive, so an L-inf step adds the step size to every pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        margin = self.scale * (x.flatten(1).mean(dim=1) - 0.5)
        return torch.stack([-margin, margin], dim=1)


def _run(means: list[float], **options) -> tuple[list[float], list[int]]:
    model = _Threshold().eval()
    x = torch.tensor(means).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    out = pgd(model, x, torch.zeros(len(means), dtype=torch.long), norm="linf", eps=0.2, step_size=0.1,
              random_start=False, **options)
    return [round(v, 6) for v in out.mean(dim=(1, 2, 3)).tolist()], model.sizes


def test_restarts_attack_only_the_examples_not_yet_broken() -> None:
    """Means 0.42, 0.35, 0.05, two steps of 0.1 (budget 0.2), two restarts, by hand. Restart 1:
    step 0 sees all three (none fooled) and moves them to 0.52, 0.45, 0.15; step 1 finds the first
    fooled (kept at 0.52) and moves the other two to 0.55, 0.25; the final check finds the second
    fooled (kept at 0.55). Restart 2 attacks only the third: three passes of one example, and its
    final 0.25 is no better than restart 1's."""
    assert _run([0.42, 0.35, 0.05], steps=2, restarts=2) == ([0.52, 0.55, 0.25], [3, 3, 2, 1, 1, 1])


def test_keep_last_never_drops_an_example() -> None:
    """The same with keep="last": every pass sees all three, both restarts, and each keeps its
    final iterate (0.42 + 0.2, 0.35 + 0.2, 0.05 + 0.2) whether or not it fooled the model."""
    assert _run([0.42, 0.35, 0.05], steps=2, restarts=2, keep="last") == ([0.62, 0.55, 0.25], [3] * 6)


def test_a_single_restart_attacks_the_last_example_to_the_end() -> None:
    """Once the first example is fooled at step 1 the other one, alone, still takes its last
    step (0.05 -> 0.15 -> 0.25, then held at the budget)."""
    assert _run([0.42, 0.05], steps=3, restarts=1) == ([0.52, 0.25], [2, 2, 1])


def test_each_loss_by_hand() -> None:
    """The margin is the largest other logit minus the true one (Carlini-Wagner), CE the
    log-sum-exp minus the true logit: written out for two examples of three classes."""
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, -1.0]])
    y = torch.tensor([0, 0])
    margin, fooled = objective("margin")(lambda _: logits, torch.zeros(2, 1), y)
    assert margin.tolist() == [2.0, -5.0] and fooled.tolist() == [True, False]
    ce, _ = objective("ce")(lambda _: logits, torch.zeros(2, 1), y)
    expected = [math.log(math.e ** 1 + math.e ** 3 + math.e ** 2) - 1, math.log(math.e ** 5 + 1 + math.e ** -1) - 5]
    assert ce.tolist() == pytest.approx(expected, abs=1e-6)


def test_restarts_keep_each_examples_highest_loss_iterate() -> None:
    """keep="last", two random restarts of one small step: each example ends at the restart
    whose final iterate has the higher loss (for label 0 of the threshold model, the higher
    mean), found by running each restart alone from the same random numbers."""
    x = torch.tensor([0.1, 0.2, 0.3, 0.05]).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    y = torch.zeros(4, dtype=torch.long)
    options = dict(norm="linf", eps=0.2, steps=1, step_size=0.05, keep="last")
    torch.manual_seed(3)
    both = pgd(_Threshold().eval(), x, y, restarts=2, **options)
    torch.manual_seed(3)
    first = pgd(_Threshold().eval(), x, y, restarts=1, **options)
    second = pgd(_Threshold().eval(), x, y, restarts=1, **options)  # the generator has moved on: restart 2's draws
    pick_second = second.mean(dim=(1, 2, 3)) > first.mean(dim=(1, 2, 3))
    assert 0 < int(pick_second.sum()) < 4  # each restart wins somewhere
    assert torch.equal(both, torch.where(pick_second.view(-1, 1, 1, 1), second, first))


def test_madrys_step_size() -> None:
    """2.5 eps / steps (Madry et al. 2018): at eps 8/255 and 10 steps, 2/255."""
    assert default_step_size(8 / 255, 10) == pytest.approx(2 / 255, rel=1e-12)
    assert default_step_size(0.5, 5) == pytest.approx(0.25, rel=1e-12)
