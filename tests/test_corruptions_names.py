"""Corruption names, groups, severities and the per-image seed."""

from __future__ import annotations

import os
import subprocess
import sys

import imagecorruptions
import pytest

from mgbench.corruptions import ALL, COMMON, EXTRA, parse_corruptions, parse_severities, seed_for
from mgbench.errors import InputError


def test_names_are_imagecorruptions_names() -> None:
    assert list(COMMON) == imagecorruptions.get_corruption_names("common")
    assert list(EXTRA) == imagecorruptions.get_corruption_names("validation")
    assert len(set(ALL)) == 19


@pytest.mark.parametrize("value, expected", [
    ("common", list(COMMON)),
    ("extra", list(EXTRA)),
    ("all", list(ALL)),
    ("fog,snow", ["fog", "snow"]),
    (["snow", "fog", "snow"], ["snow", "fog"]),
    ("extra,fog", [*EXTRA, "fog"]),
])
def test_parse_corruptions(value: object, expected: list[str]) -> None:
    assert parse_corruptions(value) == expected


@pytest.mark.parametrize("value", ["fgo", "common,blurr", "", ",", [3]])
def test_parse_corruptions_rejects(value: object) -> None:
    with pytest.raises(InputError) as info:
        parse_corruptions(value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value, expected", [
    ("1-5", [1, 2, 3, 4, 5]), ("1,3,5", [1, 3, 5]), (2, [2]), ("4", [4]), ([5, 1, 5], [1, 5]), ("2-3,5", [2, 3, 5]),
])
def test_parse_severities(value: object, expected: list[int]) -> None:
    assert parse_severities(value) == expected


@pytest.mark.parametrize("value", ["0", "6", "1-6", "5-1", "a", "1.5", [True], "", [2.0]])
def test_parse_severities_rejects(value: object) -> None:
    with pytest.raises(InputError) as info:
        parse_severities(value)
    assert "\n" not in str(info.value)


def test_seed_is_stable_across_processes() -> None:
    """Not Python's salted hash: another interpreter with another hash seed agrees."""
    code = "from mgbench.corruptions import seed_for; print(seed_for(17, 'fog', 3), seed_for('n1/x.JPEG', 'snow', 5))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.split() == [str(seed_for(17, "fog", 3)), str(seed_for("n1/x.JPEG", "snow", 5))]


def test_seeds_differ_and_fit_numpy() -> None:
    seeds = {seed_for(i, name, s) for i in range(50) for name in ("fog", "snow") for s in (1, 5)}
    assert len(seeds) == 200
    assert all(0 <= s < 2 ** 32 for s in seeds)
