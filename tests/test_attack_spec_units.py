"""What an attack table expands to and what each attack records about itself, written out by
hand: the stored hyperparameters of every attack kind (the results' account of how a number was
obtained), the verdict's probe attacks (which attack gets the second seed), the models an attack
can target, and the variant grammar."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn as nn
from attack_support import Judge

from mgbench.attacks.eps import parse_eps, parse_eps_list, parse_number
from mgbench.attacks.protocols import normalize_layer
from mgbench.attacks.spec import check_attack_target, make_spec, plan_table
from mgbench.attacks.variants import aimed_at, loss_for, parse_variant, rescaler_switch, without_seed
from mgbench.errors import InputError
from mgbench.models.anytime import StepOutputs
from mgbench.models.layers import Normalize

EPS = parse_eps("4/255")
GRADIENT = {"units": "pixels of [0, 1] images", "clip_to_unit_range": True,
            "implementation": "mgbench.attacks.gradient"}
AUTOATTACK = {"units": "pixels of [0, 1] images", "clip_to_unit_range": True,
              "implementation": "pyautoattack (official AutoAttack code), cascade driven by mgbench"}


def stored(attack: str, variant: str = "default", protocol: str = "honest", steps: int | None = None,
           step_size: float | None = None, restarts: int | None = None, random_start: int | None = None) -> dict:
    """The condition columns of an L-inf 4/255 attack."""
    return {"threat": "linf", "attack": attack, "protocol": protocol, "variant": variant, "norm": "linf",
            "eps": 4 / 255, "eps_str": "4/255", "steps": steps, "step_size": step_size, "restarts": restarts,
            "random_start": random_start}


@pytest.mark.parametrize("args, options, expected", [
    (("pgd",), {}, {
        **stored("pgd", steps=100, step_size=1 / 255, restarts=2, random_start=1), **GRADIENT,
        "loss": "cross-entropy of the final logits", "keep": "first-success"}),
    (("pgd",), dict(loss="margin", variants=("all-glimpses", "rescaler-off")), {
        **stored("pgd-margin", "all-glimpses+rescaler-off", steps=100, step_size=1 / 255, restarts=2,
                 random_start=1), **GRADIENT,
        "loss": "mean margin max_{j!=y} z_j - z_y over all anytime steps", "keep": "first-success"}),
    (("pgd",), dict(transfer_from="resnet-tiny", steps=7, restarts=3, random_start=False), {
        **stored("pgd", "transfer-from=resnet-tiny", steps=7, step_size=1 / 255, restarts=3, random_start=0),
        **GRADIENT, "loss": "cross-entropy of the final logits", "keep": "last"}),
    (("pgd",), dict(protocol="mgnet-paper"), {
        **stored("pgd", protocol="mgnet-paper", steps=10, step_size=1 / 255, restarts=1, random_start=0), **GRADIENT,
        "units": "normalised tensor (x - mean) / std; pixel budget = eps * std per channel",
        "clip_to_unit_range": False, "loss": "cross-entropy of the final logits", "keep": "last"}),
    (("fgsm",), dict(steps=50, random_start=True), {
        **stored("fgsm", steps=1, step_size=4 / 255, restarts=1, random_start=0), **GRADIENT,
        "loss": "cross-entropy of the final logits", "keep": "first-success"}),
    (("noise",), {}, {
        **stored("noise", steps=10, restarts=1, random_start=1), "units": "pixels of [0, 1] images",
        "clip_to_unit_range": True, "draws": 10, "implementation": "mgbench.attacks.noise"}),
    (("autoattack",), dict(steps=5), {
        **stored("autoattack-standard"), **AUTOATTACK, "version": "standard", "aa_attacks": None,
        "square_queries": None}),
    (("square",), dict(square_queries=300), {
        **stored("autoattack-custom:square", steps=300), **AUTOATTACK, "version": "custom", "aa_attacks": ["square"],
        "square_queries": 300}),
    (("apgd",), dict(square_queries=300), {
        **stored("autoattack-custom:apgd-ce+apgd-t"), **AUTOATTACK, "version": "custom",
        "aa_attacks": ["apgd-ce", "apgd-t"], "square_queries": None}),
], ids=["pgd", "pgd-margin-adaptive", "transfer", "mgnet-paper", "fgsm", "noise", "autoattack", "square", "apgd"])
def test_each_attack_records_how_it_was_run(args: tuple[str], options: dict[str, Any], expected: dict[str, Any]
                                            ) -> None:
    spec = make_spec(*args, "linf", EPS, **options)
    assert spec.hyperparameters() == expected  # 4/255 * 0.25 is 1/255 exactly (a power-of-two scaling)


def plan(table: dict[str, Any]) -> list[tuple[str, bool, bool]]:
    """(label, optional, probe) of each planned attack."""
    return [(p.spec.label, p.optional, p.probe) for p in plan_table({"type": "attack", **table})]


def test_probes_at_every_eps_second_seed_of_the_strongest_and_one_chance_probe() -> None:
    planned = plan_table({"type": "attack", "attack": ["pgd", "autoattack", "fgsm"], "eps": "1/255,4/255",
                          "square_queries": 300})
    expected = []
    for attack in ("pgd", "autoattack", "fgsm"):  # the table's order: attack, eps, variant, then loss
        for eps in ("1/255", "4/255"):
            for variant in ("", " (rescaler-off)"):
                names = ["pgd", "pgd-margin"] if attack == "pgd" else \
                    ["autoattack-standard"] if attack == "autoattack" else ["fgsm"]
                expected += [(f"{name} linf {eps}{variant}", bool(variant), False) for name in names]
    assert len(expected) == 16
    for eps in ("1/255", "4/255"):
        expected += [(f"noise linf {eps}", False, True), (f"autoattack-custom:square linf {eps}", False, True),
                     (f"autoattack-standard linf {eps} (seed=1)", False, True)]
    expected.append(("pgd linf 1/2", False, True))
    assert [(p.spec.label, p.optional, p.probe) for p in planned] == expected
    square = [p.spec for p in planned if p.spec.name == "autoattack-custom:square"]
    assert [s.steps for s in square] == [300, 300]
    chance = planned[-1].spec.key()
    # Madry's 2.5 eps / steps: 2.5 * 0.5 / 20
    assert (chance["steps"], chance["step_size"], chance["restarts"], chance["random_start"]) == (20, 0.0625, 1, 0)
    assert planned[-1].spec.eps.text == "1/2"


@pytest.mark.parametrize("table, seeded", [
    ({"attack": ["pgd", "apgd"]}, "autoattack-custom:apgd-ce+apgd-t"),
    ({"attack": ["apgd", "autoattack"]}, "autoattack-standard"),
    ({"attack": ["autoattack", "apgd"], "version": "custom", "aa_attacks": ["apgd-dlr"]},
     "autoattack-custom:apgd-ce+apgd-t"),
    ({"attack": ["pgd", "autoattack"], "version": "custom", "aa_attacks": ["apgd-dlr"]}, "autoattack-custom:apgd-dlr"),
    ({"attack": "pgd", "loss": ["margin", "ce"]}, "pgd"),
    ({"attack": "fgsm"}, None),
    ({"attack": "pgd", "variant": "rescaler-off"}, None),
], ids=["apgd-over-pgd", "standard-over-apgd", "apgd-over-custom", "custom-over-pgd", "ce-over-margin", "not-fgsm",
        "not-a-variant"])
def test_the_second_seed_goes_to_the_strongest_default_attack(table: dict[str, Any], seeded: str | None) -> None:
    probes = [label for label, _, probe in plan({"eps": "4/255", "variant": "default", **table}) if probe]
    expected = ["noise linf 4/255", "autoattack-custom:square linf 4/255"]
    if seeded:
        expected.append(f"{seeded} linf 4/255 (seed=1)")
    assert probes == [*expected, "pgd linf 1/2"]


@pytest.mark.parametrize("table, expected", [
    ({"protocol": "mgnet-paper"}, ["pgd linf 4/255 [mgnet-paper]"]),
    ({"transfer_from": "resnet-tiny"}, ["pgd linf 4/255 (transfer-from=resnet-tiny)",
                                        "pgd-margin linf 4/255 (transfer-from=resnet-tiny)"]),
])
def test_no_probes_without_an_honest_white_box_attack(table: dict[str, Any], expected: list[str]) -> None:
    assert plan({"attack": "pgd", "eps": "4/255", **table}) == [(label, False, False) for label in expected]


@pytest.mark.parametrize("table, expected", [
    ({"variant": "all-glimpses"}, ["fgsm linf 4/255 (all-glimpses)", "pgd linf 4/255 (all-glimpses)",
                                   "pgd-margin linf 4/255 (all-glimpses)"]),
    ({"protocol": "mgnet-paper"}, ["fgsm linf 4/255 [mgnet-paper]", "pgd linf 4/255 [mgnet-paper]"]),
    ({"transfer_from": "x"}, ["fgsm linf 4/255 (transfer-from=x)", "pgd linf 4/255 (transfer-from=x)",
                              "pgd-margin linf 4/255 (transfer-from=x)"]),
    ({"variant": "rescaler-off"}, ["fgsm linf 4/255 (rescaler-off)", "pgd linf 4/255 (rescaler-off)",
                                   "pgd-margin linf 4/255 (rescaler-off)",
                                   "autoattack-custom:apgd-ce+apgd-t linf 4/255 (rescaler-off)"]),
])
def test_all_leaves_out_apgd_where_it_cannot_run(table: dict[str, Any], expected: list[str]) -> None:
    assert [label for label, _, _ in plan({"attack": "all", "eps": "4/255", "checks": False, **table})] == expected


# ----------------------------------------------------------------------------- which models an attack can target

class Anytime(nn.Module):
    """Three anytime steps; step t's logits are (t + 1) x the first two pixels. Records the
    number of steps each call asked for."""

    num_steps = 3

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int | None] = []

    def forward_steps(self, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
        self.asked.append(steps)
        return StepOutputs(torch.stack([x.flatten(1)[:, :2] * (t + 1) for t in range(steps or self.num_steps)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2] * self.num_steps


def test_the_attack_loss_is_the_variants_and_the_tables() -> None:
    """Logits (t + 1) * (a, b) after step t; label 0: CE = log(1 + e^(m(b - a))), margin = m(b - a)."""
    x, y = torch.tensor([[[[1.0, 3.0], [0.0, 0.0]]], [[[2.0, 0.0], [0.0, 0.0]]]]), torch.tensor([0, 0])
    gap = torch.tensor([2.0, -2.0])  # b - a per image
    loss, fooled = loss_for((), "ce")(Anytime(), x, y)
    assert torch.allclose(loss, torch.log1p(torch.exp(3 * gap))) and fooled.tolist() == [True, False]
    loss, fooled = loss_for(("all-glimpses", "rescaler-off"), "margin")(Anytime(), x, y)
    assert torch.allclose(loss, torch.stack([m * gap for m in (1, 2, 3)]).mean(dim=0))
    assert fooled.tolist() == [True, False]  # judged on the final prediction
    loss, _ = loss_for(("rescaler-off",), "margin")(Anytime(), x, y)
    assert torch.allclose(loss, 3 * gap)


def test_a_glimpse_variant_attacks_that_steps_logits_running_only_that_many_steps() -> None:
    model, x = Anytime(), torch.arange(8.0).view(2, 1, 2, 2)
    assert aimed_at(model, ("rescaler-off", "seed=1")) is model
    aimed = aimed_at(model, ("glimpse=2",))
    assert torch.equal(aimed(x), torch.tensor([[0.0, 2.0], [8.0, 10.0]]))
    assert model.asked == [2] and not aimed.training


def test_attack_targets_are_checked_with_one_line_errors() -> None:
    bare = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    check_attack_target(make_spec("pgd", "linf", EPS), bare, "bare")  # nothing asked of the model
    with pytest.raises(InputError) as error:
        check_attack_target(make_spec("pgd", "linf", EPS, variants=("rescaler-off",)), bare, "bare")
    assert str(error.value) == ("attack variant rescaler-off needs a model with a gradient_rescaler(enabled) context "
                                "manager (MGNet); bare has none: drop the variant for this model")
    with pytest.raises(InputError, match=r"\(MGNet\); Sequential has none"):
        rescaler_switch(bare)
    check_attack_target(make_spec("pgd", "linf", EPS, variants=("glimpse=3",)), Anytime(), "anytime")
    with pytest.raises(InputError) as error:
        check_attack_target(make_spec("pgd", "linf", EPS, variants=("glimpse=4",)), Anytime(), "anytime")
    assert str(error.value) == ("attack variant glimpse=4 needs a model with at least 4 anytime steps; anytime has 3: "
                                "drop the variant for this model")
    paper = make_spec("pgd", "linf", EPS, protocol="mgnet-paper")
    with pytest.raises(InputError) as error:
        check_attack_target(paper, bare, "bare")
    assert str(error.value) == ("protocol mgnet-paper measures eps in normalised units, but bare has no "
                                "mgbench.models.layers.Normalize layer to read the std from: use protocol honest")
    check_attack_target(paper, nn.Sequential(Normalize([0.5], [0.25]), bare), "normalised")
    with pytest.raises(InputError, match="^protocol mgnet-paper measures eps in normalised units, but Sequential "):
        normalize_layer(bare)


# ----------------------------------------------------------------------------- the variant grammar

HELP = "use default, rescaler-off, all-glimpses, glimpse=T or seed=N (join with +)"


@pytest.mark.parametrize("raw, message", [
    (3, f"variant 3 must be a string: {HELP}"),
    ("transfer-from=x", "variant 'transfer-from=x': name the source model with transfer_from / --transfer-from "
                        "instead"),
    ("glimpse", f"unknown attack variant 'glimpse': {HELP}"),
    ("foo=3", f"unknown attack variant 'foo=3': {HELP}"),
    ("glimpse=2=3", "attack variant 'glimpse=2=3': glimpse needs a whole number >= 1, e.g. glimpse=2"),
    ("seed=0", "attack variant 'seed=0': seed needs a whole number >= 1, e.g. seed=2"),
    ("rescaler-off+seed=1+seed=2", f"attack variant 'rescaler-off+seed=1+seed=2' names seed twice: {HELP}"),
    ("all-glimpses+glimpse=2", "attack variant 'all-glimpses+glimpse=2': all-glimpses and glimpse=T exclude each "
                               "other"),
])
def test_bad_variants_are_named(raw: Any, message: str) -> None:
    with pytest.raises(InputError) as error:
        parse_variant(raw)
    assert str(error.value) == message


def test_variants_parse_sorted_and_seeds_strip_back_to_the_run_they_repeat() -> None:
    assert parse_variant("") == parse_variant(" default ") == parse_variant(None) == ()
    assert parse_variant("seed=2 + rescaler-off") == ("rescaler-off", "seed=2")
    assert without_seed("seed=1") == "default"
    assert without_seed("all-glimpses+rescaler-off+seed=3") == "all-glimpses+rescaler-off"
    assert without_seed("transfer-from=x+seed=1") == "transfer-from=x"


# ----------------------------------------------------------------------------- running an attack

def test_noise_and_apgd_run_under_the_honest_protocol_only() -> None:
    for attack in ("noise", "apgd", "square"):
        with pytest.raises(InputError) as error:
            make_spec(attack, "linf", EPS, protocol="mgnet-paper")
        assert str(error.value).endswith(f"[mgnet-paper]: {attack} runs under the honest protocol only")


def test_noise_runs_its_ten_draws_at_the_specs_budget() -> None:
    x, y = torch.full((4, 1, 2, 2), 0.5), torch.zeros(4, dtype=torch.long)
    spec = make_spec("noise", "linf", parse_eps("1/10"))
    stubborn, pushover = Judge(2.0), Judge(-1.0)
    out = spec.run(stubborn, x, y).x_adv
    assert stubborn.sizes == [4] * 10 and torch.allclose((out - x).abs(), torch.full_like(x, 0.1))
    spec.run(pushover, x, y)
    assert pushover.sizes == [4]
    out = make_spec("noise", "l2", parse_eps("1/10")).run(stubborn, x, y).x_adv
    assert torch.allclose((out - x).flatten(1).norm(dim=1), torch.full((4,), 0.1))


@pytest.mark.parametrize("attack, options, attacks, queries", [
    ("square", {"square_queries": 300}, ("square",), 300),
    ("apgd", {}, ("apgd-ce", "apgd-t"), None),
    ("autoattack", {"version": "rand"}, (), None),
])
def test_autoattack_gets_the_specs_settings(monkeypatch: pytest.MonkeyPatch, attack: str, options: dict[str, Any],
                                             attacks: tuple[str, ...], queries: int | None) -> None:
    calls = []

    def spy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> Any:
        calls.append((model, kwargs))
        assert torch.equal(y, torch.zeros(2, dtype=torch.long))
        return SimpleNamespace(x_adv=x + 1)

    monkeypatch.setattr("mgbench.attacks.kinds.autoattack.run_autoattack", spy)
    model, x = nn.Linear(4, 2), torch.zeros(2, 4)
    out = make_spec(attack, "l2", parse_eps("1/2"), **options).run(model, x, torch.zeros(2, dtype=torch.long), seed=7)
    version = options.get("version", "custom")
    assert calls == [(model, {"norm": "l2", "eps": 0.5, "version": version, "attacks": attacks, "seed": 7,
                              "square_queries": queries})]
    assert torch.equal(out.x_adv, x + 1) and out.cascade is not None


@pytest.mark.parametrize("options, expected", [
    ({}, {"norm": "linf", "eps": 4 / 255, "steps": 100, "step_size": 1 / 255, "restarts": 2, "random_start": True,
          "clip": True, "keep": "first-success"}),
    ({"loss": "margin", "steps": 7, "restarts": 3, "random_start": False, "variants": ("all-glimpses",)},
     {"norm": "linf", "eps": 4 / 255, "steps": 7, "step_size": 1 / 255, "restarts": 3, "random_start": False,
      "clip": True, "keep": "first-success"}),
    ({"transfer_from": "src"}, {"norm": "linf", "eps": 4 / 255, "steps": 100, "step_size": 1 / 255, "restarts": 2,
                                "random_start": True, "clip": True, "keep": "last"}),
])
def test_pgd_gets_the_specs_settings_and_loss(monkeypatch: pytest.MonkeyPatch, options: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    calls = []
    monkeypatch.setattr("mgbench.attacks.kinds._gradient.pgd", lambda model, x, y, **kwargs: calls.append(kwargs) or x)
    spec = make_spec("pgd", "linf", EPS, **options)
    x, y = torch.tensor([[[[1.0, 3.0], [0.0, 0.0]]], [[[2.0, 0.0], [0.0, 0.0]]]]), torch.tensor([0, 0])
    model = Anytime()
    spec.run(model, x, y, source=model)
    (kwargs,) = calls
    loss = kwargs.pop("loss")
    assert kwargs == expected
    gap = torch.tensor([2.0, -2.0])
    by_hand = torch.stack([m * gap for m in (1, 2, 3)]).mean(dim=0) if options.get("loss") == "margin" else \
        torch.log1p(torch.exp(3 * gap))
    assert torch.allclose(loss(Anytime(), x, y)[0], by_hand)


def test_a_glimpse_variant_of_autoattack_attacks_that_steps_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    aimed = []
    monkeypatch.setattr("mgbench.attacks.kinds.autoattack.run_autoattack",
                        lambda model, x, y, **_: aimed.append(model) or SimpleNamespace(x_adv=x))
    model = Anytime()
    make_spec("autoattack", "linf", EPS, variants=("glimpse=2",)).run(model, torch.zeros(1, 1, 2, 2),
                                                                     torch.zeros(1, dtype=torch.long))
    assert aimed[0](torch.ones(1, 1, 2, 2)).tolist() == [[2.0, 2.0]] and model.asked == [2]


def test_a_transfer_attack_takes_its_gradients_from_the_source() -> None:
    torch.manual_seed(0)
    target, source = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    spec = make_spec("fgsm", "linf", parse_eps("1/10"), transfer_from="src")
    with pytest.raises(InputError) as error:
        spec.run(target, x, y)
    assert str(error.value) == "fgsm linf 1/10 (transfer-from=src): the transfer source model is not loaded"
    crafted = spec.run(target, x, y, source=source).x_adv

    def fgsm(model: nn.Module) -> torch.Tensor:
        """One signed-gradient step of the cross-entropy, kept whether it fools or not."""
        start = x.clone().requires_grad_(True)
        nn.functional.cross_entropy(model(start), y).backward()
        return (x + 0.1 * start.grad.sign()).clamp(0, 1)

    assert torch.allclose(crafted, fgsm(source), atol=1e-7)
    assert not torch.allclose(crafted, fgsm(target), atol=1e-3)


# ----------------------------------------------------------------------------- tables: errors and settings

KEYS = ("attack, eps, norm, steps, step_size, restarts, random_start, protocol, variant, version, aa_attacks, "
        "transfer_from, limit, checks, square_queries, loss, per_step")
AA = "apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square"


@pytest.mark.parametrize("table, message", [
    ({"eps": "4/255", "bogus": 1}, f"attack table has unknown key(s) bogus: use {KEYS}"),
    ({}, 'attack table: eps is missing: add eps = "4/255" (or a list)'),
    ({"eps": "4/255", "checks": "yes"}, "attack table: checks must be true or false, not 'yes'"),
    ({"eps": "4/255", "per_step": 1}, "attack table: per_step must be true or false, not 1"),
    *[({"eps": "4/255", key: value}, f"attack table: {key} is empty") for key, value in (
        ("attack", ""), ("norm", " , "), ("protocol", []), ("transfer_from", ""), ("steps", []), ("restarts", []),
        ("aa_attacks", ","), ("variant", ""), ("loss", []))],
    ({"eps": "4/255", "aa_attacks": ["cw"]}, f"unknown AutoAttack attack 'cw': use some of {AA}"),
    ({"eps": "4/255", "attack": "cw"}, "unknown attack 'cw': use fgsm, pgd, apgd, autoattack, noise, square or all"),
    ({"eps": "4/255", "attack": "pgd", "loss": "l1"}, "unknown loss 'l1': use ce or margin"),
    ({"eps": "4/255", "norm": "l1"}, "unknown norm 'l1': use linf or l2"),
    ({"eps": "4/255", "protocol": "paper"}, "unknown protocol 'paper': use honest or mgnet-paper"),
    ({"eps": "3/2"}, "L-inf eps 3/2 is above 1, which allows any image: use eps <= 1"),
    ({"eps": "4/255", "steps": 0}, "steps must be a positive whole number, not 0"),
    ({"eps": "4/255", "restarts": True}, "restarts must be a positive whole number, not True"),
    ({"eps": "4/255", "random_start": "yes"}, "random_start must be true or false, not 'yes'"),
    ({"eps": "4/255", "step_size": "0"}, "step_size '0' must be positive: write a fraction like 4/255 or a decimal "
                                         "like 0.0157"),
    ({"eps": "4/255", "attack": "noise", "variant": "rescaler-off"},
     "noise linf 4/255 (rescaler-off): noise uses no gradient, so variants and transfer sources do not apply"),
    ({"eps": "4/255", "attack": "square", "transfer_from": "x"},
     "square linf 4/255 (transfer-from=x): square uses no gradient, so variants and transfer sources do not apply"),
    ({"eps": "4/255", "attack": "autoattack", "transfer_from": "x"},
     "autoattack-standard linf 4/255 (transfer-from=x): transfer attacks use fgsm or pgd on the source, not "
     "autoattack"),
    ({"eps": "4/255", "attack": "apgd", "transfer_from": "x"},
     "autoattack-custom:apgd-ce+apgd-t linf 4/255 (transfer-from=x): transfer attacks use fgsm or pgd on the source, "
     "not autoattack"),
    ({"eps": "4/255", "attack": "apgd", "variant": "all-glimpses"},
     "autoattack-custom:apgd-ce+apgd-t linf 4/255 (all-glimpses): AutoAttack uses its own losses; all-glimpses "
     "applies to fgsm and pgd"),
    ({"eps": "4/255", "attack": "autoattack", "version": "custom", "aa_attacks": "apgd-ce", "transfer_from": "x"},
     "autoattack-custom:apgd-ce linf 4/255 (transfer-from=x): transfer attacks use fgsm or pgd on the source, not "
     "autoattack"),
    ({"eps": "4/255", "attack": "autoattack", "variant": "all-glimpses"},
     "autoattack-standard linf 4/255 (all-glimpses): AutoAttack uses its own losses; all-glimpses applies to fgsm "
     "and pgd"),
    *[({"eps": "4/255", "attack": attack, "protocol": "mgnet-paper", **extra},
       f"{label} linf 4/255 [mgnet-paper]{variant}: {why}: use protocol honest for that")
      for attack, label, extra, variant, why in (
          ("autoattack", "autoattack-standard", {}, "", "the paper ran no AutoAttack"),
          ("pgd", "pgd-margin", {"loss": "margin"}, "", "the paper's attack uses the cross-entropy"),
          ("pgd", "pgd", {"norm": "l2"}, "", "the paper's attack is L-inf only"),
          ("fgsm", "fgsm", {"variant": "rescaler-off"}, " (rescaler-off)", "the paper's attack has no variants"),
          ("pgd", "pgd", {"transfer_from": "x"}, " (transfer-from=x)", "the paper's attack has no variants"),
          ("pgd", "pgd", {"random_start": True}, "", "the paper's attack has no random start"),
          ("pgd", "pgd", {"restarts": 2}, "", "the paper's attack has no restarts"))],
])
def test_bad_tables_name_the_problem(table: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as error:
        plan_table({"type": "attack", **table})
    assert str(error.value).replace("l2 4/255", "linf 4/255") == message


def test_a_tables_settings_reach_every_spec() -> None:
    specs = [p.spec for p in plan_table({"type": "attack", "attack": ["pgd", "square", "fgsm"], "eps": "1", "steps": 7,
                                         "step_size": "1/255", "restarts": 3, "random_start": False,
                                         "square_queries": 50, "loss": "margin", "variant": "default",
                                         "checks": False})]
    assert [(s.name, s.eps.value, s.steps, s.step_size, s.restarts, s.random_start) for s in specs] == [
        ("pgd-margin", 1.0, 7, 1 / 255, 3, False), ("autoattack-custom:square", 1.0, 50, None, None, None),
        ("fgsm", 1.0, 1, 1.0, 1, False)]  # FGSM: one step of eps from the clean point, whatever the table says
    standard = plan_table({"type": "attack", "attack": "autoattack", "eps": "4/255", "square_queries": 50,
                           "variant": "default", "checks": False})
    assert [(p.spec.name, p.spec.steps) for p in standard] == [("autoattack-standard", None)]  # its Square: 5,000
    paper = plan_table({"type": "attack", "attack": "pgd", "eps": "4/255", "protocol": "mgnet-paper", "restarts": 1,
                        "step_size": "2/255"})
    assert [(p.spec.steps, p.spec.step_size, p.spec.restarts) for p in paper] == [(10, 2 / 255, 1)]


def test_per_step_adds_glimpse_1_to_7_of_the_honest_cross_entropy_attacks() -> None:
    planned = plan({"attack": ["pgd", "autoattack", "fgsm"], "eps": "4/255", "per_step": True, "variant": "default",
                    "checks": False})
    glimpses = [label for label, optional, _ in planned if "glimpse=" in label and optional]
    assert glimpses == [f"pgd linf 4/255 (glimpse={t})" for t in range(1, 8)] + \
        [f"autoattack-standard linf 4/255 (glimpse={t})" for t in range(1, 8)]
    assert len(planned) == 4 + 14  # pgd, pgd-margin, autoattack, fgsm; then the glimpses
    for table in ({"variant": "all-glimpses"}, {"protocol": "mgnet-paper"}, {"transfer_from": "x"}):
        only = plan({"attack": "pgd", "eps": "4/255", "loss": "ce", "per_step": True, "checks": False, **table})
        assert not [label for label, _, _ in only if "glimpse=" in label], only
    assert not [label for label, _, _ in plan({"attack": "pgd", "eps": "4/255", "checks": False}) if "glimpse" in label]


def test_attack_lists_losses_and_variants_expand_in_order_without_duplicates() -> None:
    assert [label for label, _, _ in plan({"eps": "4/255", "variant": "default", "checks": False})] == [
        "fgsm linf 4/255", "pgd linf 4/255", "pgd-margin linf 4/255", "autoattack-custom:apgd-ce+apgd-t linf 4/255"]
    assert plan({"attack": "pgd,pgd", "eps": "4/255,0.015686274509803921", "variant": ["default", "rescaler-off"],
                 "loss": "ce", "checks": False}) == [("pgd linf 4/255", False, False),
                                                    ("pgd linf 4/255 (rescaler-off)", False, False)]
    assert plan({"attack": "fgsm", "eps": "4/255", "loss": "margin", "checks": False}) == [
        ("fgsm linf 4/255", False, False), ("fgsm linf 4/255 (rescaler-off)", True, False)]


# ----------------------------------------------------------------------------- budgets as users write them

EPS_HINT = "write a fraction like 4/255 or a decimal like 0.0157"
SEVERAL = f"{EPS_HINT} (several: 1/255,2/255,4/255)"


@pytest.mark.parametrize("raw, message", [
    (True, f"eps True is not a number: {EPS_HINT}"),
    (" ", f"eps is empty: {EPS_HINT}"),
    ("1/2/3", f"eps '1/2/3' has more than one '/': {EPS_HINT}"),
    ("abc", f"eps 'abc' is not a number: {EPS_HINT}"),
    ("4/0", f"eps '4/0' divides by zero: {EPS_HINT}"),
    ("nan", f"eps 'nan' is not finite: {EPS_HINT}"),
    ("1e400", f"eps '1e400' is not finite: {EPS_HINT}"),
    ("-1/255", f"eps '-1/255' must be positive: {EPS_HINT}"),
    (0, f"eps '0' must be positive: {EPS_HINT}"),
    ([1, 2], f"eps [1, 2] is not a number: {EPS_HINT}"),
])
def test_bad_budgets_are_named_verbatim(raw: Any, message: str) -> None:
    with pytest.raises(InputError) as error:
        parse_eps(raw)
    assert str(error.value) == message


@pytest.mark.parametrize("raw, message", [
    ("  ", f"eps list is empty: {SEVERAL}"), ([], f"eps list is empty: {SEVERAL}"),
    ("1/255,", f"eps list '1/255,' has an empty entry: {SEVERAL}"),
])
def test_bad_budget_lists_are_named_verbatim(raw: Any, message: str) -> None:
    with pytest.raises(InputError) as error:
        parse_eps_list(raw)
    assert str(error.value) == message


def test_budgets_keep_the_text_they_were_written_as() -> None:
    assert (parse_eps(" 1 / 2 ").value, str(parse_eps(" 1 / 2 "))) == (0.5, "1 / 2")
    assert (parse_eps(1e-05).text, parse_eps(3).text, parse_eps(3).value) == ("1e-05", "3", 3.0)
    assert (parse_eps(1.0).text, parse_eps(10_000_000).text) == ("1", "10000000")  # floats as %g, whole numbers whole
    with pytest.raises(InputError, match=r"^--step-size '0' must be positive: write a fraction"):
        parse_number("0", "--step-size")
    assert [e.text for e in parse_eps_list(["0.5", "1/2", 0.25])] == ["0.5", "0.25"]
