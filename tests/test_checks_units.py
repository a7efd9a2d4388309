"""Each gradient-masking check (``mgbench.attacks.checks``) on per-example sets built by hand:
the exact outcome, reason, statistic, interval and detail, and which cells each check must leave
out. ``test_attack_verdict.py`` tests which checks fail on whole sweeps; this module pins what a
user reads in the verdict. Counts are worked out in the comments from the bit patterns; the
intervals are the hand-written Wilson interval of ``by_hand``."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from by_hand import wilson

from mgbench.attacks.checks import (
    Check,
    ModelFacts,
    StoredAttack,
    adaptive_check,
    autoattack_flags,
    chance_check,
    compare,
    converged_check,
    fgsm_check,
    model_checks,
    monotone_check,
    probe_check,
    seed_check,
    transfer_check,
    verdict_checks,
    worst_of,
)
from mgbench.attacks.examples import ExampleSet
from mgbench.rows import MetricRow

PGD2 = "pgd 2/255 (10 steps, 1 restart)"


def bits(*runs: tuple[int, int]) -> list[int]:
    """``bits((1, 40), (0, 60))``: 40 correct examples, then 60 broken ones."""
    return [value for value, count in runs for _ in range(count)]


def attack(name: str, eps_str: str, correct: list[int] | None, variant: str = "default", norm: str = "linf",
           steps: int | None = 10, restarts: int | None = 1, random_start: bool = True,
           warnings: dict[str, int] | None = None) -> StoredAttack:
    numerator, _, denominator = eps_str.partition("/")
    eps = int(numerator) / int(denominator or 1)
    examples = None if correct is None else ExampleSet.from_ids(np.arange(len(correct)), np.array(correct, bool))
    return StoredAttack(name, "honest", variant, norm, eps, eps_str, steps, None if steps is None else eps / 4,
                        restarts, random_start, examples, warnings or {})


def facts(probabilities: bool = False, randomised: bool = False, zero_grad: int = 0, n: int = 100) -> ModelFacts:
    return ModelFacts(probabilities, randomised, ExampleSet.from_ids(np.arange(n), np.ones(n, bool)), zero_grad, n, 10)


def same(check: Check, name: str, passed: bool | None, reason: str, value: float | None = None, n: int | None = None,
         interval: tuple[float, float] | None = None, detail: dict[str, Any] | None = None) -> None:
    assert (check.name, check.passed, check.reason, check.n) == (name, passed, reason, n)
    assert check.value is None if value is None else check.value == pytest.approx(value, rel=1e-12)
    assert check.interval is None if interval is None else check.interval == pytest.approx(interval, rel=1e-12)
    assert check.detail == (detail or {})


def compared(a: str, b: str, u: int, comparisons: list[str]) -> dict[str, Any]:
    """The detail of a picked comparison."""
    return {"a": a, "b": b, "broken_only_by_a": u, "tolerance": 0.01, "comparisons": comparisons}


# ----------------------------------------------------------------------------- records

def test_a_check_row_carries_its_statistic_interval_count_and_detail() -> None:
    row = Check("seed", False, "why", 0.25, 8, (0.1, 0.5), {"a": 1}).row()
    assert row == MetricRow("check:seed", 0.25, 0.1, 0.5, 8, detail={"passed": False, "reason": "why", "a": 1})


def test_a_check_that_did_not_run_is_a_row_without_a_number() -> None:
    row = Check("transfer", None, "no transfer attack in the sweep").row()
    assert math.isnan(row.value)
    assert (row.metric, row.ci_low, row.ci_high, row.n, row.step, row.detail) == (
        "check:transfer", None, None, None, None, {"passed": None, "reason": "no transfer attack in the sweep"})


@pytest.mark.parametrize("probabilities, randomised", [(True, False), (False, True)])
def test_model_facts_survive_a_json_round_trip(probabilities: bool, randomised: bool) -> None:
    clean = ExampleSet.from_ids(np.array([0, 2, 5]), np.array([True, False, True]))
    back = ModelFacts.from_detail(json.loads(json.dumps(ModelFacts(probabilities, randomised, clean, 3, 5, 7)
                                                        .to_detail())))
    assert (back.probabilities, back.randomised, back.zero_grad, back.n, back.num_classes) == (
        probabilities, randomised, 3, 5, 7)
    assert back.clean.members.tolist() == [True, False, True, False, False, True]
    assert back.clean.correct.tolist() == [True, False, False, False, False, True]


# ----------------------------------------------------------------------------- model facts

def test_a_probability_model_that_is_randomised_without_eot_fails_all_three() -> None:
    logits, randomised, zero = model_checks(facts(True, True, zero_grad=5), [attack("pgd", "2/255", bits((1, 100)))])
    same(logits, "logits", False, "the model outputs probabilities, not logits: cross-entropy on them saturates "
         "and masks gradients")
    same(randomised, "randomised", False, "the model is randomised (two forward passes of one batch differ): "
         "single-sample gradients and accuracies vary; evaluate with AutoAttack version rand (EOT)")
    assert wilson(5, 100)[0] == pytest.approx(0.0215, abs=1e-4)  # > 1%: significant
    same(zero, "zero-gradients", False, "5/100 examples have an exactly zero input gradient: gradient attacks "
         "cannot move them", 0.05, 100, wilson(5, 100), {"tolerance": 0.01})


def test_a_randomised_model_evaluated_with_eot_passes() -> None:
    cells = [attack("pgd", "2/255", bits((1, 100))), attack("autoattack-rand", "2/255", bits((1, 100)), steps=None)]
    logits, randomised, zero = model_checks(facts(False, True, zero_grad=1), cells)
    same(logits, "logits", True, "the outputs are not probabilities")
    same(randomised, "randomised", True, "the model is randomised (two forward passes of one batch differ): "
         "evaluated with AutoAttack rand (EOT)")
    assert wilson(1, 100)[0] < 0.01
    same(zero, "zero-gradients", True, "1/100 examples have an exactly zero input gradient", 0.01, 100,
         wilson(1, 100), {"tolerance": 0.01})


def test_a_deterministic_model_and_the_zero_gradient_share_of_one_or_no_example() -> None:
    _, randomised, zero = model_checks(facts(zero_grad=1, n=1), [])
    same(randomised, "randomised", True, "the model is deterministic")
    assert wilson(1, 1)[0] == pytest.approx(0.2065, abs=1e-4)
    same(zero, "zero-gradients", False, "1/1 examples have an exactly zero input gradient: gradient attacks cannot "
         "move them", 1.0, 1, wilson(1, 1), {"tolerance": 0.01})
    zero = model_checks(facts(n=0), [])[2]
    assert (zero.passed, zero.reason, zero.value, zero.n) == (True, "0/0 examples have an exactly zero input "
                                                              "gradient", 0.0, 0)


# ----------------------------------------------------------------------------- one attack series

def test_monotone_eps_compares_neighbouring_eps_of_one_series_in_eps_order() -> None:
    cells = [attack("pgd", "8/255", bits((0, 40), (1, 20), (0, 40))), attack("pgd", "2/255", bits((1, 50), (0, 50))),
             attack("pgd", "4/255", bits((1, 40), (0, 60)))]
    # 2/255 -> 4/255: 4/255 keeps 0..39, all of which 2/255 kept too; 4/255 -> 8/255: 8/255 keeps 40..59,
    # which 4/255 broke
    first = f"{PGD2} breaks 0/100 examples (0.0%) that pgd 4/255 (10 steps, 1 restart) left correct"
    second = ("pgd 4/255 (10 steps, 1 restart) breaks 20/100 examples (20.0%) that pgd 8/255 (10 steps, 1 restart) "
              "left correct: accuracy does not fall monotonically with eps")
    same(monotone_check(cells), "monotone-eps", False, second, 0.2, 100, wilson(20, 100),
         compared("pgd 4/255 (10 steps, 1 restart)", "pgd 8/255 (10 steps, 1 restart)", 20, [first, second]))


def test_monotone_eps_leaves_out_probes_transfer_and_the_chance_probe() -> None:
    rising = [(attack(name, "2/255", bits((0, 100)), variant), attack(name, "8/255", bits((1, 100)), variant))
              for name, variant in (("pgd", "transfer-from=resnet"), ("noise", "default"),
                                    ("autoattack-custom:square", "default"))]
    chance = [attack("pgd", "1/4", bits((0, 100)), random_start=False),
              attack("pgd", "1/2", bits((1, 100)), random_start=False)]
    cells = [cell for pair in rising for cell in pair] + chance + [attack("pgd", "8/255", None)]
    same(monotone_check(cells), "monotone-eps", None, "needs one attack at two or more eps")


# ----------------------------------------------------------------------------- chance level

def test_chance_level_fails_when_the_whole_interval_lies_above_one_in_k() -> None:
    probe = attack("pgd", "1/2", bits((1, 60), (0, 40)), steps=20, random_start=False)
    assert wilson(60, 100)[0] == pytest.approx(0.502, abs=1e-3)  # above 1/3
    same(chance_check([probe], 3), "chance-level", False, "PGD at L-inf eps 1/2 (20 steps, no random start) leaves "
         "60.0% correct, chance is 33%: the gradients do not lead across the decision boundary", 0.6, 100,
         wilson(60, 100), {"eps": 0.5, "chance": 1 / 3})
    probe = attack("pgd", "1/2", bits((1, 30), (0, 70)), steps=20, random_start=False)
    same(chance_check([probe], 3), "chance-level", True, "PGD at L-inf eps 1/2 (20 steps, no random start) leaves "
         "30.0% correct, chance is 33%", 0.3, 100, wilson(30, 100), {"eps": 0.5, "chance": 1 / 3})


def test_chance_level_judges_the_probe_with_the_lowest_accuracy() -> None:
    # 6/20 = 30% against 10/100 = 10%: the lower accuracy, not the fewer correct examples
    probes = [attack("pgd", "1/2", bits((1, 6), (0, 14)), steps=20, random_start=False),
              attack("pgd", "1", bits((1, 10), (0, 90)), steps=20, random_start=False)]
    same(chance_check(probes, 10), "chance-level", True, "PGD at L-inf eps 1 (20 steps, no random start) leaves "
         "10.0% correct, chance is 10%", 0.1, 100, wilson(10, 100), {"eps": 1.0, "chance": 0.1})
    # 1/1 = 100% against 3/4 = 75%
    probes = [attack("pgd", "1/2", [1], random_start=False), attack("pgd", "1", [1, 1, 1, 0], random_start=False)]
    assert chance_check(probes, 3).reason.endswith("leaves 75.0% correct, chance is 33%")
    one = chance_check([attack("pgd", "1/2", [1], random_start=False)], 3)
    assert (one.reason, one.value) == ("PGD at L-inf eps 1/2 (10 steps, no random start) leaves 100.0% correct, "
                                       "chance is 33%", 1.0)


def test_chance_level_needs_a_pgd_probe_without_random_start_at_half() -> None:
    not_probes = [attack("pgd", "1/2", bits((1, 100))), attack("pgd", "1/4", bits((1, 100)), random_start=False),
                  attack("pgd", "1/2", bits((1, 100)), norm="l2", random_start=False),
                  attack("fgsm", "1/2", bits((1, 100)), random_start=False),
                  attack("pgd", "1/2", None, random_start=False)]
    same(chance_check(not_probes, 10), "chance-level", None, "needs the chance-level PGD probe (checks = true)")


# ----------------------------------------------------------------------------- pairs of attacks

def test_pgd_vs_fgsm_pairs_only_the_same_variant_eps_and_norm() -> None:
    cells = [attack("fgsm", "2/255", bits((0, 10), (1, 30), (0, 60)), steps=None),
             attack("pgd", "2/255", bits((1, 40), (0, 60))),
             # each of these would break examples PGD left correct if it were paired
             attack("fgsm", "4/255", bits((0, 100)), steps=None),
             attack("fgsm", "2/255", bits((0, 100)), norm="l2", steps=None),
             attack("fgsm", "2/255", bits((0, 100)), "rescaler-off", steps=None),
             attack("fgsm", "2/255", bits((0, 100)), "seed=1", steps=None),
             attack("pgd", "2/255", bits((1, 100)), "seed=1"),
             attack("fgsm", "1/2", bits((0, 100)), steps=None),
             attack("pgd", "1/2", bits((1, 100)), random_start=False)]
    reason = f"fgsm 2/255 breaks 10/100 examples (10.0%) that {PGD2} left correct: multi-step PGD does worse than " \
             "single-step FGSM"
    same(fgsm_check(cells), "pgd-vs-fgsm", False, reason, 0.1, 100, wilson(10, 100),
         compared("fgsm 2/255", PGD2, 10, [reason]))
    same(fgsm_check(cells[2:]), "pgd-vs-fgsm", None, "needs FGSM and PGD at the same eps")


def test_converged_compares_apgd_and_five_times_longer_pgd_with_each_pgd() -> None:
    what = "PGD has not converged (a stronger optimiser finds what it misses)"
    weak = attack("pgd", "2/255", bits((1, 40), (0, 60)))
    longer = attack("pgd", "2/255", bits((1, 35), (0, 65)), restarts=5)  # 10 x 5 = 5 x (10 x 1)
    apgd = attack("autoattack-custom:apgd-ce", "2/255", bits((1, 30), (0, 70)), steps=None, restarts=None)
    twice = attack("pgd", "2/255", bits((1, 40), (0, 60)), steps=20, restarts=2)  # 40: no probe of weak
    others = [attack("autoattack-custom:apgd-ce", "4/255", bits((0, 100)), steps=None, restarts=None),
              attack("autoattack-custom:apgd-ce", "2/255", bits((0, 100)), norm="l2", steps=None, restarts=None),
              attack("pgd", "2/255", bits((0, 100)), "rescaler-off", steps=100),
              attack("pgd", "2/255", bits((1, 100)), "seed=1"),
              attack("pgd", "1/2", bits((1, 100)), random_start=False)]
    apgd_label, longer_label = "autoattack-custom:apgd-ce 2/255", "pgd 2/255 (10 steps, 5 restarts)"
    comparisons = [f"{longer_label} breaks 5/100 examples (5.0%) that {PGD2} left correct: {what}",  # 35..39
                   f"{apgd_label} breaks 10/100 examples (10.0%) that {PGD2} left correct: {what}",  # 30..39
                   f"{apgd_label} breaks 5/100 examples (5.0%) that {longer_label} left correct: {what}",
                   f"{apgd_label} breaks 10/100 examples (10.0%) that pgd 2/255 (20 steps, 2 restarts) left correct: "
                   f"{what}"]
    # two comparisons share the largest share; the first listed is reported
    same(converged_check([weak, longer, apgd, twice, *others]), "converged", False, comparisons[1], 0.1, 100,
         wilson(10, 100), compared(apgd_label, PGD2, 10, comparisons))
    same(converged_check([weak, twice, *others[2:]]), "converged", None,
         "needs AutoAttack/APGD or a 5x longer PGD beside a PGD cell")


def test_a_second_seed_is_compared_both_ways_with_its_first_run_only() -> None:
    what = "another seed of the same attack breaks more: run more restarts"
    first = attack("pgd", "2/255", bits((1, 40), (0, 60)))
    again = attack("pgd", "2/255", bits((1, 30), (0, 10), (1, 5), (0, 55)), "seed=1")
    others = [attack("fgsm", "2/255", bits((0, 100)), steps=None), attack("pgd", "4/255", bits((0, 100))),
              attack("pgd", "2/255", bits((0, 100)), norm="l2"), attack("pgd", "2/255", bits((0, 100)), "rescaler-off")]
    again_label = f"{PGD2} [seed=1]"
    comparisons = [f"{again_label} breaks 10/100 examples (10.0%) that {PGD2} left correct: {what}",  # 30..39
                   f"{PGD2} breaks 5/100 examples (5.0%) that {again_label} left correct: {what}"]  # 40..44
    same(seed_check([first, again, *others]), "seed", False, comparisons[0], 0.1, 100, wilson(10, 100),
         compared(again_label, PGD2, 10, comparisons))
    same(seed_check([first, *others]), "seed", None, "needs a second seed of an attack (checks = true)")
    # the other way round: the first run breaks 10 (30..39) that the second seed left correct
    swapped = seed_check([attack("pgd", "2/255", bits((1, 30), (0, 70))), attack("pgd", "2/255", bits((1, 40), (0, 60)),
                                                                                  "seed=1")])
    assert (swapped.name, swapped.reason) == ("seed", f"{PGD2} breaks 10/100 examples (10.0%) that {again_label} left "
                                                      f"correct: {what}")


# ----------------------------------------------------------------------------- probes vs the white-box attacks

def _white_box() -> list[StoredAttack]:
    """At 2/255 the white-box worst case keeps examples 0..39 (PGD's); a transfer attack that
    breaks everything is not white-box and must not shrink it."""
    return [attack("pgd", "2/255", bits((1, 40), (0, 60))), attack("fgsm", "2/255", bits((1, 50), (0, 50)), steps=None),
            attack("pgd", "2/255", bits((0, 100)), "transfer-from=resnet"),
            attack("pgd", "2/255", bits((1, 40), (0, 60)), norm="l2")]


def test_square_and_noise_are_each_compared_with_the_white_box_worst_case_at_their_eps() -> None:
    square = attack("autoattack-custom:square", "2/255", bits((1, 25), (0, 75)), steps=1000)  # breaks 25..39
    noise = attack("noise", "2/255", bits((1, 30), (0, 70)))  # breaks 30..39
    alone = [attack("autoattack-custom:square", "4/255", bits((0, 100))), attack("noise", "4/255", bits((0, 100)))]
    cells = [*_white_box(), square, noise, *alone]
    reason = ("Square (gradient-free) 2/255 breaks 15/100 examples (15.0%) that the white-box attacks left correct: "
              "a black-box attack beats the white-box attacks (gradient masking)")
    same(probe_check("square", cells, "Square (gradient-free)", "a black-box attack beats the white-box attacks "
                     "(gradient masking)"), "square", False, reason, 0.15, 100, wilson(15, 100),
         compared("Square (gradient-free) 2/255", "the white-box attacks", 15, [reason]))
    reason = ("random noise 2/255 breaks 10/100 examples (10.0%) that the white-box attacks left correct: random "
              "noise beats the white-box attacks (gradient masking)")
    same(probe_check("noise", cells, "random noise", "random noise beats the white-box attacks (gradient masking)"),
         "noise", False, reason, 0.1, 100, wilson(10, 100),
         compared("random noise 2/255", "the white-box attacks", 10, [reason]))
    same(probe_check("noise", alone + _white_box(), "random noise", "x"), "noise", None,
         "needs the noise probe and white-box results (checks = true)")


def test_transfer_is_compared_with_the_white_box_worst_case() -> None:
    transfer = attack("pgd", "2/255", bits((0, 20), (1, 20), (0, 60)), "transfer-from=resnet")  # breaks 0..19
    label = f"{PGD2} [transfer-from=resnet]"
    reason = (f"{label} breaks 20/100 examples (20.0%) that the white-box attacks left correct: a transfer attack "
              "beats the white-box attacks (gradient masking)")
    cells = [*_white_box()[:2], transfer, attack("pgd", "4/255", bits((0, 100)), "transfer-from=resnet")]
    same(transfer_check(cells), "transfer", False, reason, 0.2, 100, wilson(20, 100),
         compared(label, "the white-box attacks", 20, [reason]))
    same(transfer_check(_white_box()[:2]), "transfer", None, "no transfer attack in the sweep")


def test_adaptive_variants_are_compared_with_the_default_attacks_only() -> None:
    adaptive = attack("pgd", "2/255", bits((0, 30), (1, 10), (0, 60)), "rescaler-off")  # breaks 0..29
    label = f"{PGD2} [rescaler-off]"
    reason = (f"{label} breaks 30/100 examples (30.0%) that the default attacks left correct: the default attacks "
              "are masked; report the adaptive attack")
    cells = [*_white_box(), adaptive, attack("pgd", "2/255", bits((0, 100)), "seed=1"),
             attack("pgd", "4/255", bits((0, 100)), "all-glimpses")]
    same(adaptive_check(cells), "adaptive", False, reason, 0.3, 100, wilson(30, 100),
         compared(label, "the default attacks", 30, [reason]))
    both = attack("pgd", "2/255", bits((0, 35), (1, 5), (0, 60)), "all-glimpses+rescaler-off")  # breaks 0..34
    assert adaptive_check([*_white_box(), both]).reason.startswith(f"{PGD2} [all-glimpses+rescaler-off] breaks 35/100")
    same(adaptive_check(_white_box()), "adaptive", None, "no adaptive variant in the sweep")


def test_autoattack_flags_list_every_warning_of_its_cells() -> None:
    pgd = attack("pgd", "2/255", bits((1, 10)), warnings={"not AutoAttack's": 1})
    same(autoattack_flags([pgd]), "autoattack-flags", None, "no AutoAttack in the sweep")
    quiet = attack("autoattack-standard", "2/255", bits((1, 10)), steps=None)
    same(autoattack_flags([quiet]), "autoattack-flags", True, "AutoAttack's checks raised nothing", 0.0,
         detail={"warnings": {}})
    loud = [quiet, attack("autoattack-standard", "4/255", bits((1, 10)), steps=None, warnings={"a": 1}),
            attack("autoattack-rand", "4/255", bits((1, 10)), steps=None, warnings={"b": 2})]
    same(autoattack_flags(loud), "autoattack-flags", False, "AutoAttack's checks: a | b", 2.0,
         detail={"warnings": {"a": 1, "b": 2}})


def test_a_comparison_counts_only_the_examples_both_evaluated() -> None:
    a = ExampleSet.from_ids(np.array([0, 1, 2]), np.array([False, False, True]))
    b = ExampleSet.from_ids(np.array([2, 3]), np.array([True, True]))
    # shared: example 2 only, which A leaves correct
    same(compare("x", a, b, "A", "B", "why"), "x", True, "A breaks 0/1 examples (0.0%) that B left correct", 0.0, 1,
         wilson(0, 1), {"a": "A", "b": "B", "broken_only_by_a": 0, "tolerance": 0.01})
    c = ExampleSet.from_ids(np.array([4, 5]), np.array([True, True]))
    same(compare("x", a, c, "A", "C", "why"), "x", None, "A and C share no examples")


def test_worst_of_reports_the_largest_failure_else_the_largest_pass() -> None:
    small, large = Check("x", True, "small", 0.01, 100), Check("x", True, "large", 0.02, 100, detail={"k": 1})
    failing = Check("x", False, "failing", 0.015, 100)
    same(worst_of([small, large, Check("x", None, "not run")], "x", "none"), "x", True, "large", 0.02, 100,
         detail={"k": 1, "comparisons": ["small", "large"]})
    same(worst_of([small, failing, large], "x", "none"), "x", False, "failing", 0.015, 100,
         detail={"comparisons": ["small", "failing", "large"]})
    same(worst_of([Check("x", None, "not run")], "x", "none"), "x", None, "none")
    zero = Check("x", True, "zero", 0.0, 100)
    same(worst_of([zero, small], "x", "none"), "x", True, "small", 0.01, 100, detail={"comparisons": ["zero", "small"]})


def test_the_verdict_runs_every_check_in_a_fixed_order() -> None:
    probes = [attack("autoattack-custom:square", "2/255", bits((1, 25), (0, 75)), steps=1000),
              attack("noise", "2/255", bits((1, 30), (0, 70)))]
    checks = verdict_checks([*_white_box(), *probes], facts())
    assert [c.name for c in checks] == [
        "logits", "randomised", "zero-gradients", "monotone-eps", "chance-level", "pgd-vs-fgsm", "converged", "seed",
        "square", "noise", "transfer", "adaptive", "autoattack-flags"]
    assert checks[8].reason == ("Square (gradient-free) 2/255 breaks 15/100 examples (15.0%) that the white-box "
                                "attacks left correct: a black-box attack beats the white-box attacks (gradient "
                                "masking)")
    assert checks[9].reason == ("random noise 2/255 breaks 10/100 examples (10.0%) that the white-box attacks left "
                                "correct: random noise beats the white-box attacks (gradient masking)")
