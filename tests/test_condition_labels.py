"""``condition_label``: the one short name of a condition, from its key or a stored row's condition
columns. Tables, the leaderboard, figures, progress and error messages all print it, so its text
must not move: the expected labels below are the ones mgbench printed before each condition type
came to own its label (issue 29)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mgbench.conditions import condition_label

NAN = math.nan
PGD_LINF = {"threat": "linf", "attack": "pgd", "eps_str": "4/255"}

KEYS = [
    ({"threat": "clean"}, "clean"),
    ({"threat": "corruption", "corruption": "fog", "severity": 3, "backend": "torch"}, "fog s3"),
    ({**PGD_LINF, "protocol": "honest", "variant": "default"}, "pgd linf 4/255"),
    ({**PGD_LINF, "protocol": "mgnet-paper", "variant": "no-rescale"}, "pgd linf 4/255 [mgnet-paper] (no-rescale)"),
    ({"threat": "linf", "attack": "fgsm", "eps_str": "8/255", "protocol": "mgnet-paper", "variant": "default"},
     "fgsm linf 8/255 [mgnet-paper]"),
    ({"threat": "l2", "attack": "pgd", "eps_str": "0.5", "protocol": "honest", "variant": "bpda"}, "pgd l2 0.5 (bpda)"),
    ({"threat": "l2", "attack": "pgd", "eps_str": "0.5", "variant": ""}, "pgd l2 0.5"),
    ({"threat": "linf", "attack": None, "eps_str": "4/255"}, "linf 4/255"),
    # the attack summaries' keys (worst case per eps, verdict per norm)
    ({**PGD_LINF, "attack": "worst-case", "protocol": "honest", "variant": "default", "norm": "linf"},
     "worst-case linf 4/255"),
    ({"threat": "linf", "attack": "verdict", "protocol": "honest", "variant": "default", "norm": "linf"},
     "verdict linf"),
    # a threat no condition type owns (the compute cell): the threat's name
    ({"threat": "compute"}, "compute"),
]


@pytest.mark.parametrize("key, label", KEYS, ids=[label for _, label in KEYS])
def test_the_label_of_a_key(key: dict, label: str) -> None:
    assert condition_label(key) == label


def test_the_label_of_a_stored_row() -> None:
    """A row of ``Store.frame``: every condition column present, the absent ones None or NaN,
    integer columns read back as floats."""
    columns = ("threat", "corruption", "severity", "attack", "protocol", "variant", "eps_str")
    rows = [
        (("corruption", "fog", 3.0, None, None, None, None), "fog s3"),
        (("linf", None, NAN, "autoattack-custom:apgd-ce+apgd-t", "honest", "default", "4/255"),
         "autoattack-custom:apgd-ce+apgd-t linf 4/255"),
        (("linf", None, NAN, "pgd", NAN, NAN, "4/255"), "pgd linf 4/255"),
        (("l2", None, NAN, "pgd", "mgnet-paper", "no-rescale", "0.5"), "pgd l2 0.5 [mgnet-paper] (no-rescale)"),
        (("compute", None, NAN, None, None, None, None), "compute"),
        (("clean", None, NAN, None, None, None, None), "clean"),
    ]
    frame = pd.DataFrame([values for values, _ in rows], columns=columns)
    assert [condition_label(row) for _, row in frame.iterrows()] == [label for _, label in rows]
