"""The per-example worst case over attacks, from hand-built stored cells.

The worst case is the share of examples that *every* attack left correct, on the examples all of
them evaluated (Carlini et al. 2019, check 6). It is not the lowest accuracy of the attacks: here
two attacks at one eps on the same ten examples break different ones, so the intersection (4 of
10) is below the lowest single accuracy (6 of 10). The worst case covers the attacks that
evaluated the widest example set; a third attack that evaluated only eight of the ten is listed as
excluded, not mixed in. The stored ``per_example`` details are written by this test's
own encoder (the documented format: numpy packbits in base64), the expected values are counted
by hand, and the interval is the Wilson score interval written out below.

Public entry points: the registered ``attack`` summary (``mgbench.conditions.summariser``) on a
frame with the store's result columns; the checks are switched off (``checks = false``), so no
model or data is needed.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from by_hand import wilson

from mgbench.conditions import summariser
from mgbench.store import RESULT_COLUMNS


def per_example_detail(members: list[int], correct: list[int], size: int) -> dict[str, Any]:
    """``members``: evaluated dataset indices; ``correct``: the correct ones among them."""
    member_bits = np.zeros(size, dtype=bool)
    member_bits[members] = True
    correct_bits = np.array([i in correct for i in np.flatnonzero(member_bits)], dtype=bool)

    def pack(bits: np.ndarray) -> str:
        return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")

    return {"encoding": "packbits-base64/v1", "size": size, "n": len(members),
            "members": pack(member_bits), "correct": pack(correct_bits)}


def attack_rows(key: str, attack: str, norm: str, eps_str: str, members: list[int],
                correct: list[int]) -> list[dict[str, Any]]:
    """The rows of one stored attack cell: its top1 and per-example data."""
    base = dict.fromkeys(RESULT_COLUMNS)
    num, _, den = eps_str.partition("/")
    base.update(cell_key=key, model="m", dataset="digits", threat=norm, attack=attack, protocol="honest",
                variant="default", norm=norm, eps=float(num) / float(den or 1), eps_str=eps_str,
                steps=10 if attack == "pgd" else 1, step_size=0.01, restarts=1,
                random_start=1 if attack == "pgd" else 0)
    size = max(members) + 1
    top1 = {**base, "metric": "top1", "value": len(correct) / len(members), "n": len(members)}
    example = {**base, "metric": "per_example", "value": len(correct) / len(members), "n": len(members),
               "detail": json.dumps(per_example_detail(members, correct, size))}
    return [top1, example]


def summarise(rows: list[dict[str, Any]]) -> dict[tuple[str, float], Any]:
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    context = SimpleNamespace(frame=frame, tables=[{"type": "attack", "checks": False}],
                              model=SimpleNamespace(module=None, name="m"), data=None, opened=None, store=None,
                              device=None, batch_size=8)
    out = {}
    for summary in summariser("attack")(context):
        if summary.key.get("attack") == "worst-case":
            out[(summary.key["norm"], summary.key["eps"])] = summary.rows[0]
    return out


EIGHT = 8 / 255
ALL10 = list(range(10))


def test_worst_case_is_the_per_example_intersection_not_the_lowest_accuracy() -> None:
    rows = (
        # A: 6/10 correct, B: 8/10, on the same ten examples; C evaluated only examples 0..7.
        attack_rows("a", "fgsm", "linf", "8/255", ALL10, [0, 1, 2, 3, 8, 9])
        + attack_rows("b", "pgd", "linf", "8/255", ALL10, [2, 3, 4, 5, 6, 7, 8, 9])
        + attack_rows("c", "autoattack-standard", "linf", "8/255", list(range(8)), [0, 1, 2, 3, 4, 5])
        # One attack alone at 2/255: its worst case is itself.
        + attack_rows("d", "pgd", "linf", "2/255", ALL10, [0, 1, 2, 3, 4, 5, 6])
        # Another norm is a separate worst case.
        + attack_rows("e", "pgd", "l2", "1/2", ALL10, [9])
    )
    worst = summarise(rows)
    assert set(worst) == {("linf", EIGHT), ("linf", 2 / 255), ("l2", 0.5)}
    row = worst[("linf", EIGHT)]
    # The widest example set is all ten (A and B evaluated it); C evaluated fewer and is excluded,
    # not mixed in (mixing it in would cut the worst case to examples 0..7: 2 and 3 survive, 2/8).
    # On the ten, 2, 3, 8 and 9 survive both A and B: 4/10, below the lowest accuracy (A, 6/10).
    assert row.n == 10
    assert row.value == pytest.approx(4 / 10)
    low, high = wilson(4, 10)
    assert (row.ci_low, row.ci_high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert row.value < min(6 / 10, 8 / 10)  # not the lowest accuracy
    assert row.detail["attacks"] == ["fgsm 8/255", "pgd 8/255 (10 steps, 1 restart)"]
    assert row.detail["excluded"] == ["autoattack-standard 8/255"]
    single = worst[("linf", 2 / 255)]
    assert (single.value, single.n) == (pytest.approx(0.7), 10)
    assert single.detail["excluded"] == []
    assert (worst[("l2", 0.5)].value, worst[("l2", 0.5)].n) == (pytest.approx(0.1), 10)


def test_worst_case_of_disjoint_breaks_is_zero() -> None:
    """Two attacks that each leave half correct, but different halves: nothing survives both."""
    rows = (attack_rows("a", "fgsm", "linf", "8/255", ALL10, [0, 1, 2, 3, 4])
            + attack_rows("b", "pgd", "linf", "8/255", ALL10, [5, 6, 7, 8, 9]))
    row = summarise(rows)[("linf", EIGHT)]
    assert (row.value, row.n) == (0.0, 10)
    assert row.ci_low == pytest.approx(0.0, abs=1e-12) and row.ci_high == pytest.approx(wilson(0, 10)[1])


@pytest.mark.parametrize("correct, n", [(0, 10), (2, 8), (37, 100), (500, 500), (1700, 2000)])
def test_stored_intervals_are_wilson(correct: int, n: int) -> None:
    """Every accuracy interval the store holds comes from ``binomial_ci``: Wilson, by hand."""
    from mgbench.metrics import binomial_ci

    low, high = binomial_ci(correct, n)
    expected = wilson(correct, n)
    assert low == pytest.approx(max(expected[0], 0.0), abs=1e-9)
    assert high == pytest.approx(min(expected[1], 1.0), abs=1e-9)


def test_example_sets_store_the_documented_encoding() -> None:
    """``ExampleSet`` writes exactly what this test's encoder writes (the format of
    mgbench.attacks.examples: size = largest index + 1, n = members, packbits in base64) and
    reads it back into boolean masks."""
    from mgbench.attacks.examples import ExampleSet

    members, correct = [2, 3, 7, 40], [3, 40]
    made = ExampleSet.from_ids(np.array(members), np.isin(members, correct))
    assert made.members.dtype == bool and made.correct.dtype == bool
    stored = made.to_detail()
    assert stored == per_example_detail(members, correct, 41)
    again = ExampleSet.from_detail(per_example_detail(members, correct, 41))
    assert again.members.dtype == bool and again.correct.dtype == bool
    assert list(np.flatnonzero(again.members)) == members and list(np.flatnonzero(again.correct)) == correct
    assert list(np.flatnonzero(~again.correct & again.members)) == [2, 7]
    empty = ExampleSet.from_ids(np.array([], dtype=np.int64), np.array([], dtype=bool))
    assert (empty.n, empty.n_correct, empty.to_detail()["size"]) == (0, 0, 0)
    with pytest.raises(ValueError, match="unknown per-example encoding 'bits/v0'"):
        ExampleSet.from_detail({**stored, "encoding": "bits/v0"})
