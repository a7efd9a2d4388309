"""Budgets, attack tables and their validation (no model needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mgbench.attacks.checks import TOLERANCE, beats, unique_breaks
from mgbench.attacks.eps import parse_eps, parse_eps_list, parse_number
from mgbench.attacks.examples import ExampleSet
from mgbench.attacks.kinds.pgd import DEFAULT_STEPS
from mgbench.attacks.spec import make_spec, plan_table, specs_from_table
from mgbench.conditions import expand
from mgbench.errors import InputError
from mgbench.suites import load_suite


@pytest.mark.parametrize("text, value", [
    ("4/255", 4 / 255), ("0.0157", 0.0157), (" 8/255 ", 8 / 255), ("1e-2", 0.01), ("0.5/255", 0.5 / 255),
])
def test_eps_values_and_text(text: str, value: float) -> None:
    eps = parse_eps(text)
    assert math.isclose(eps.value, value, rel_tol=1e-12)
    assert eps.text == text.strip()


def test_eps_list_keeps_order_and_text_and_drops_duplicates() -> None:
    parsed = parse_eps_list("1/255,2/255,4/255,8/255,0.0156862745098039")
    assert [e.text for e in parsed] == ["1/255", "2/255", "4/255", "8/255", "0.0156862745098039"]
    assert [e.text for e in parse_eps_list(["4/255", 0.25, "4/255"])] == ["4/255", "0.25"]
    assert parse_eps_list(0.5)[0].text == "0.5"


@pytest.mark.parametrize("bad, words", [
    ("4/0", "divides by zero"), ("-1", "must be positive"), ("abc", "not a number"), ("", "empty"),
    ("0", "must be positive"), ("nan", "not finite"), ("1/2/3", "more than one"), ("1/255,,x", "empty entry"),
    ("1/255,x", "not a number"),
    ([], "empty"), (True, "not a number"),
])
def test_bad_eps_is_one_line_input_error(bad: object, words: str) -> None:
    with pytest.raises(InputError) as info:
        parse_eps_list(bad)
    message = str(info.value)
    assert words in message and "\n" not in message and "4/255" in message


def test_step_size_errors_name_the_option() -> None:
    with pytest.raises(InputError, match="step_size '0' must be positive"):
        parse_number("0", "step_size")


def test_defaults_are_resolved_and_stored() -> None:
    eps = parse_eps("4/255")
    pgd = make_spec("pgd", "linf", eps)
    assert (pgd.steps, pgd.restarts, pgd.random_start, pgd.name) == (100, 2, True, "pgd")
    assert DEFAULT_STEPS == 100 and math.isclose(pgd.step_size, eps.value / 4)
    assert make_spec("pgd", "linf", eps, loss="margin").name == "pgd-margin"
    apgd = make_spec("apgd", "linf", eps)
    assert apgd.name == "autoattack-custom:apgd-ce+apgd-t" and apgd.steps is None
    square = make_spec("square", "linf", eps, square_queries=300).key()
    assert (square["attack"], square["steps"]) == ("autoattack-custom:square", 300)
    fgsm = make_spec("fgsm", "linf", eps, steps=50, random_start=True)  # PGD keys do not apply to FGSM
    assert (fgsm.steps, fgsm.step_size, fgsm.random_start) == (1, eps.value, False)
    paper = make_spec("pgd", "linf", eps, protocol="mgnet-paper")
    assert (paper.steps, paper.step_size, paper.random_start, paper.keep) == (10, 1 / 255, False, "last")
    key = make_spec("autoattack", "l2", parse_eps("0.5"), version="custom", aa_attacks=("apgd-ce", "square")).key()
    assert key["attack"] == "autoattack-custom:apgd-ce+square" and key["steps"] is None and key["threat"] == "l2"


def test_table_expands_to_every_combination_and_all_respects_the_protocol() -> None:
    specs = specs_from_table({"type": "attack", "attack": "all", "eps": "2/255,4/255", "checks": False,
                              "protocol": ["honest", "mgnet-paper"], "variant": "default"})
    labels = sorted(s.label for s in specs)
    assert len(specs) == 2 * 4 + 2 * 2  # fgsm, pgd, pgd-margin, apgd; mgnet-paper: fgsm, pgd (CE only)
    assert "autoattack-custom:apgd-ce+apgd-t linf 4/255" in labels and "pgd linf 4/255 [mgnet-paper]" in labels
    transfer = specs_from_table({"type": "attack", "attack": "all", "eps": "4/255", "transfer_from": "x",
                                 "checks": False})
    assert [s.name for s in transfer] == ["fgsm", "pgd", "pgd-margin"]
    assert transfer[0].variant == "transfer-from=x"


def test_default_plan_adds_rescaler_off_where_it_applies_and_the_probes() -> None:
    plan = plan_table({"type": "attack", "attack": ["pgd", "autoattack"], "eps": "1/255,4/255", "per_step": True})
    labels = {p.spec.label: p for p in plan}
    # Gradient rescaler off: optional (only models that have one), for every gradient attack.
    assert labels["pgd linf 4/255 (rescaler-off)"].optional and not labels["pgd linf 4/255"].optional
    assert labels["autoattack-standard linf 4/255 (rescaler-off)"].optional
    # Attacks aimed at single anytime steps (optional: models with more steps).
    assert labels["pgd linf 4/255 (glimpse=2)"].optional and "pgd-margin linf 4/255 (glimpse=2)" not in labels
    # Probes at every eps, as ordinary attacks: noise, Square, a second seed of the strongest attack.
    for eps in ("1/255", "4/255"):
        for probe in (f"noise linf {eps}", f"autoattack-custom:square linf {eps}",
                      f"autoattack-standard linf {eps} (seed=1)"):
            assert labels[probe].probe, probe
    chance = [p.spec for p in plan if p.spec.eps.text == "1/2"]
    assert len(chance) == 1 and (chance[0].steps, chance[0].random_start, chance[0].restarts) == (20, False, 1)
    assert len({str(sorted(p.spec.key().items())) for p in plan}) == len(plan)
    assert not any(p.probe for p in plan_table({"type": "attack", "attack": "pgd", "eps": "4/255",
                                                 "checks": False}))


@pytest.mark.parametrize("table, words", [
    ({"attack": "cw", "eps": "4/255"}, "unknown attack 'cw'"),
    ({"attack": "pgd"}, "eps is missing"),
    ({"attack": "pgd", "eps": "4/255", "norm": "l1"}, "unknown norm 'l1'"),
    ({"attack": "pgd", "eps": "4/255", "steps": 0}, "steps must be a positive whole number"),
    ({"attack": "pgd", "eps": "4/255", "restarts": 1.5}, "restarts must be a positive whole number"),
    ({"attack": "pgd", "eps": "4/255", "random_start": "yes"}, "random_start must be true or false"),
    ({"attack": "pgd", "eps": "4/255", "stpes": 10}, "unknown key(s) stpes"),
    ({"attack": "pgd", "eps": "2"}, "above 1"),
    ({"attack": "pgd", "eps": "4/255", "variant": "rescaler"}, "unknown attack variant 'rescaler'"),
    ({"attack": "pgd", "eps": "4/255", "variant": "glimpse=0"}, "glimpse needs a whole number >= 1"),
    ({"attack": "pgd", "eps": "4/255", "variant": "all-glimpses+glimpse=2"}, "exclude each other"),
    ({"attack": "pgd", "eps": "4/255", "loss": "hinge"}, "unknown loss 'hinge'"),
    ({"attack": "noise", "eps": "4/255", "variant": "rescaler-off"}, "noise uses no gradient"),
    ({"attack": "pgd", "eps": "4/255", "per_step": "yes"}, "per_step must be true or false"),
    ({"attack": "pgd", "eps": "4/255", "protocol": "paper"}, "unknown protocol 'paper'"),
    ({"attack": "autoattack", "eps": "4/255", "protocol": "mgnet-paper"}, "the paper ran no AutoAttack"),
    ({"attack": "pgd", "eps": "4/255", "protocol": "mgnet-paper", "norm": "l2"}, "L-inf only"),
    ({"attack": "pgd", "eps": "4/255", "protocol": "mgnet-paper", "random_start": True}, "no random start"),
    ({"attack": "pgd", "eps": "4/255", "protocol": "mgnet-paper", "variant": "all-glimpses"}, "no variants"),
    ({"attack": "autoattack", "eps": "4/255", "version": "plus"}, "unknown AutoAttack version 'plus'"),
    ({"attack": "autoattack", "eps": "4/255", "version": "custom"}, "custom needs its attacks"),
    ({"attack": "autoattack", "eps": "4/255", "aa_attacks": ["square"]}, "fixed list of attacks"),
    ({"attack": "autoattack", "eps": "4/255", "version": "custom", "aa_attacks": "apgd-x"}, "unknown AutoAttack"),
    ({"attack": "autoattack", "eps": "4/255", "variant": "all-glimpses"}, "AutoAttack uses its own losses"),
    ({"attack": "autoattack", "eps": "4/255", "transfer_from": "x"}, "transfer attacks use fgsm or pgd"),
    ({"attack": "pgd", "eps": "4/255", "limit": 0}, "limit must be a positive whole number"),
    ({"attack": "pgd", "eps": "4/255", "square_queries": -5}, "square_queries must be a positive"),
    ({"attack": "pgd", "eps": "4/255", "transfer_from": "no-such-model"}, "unknown model 'no-such-model'"),
])
def test_bad_tables_are_one_line_input_errors(table: dict, words: str) -> None:
    with pytest.raises(InputError) as info:
        expand({"type": "attack", **table})
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["attacks", "attacks-mgnet-paper", "attacks-seeds", "attacks-cpu",
                                  "attacks-mgnet-paper-cpu"])
def test_the_shipped_attack_suites_expand(name: str) -> None:
    suite = load_suite(name)
    conditions = suite.expand()
    assert conditions and all(c.key["threat"] in ("clean", "linf", "l2") for c in conditions)
    keys = [str(sorted(c.key.items())) for c in conditions]
    assert len(keys) == len(set(keys)), "a suite should not list the same cell twice"


def _cells(name: str) -> dict[str, int | None]:
    """A suite's cells as (condition key -> image limit of its table; None: the suite's)."""
    return {str(sorted(c.key.items())): getattr(c, "limit", None) for c in load_suite(name).expand()}


def test_the_cpu_cut_of_the_mgnet_paper_suite_keeps_strength_and_shares_the_honest_side() -> None:
    cut, full, cpu = _cells("attacks-mgnet-paper-cpu"), _cells("attacks-mgnet-paper"), _cells("attacks-cpu")
    assert load_suite("attacks-mgnet-paper-cpu").models == load_suite("attacks-mgnet-paper").models
    # Every cell is one of the GPU suite's (same attack, steps, restarts, variant) or attacks-cpu's
    # with the same image limit: the cut computes nothing weaker, only fewer cells.
    assert all(key in full or cpu.get(key, -1) == limit for key, limit in cut.items())
    # The adaptive and transfer attacks and the paper's protocol are what it adds to attacks-cpu.
    added = [key for key in cut if key not in cpu]
    assert added and all(("all-glimpses" in key or "transfer-from" in key or "mgnet-paper" in key) and key in full
                         for key in added)
    # The honest headline is attacks-cpu's, cell for cell, so the CPU reference computes it once.
    headline = [key for key in cut if "'4/255'" in key and "'honest'" in key
                and "all-glimpses" not in key and "transfer-from" not in key]
    assert headline and all(cpu.get(key, -1) == cut[key] for key in headline)
    # What it drops is the GPU suite's honest sweep beyond attacks-cpu: AutoAttack aimed at each glimpse.
    assert any("glimpse=" in key and "autoattack-standard" in key for key in full)
    assert not any("autoattack-standard" in key for key in cut)

def test_example_sets_round_trip_and_combine() -> None:
    ids = np.array([7, 2, 40, 3])
    correct = np.array([True, False, True, True])
    stored = ExampleSet.from_ids(ids, correct).to_detail()
    again = ExampleSet.from_detail(stored)
    assert again.n == 4 and again.n_correct == 3
    assert list(np.flatnonzero(again.correct)) == [3, 7, 40]
    other = ExampleSet.from_ids(np.array([2, 3, 7, 9]), np.array([True, False, True, True]))
    worst = again.worst_with(other)
    assert list(np.flatnonzero(worst.members)) == [2, 3, 7] and list(np.flatnonzero(worst.correct)) == [7]
    # 3 is broken only by `other`, among the 3 shared examples
    assert unique_breaks(other, again) == (1, 3)


def test_margin_rule_follows_the_wilson_interval() -> None:
    assert TOLERANCE == 0.01
    assert not beats(2, 100)[0] and beats(3, 100)[0]  # lower 95% bound of 3/100 is just above 1%
    assert not beats(16, 1000)[0] and beats(18, 1000)[0]
    assert not beats(0, 20)[0]
