"""The ball check's edges and the perturbation facts stored with every attack cell, against
hand computations (float64 inputs, so that a tolerance's edge is exact)."""

from __future__ import annotations

import math

import pytest
import torch

from mgbench.attacks.bounds import L2_RTOL, LINF_ATOL, AttackBoundsError, PerturbationStats, check_ball, l2_norms


def _one_pixel(value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv, x): zero images, one pixel of the first set to ``value``."""
    x = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = value
    return x_adv, x


def test_linf_tolerance_is_inclusive() -> None:
    check_ball(*_one_pixel(LINF_ATOL), norm="linf", eps=0.0)  # exactly at the tolerance: inside
    with pytest.raises(AttackBoundsError):
        check_ball(*_one_pixel(2 * LINF_ATOL), norm="linf", eps=0.0)


def test_l2_tolerance_is_relative_plus_absolute_and_inclusive() -> None:
    eps = 0.5
    edge = eps * (1 + L2_RTOL) + LINF_ATOL
    x_adv, x = _one_pixel(edge)
    assert l2_norms(x_adv - x).max().item() == edge  # one non-zero pixel: its norm is exact
    check_ball(x_adv, x, norm="l2", eps=eps, unit_range=False)
    # between eps (1 + rtol) - atol and the edge: inside (the absolute tolerance is added, not taken off)
    check_ball(*_one_pixel(eps * (1 + L2_RTOL)), norm="l2", eps=eps, unit_range=False)
    with pytest.raises(AttackBoundsError):
        check_ball(*_one_pixel(edge + 1e-6), norm="l2", eps=eps, unit_range=False)


@pytest.mark.parametrize("x_adv, x, kwargs, message", [
    (torch.zeros(2, 3), torch.zeros(2, 4), {"norm": "linf", "eps": 0.1},
     "attack: returned shape (2, 3) for inputs (2, 4)"),
    (torch.zeros(2, 3), torch.zeros(2, 3), {"norm": "l2", "eps": torch.ones(1, 3), "what": "pgd"},
     "pgd: an L2 budget must be one number"),
    (torch.zeros(2, 3), torch.zeros(2, 3), {"norm": "l1", "eps": 0.1}, "attack: unknown norm 'l1'"),
    (torch.full((2, 3), 0.25), torch.zeros(2, 3), {"norm": "linf", "eps": 0.125},
     "attack: L-inf perturbation 0.25000000 exceeds its budget by 1.25e-01"),
    (torch.full((1, 4), 0.5), torch.zeros(1, 4), {"norm": "l2", "eps": 0.5},
     "attack: L2 perturbation 1.000000 exceeds the budget 0.500000"),
    (torch.full((1, 4), 1.5), torch.ones(1, 4), {"norm": "linf", "eps": 0.5},
     "attack: pixels outside [0, 1] (min 1.500000, max 1.500000)"),
])
def test_messages_name_the_attack_and_the_violation(x_adv: torch.Tensor, x: torch.Tensor, kwargs: dict,
                                                    message: str) -> None:
    with pytest.raises(AttackBoundsError) as info:
        check_ball(x_adv, x, **kwargs)
    assert str(info.value) == message


def test_perturbation_stats_by_hand() -> None:
    stats = PerturbationStats()
    assert stats.as_dict()["outside_unit_range_share"] == 0.0  # no pixels yet: no share, no division
    x = torch.full((2, 1, 2, 2), 0.5)
    delta = torch.tensor([[0.1, -0.2, 0.0, 0.0], [0.3, 0.0, 0.0, 0.625]]).view(2, 1, 2, 2)  # 1.125: outside
    stats.update(x + delta, x)
    # a second batch of one example: pixels exactly 0 and 1 are inside, -0.25 and 1.25 outside
    x2 = torch.tensor([0.25, 0.75, 0.0, 1.0]).view(1, 1, 2, 2)
    x2_adv = torch.tensor([0.0, 1.0, -0.25, 1.25]).view(1, 1, 2, 2)
    stats.update(x2_adv, x2)
    # per-example L-inf: 0.2, 0.625, 0.25; L2: sqrt(0.05), sqrt(0.09 + 0.390625), sqrt(0.25 ** 2 * 4) = 0.5
    expected = {"max_linf": 0.625, "max_linf_255": 0.625 * 255, "mean_linf": (0.2 + 0.625 + 0.25) / 3,
                "max_l2": math.sqrt(0.480625), "outside_unit_range_share": 3 / 12, "examples": 3}
    got = stats.as_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert (stats.outside_pixels, stats.pixels) == (3, 12)


def test_merged_stats_are_the_stats_of_all_examples() -> None:
    x = torch.zeros(4, 4)
    x_adv = torch.tensor([[0.1, 0, 0, 0], [0, 0.3, 0, 0], [0, 0, 0, -0.2], [0, 0, 0.4, 0]])
    whole, first, second = PerturbationStats(), PerturbationStats(), PerturbationStats()
    whole.update(x_adv, x)
    first.update(x_adv[:2], x[:2])
    second.update(x_adv[2:], x[2:])
    merged = first.merged(second)
    for key, value in whole.as_dict().items():
        assert merged.as_dict()[key] == pytest.approx(value), key
    assert math.isclose(merged.mean_linf, 0.25, abs_tol=1e-7) and merged.outside_pixels == 1
    assert PerturbationStats().merged(PerturbationStats()).mean_linf == 0.0
