"""The contract every registered attack keeps (as timm's tests hold every model to one): it
resolves its defaults, its cells are stored under a name that describes back to it, it records
its hyperparameters, refuses what it cannot run with a one-line error, runs inside the ball and
[0, 1] on a trained model, and the checks, tables, leaderboard and --help all know it from the
registry alone. A new attack under mgbench/attacks/kinds/ is tested here without a line added."""

from __future__ import annotations

import pytest
import torch
from attack_support import digits, trained_cnn

from mgbench.attacks.attack import all_attacks, attack_names, describe, get_attack
from mgbench.attacks.bounds import check_ball
from mgbench.attacks.checks import StoredAttack
from mgbench.attacks.eps import parse_eps
from mgbench.attacks.protocols import PROTOCOLS
from mgbench.attacks.spec import make_spec, plan_table
from mgbench.errors import InputError
from mgbench.report.leaderboard import attack_families
from mgbench.report.tables import attack_rank

ATTACKS = attack_names()
EPS = parse_eps("8/255")


def test_the_registry_holds_the_documented_attacks_in_order() -> None:
    assert ATTACKS == ("fgsm", "pgd", "apgd", "autoattack", "noise", "square")
    assert all_attacks() == ("fgsm", "pgd", "apgd")
    assert [p.spec.name for p in plan_table({"type": "attack", "eps": "4/255", "checks": False,
                                             "variant": "default", "loss": "ce"})] == \
        ["fgsm", "pgd", "autoattack-custom:apgd-ce+apgd-t"]
    known = "fgsm, pgd, apgd, autoattack, noise, square"
    with pytest.raises(InputError, match=rf"^unknown attack 'cw': use {known} or all$"):
        get_attack("cw")


@pytest.mark.parametrize("name", ATTACKS)
def test_an_attack_resolves_and_its_stored_name_describes_back_to_it(name: str) -> None:
    attack = get_attack(name)
    assert attack.name == name and attack.summary and attack.family
    spec = make_spec(name, "linf", EPS)
    stored = describe(spec.name)
    assert stored.kind == name and stored.attack is attack
    assert stored.family == attack.family and stored.strength == attack.strength
    assert spec.label.startswith(f"{spec.name} linf 8/255")
    assert spec.key()["attack"] == spec.name and spec.key()["eps_str"] == "8/255"
    details = spec.hyperparameters()
    assert details.items() >= spec.key().items() and details["implementation"]
    assert make_spec(name, "linf", EPS) == spec  # resolving is deterministic: the same key every time


@pytest.mark.parametrize("name", ATTACKS)
def test_an_attack_refuses_what_it_cannot_run_in_one_line(name: str) -> None:
    attack = get_attack(name)
    for protocol in PROTOCOLS:
        if protocol not in attack.protocols:
            with pytest.raises(InputError) as refused:
                make_spec(name, "linf", EPS, protocol=protocol)
            assert "\n" not in str(refused.value) and "protocol" in str(refused.value)
    if attack.gradient_free:
        with pytest.raises(InputError, match="uses no gradient"):
            make_spec(name, "linf", EPS, variants=("rescaler-off",))


@pytest.mark.parametrize("name", ATTACKS)
def test_reports_and_checks_read_an_attack_from_the_registry(name: str) -> None:
    attack = get_attack(name)
    spec = make_spec(name, "linf", EPS)
    assert attack_rank(spec.name) == attack.column
    assert attack_families([spec.label]) == [attack.family]
    stored = StoredAttack(spec.name, spec.protocol, spec.variant, spec.norm, spec.eps.value, spec.eps.text, spec.steps,
                          spec.step_size, spec.restarts, spec.random_start, None)
    assert stored.kind == name
    assert (stored.pgd, stored.square, stored.noise) == (name == "pgd", name == "square", name == "noise")
    assert stored.autoattack == (attack.autoattack_code and not attack.gradient_free)
    assert stored.white_box == (not attack.gradient_free)


def test_the_attack_help_lists_every_attack(run_cli) -> None:
    code, out, _ = run_cli("attack", "--help")
    assert code == 0
    text = " ".join(out.split())
    for name in ATTACKS:
        assert f"{name}: {' '.join(get_attack(name).summary.split())}" in text


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ATTACKS)
def test_an_attack_runs_inside_the_ball_and_the_unit_range(name: str) -> None:
    model = trained_cnn().eval()
    x, y = digits(n=6)
    spec = make_spec(name, "linf", EPS)
    torch.manual_seed(0)
    output = spec.run(model, x, y, seed=0)
    check_ball(output.x_adv, x, norm="linf", eps=EPS.value, what=spec.label)
    with torch.no_grad():
        fooled, wrong = ((model(images).argmax(1) != y).sum().item() for images in (output.x_adv, x))
    assert fooled >= wrong or get_attack(name).gradient_free
