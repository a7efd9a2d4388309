"""Corruption names, groups, severities and the per-image seed."""

from __future__ import annotations

import hashlib
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


def test_seed_is_the_documented_hash() -> None:
    """The first four bytes of sha256("id/corruption/severity"), little-endian: every stored
    corruption cell's noise depends on it, so a change must come with a new condition version."""
    digest = hashlib.sha256(b"17/fog/3").digest()
    assert seed_for(17, "fog", 3) == digest[0] + 256 * digest[1] + 256 ** 2 * digest[2] + 256 ** 3 * digest[3]


@pytest.mark.parametrize("value, expected", [
    ("fog,,snow", ["fog", "snow"]), (" fog , snow ", ["fog", "snow"]), ("1,,3", None),
])
def test_empty_items_are_skipped_not_the_end(value: str, expected: list[str] | None) -> None:
    if expected is None:
        assert parse_severities(value) == [1, 3]
    else:
        assert parse_corruptions(value) == expected


@pytest.mark.parametrize("value, expected", [("3-3", [3]), (" 2 - 4 ", [2, 3, 4]), ("5", [5])])
def test_one_level_ranges(value: str, expected: list[int]) -> None:
    assert parse_severities(value) == expected


# Each message names the culprit as the user wrote it (stripped) and the fix.
@pytest.mark.parametrize("parse, value, message", [
    (parse_corruptions, [3], 'corruption names must be strings, not 3: use e.g. "gaussian_noise"'),
    (parse_corruptions, "fgo", "unknown corruption 'fgo': use common, extra, all or names from "
                               "`mgbench corruptions list`"),
    (parse_corruptions, " , ", "no corruption named: use common, extra, all or a comma-separated list of names"),
    (parse_severities, "-1", 'severity -1 is out of range: use 1..5, e.g. "1-5" or "1,3,5"'),
    (parse_severities, "1, x", "severity 'x' is not a whole number: use 1..5, e.g. \"1-5\" or \"1,3,5\""),
    (parse_severities, "1-2-3", "severity '2-3' is not a whole number: use 1..5, e.g. \"1-5\" or \"1,3,5\""),
    (parse_severities, "X-1", "severity 'X' is not a whole number: use 1..5, e.g. \"1-5\" or \"1,3,5\""),
    (parse_severities, [1.5], "severity 1.5 is not a whole number: use 1..5, e.g. \"1-5\" or \"1,3,5\""),
    (parse_severities, "4-2", "severity range '4-2' runs backwards: write it low-high, e.g. \"1-5\""),
    (parse_severities, None, "severities None not understood: use e.g. \"1-5\" or \"1,3,5\""),
    (parse_severities, ",", 'no severity given: use 1..5, e.g. "1-5" or "1,3,5"'),
])
def test_error_messages(parse: object, value: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse(value)  # type: ignore[operator]
    assert str(info.value) == message
