"""The trained tiny models of the zoo: three seeds of each (``<base>.s<seed>``, written by
benchmarks/train_zoo.sh); each loads through its card, beats chance and records the seed of its
name and the device it was trained on."""

from __future__ import annotations

import re

import pytest
import torch

from mgbench.data import DataSpec, make_loader, open_dataset
from mgbench.models import forward_steps, list_cards, load_model

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)

# base -> (architecture, training method); the zoo holds seeds 0, 1 and 2 of each.
BASES = {
    "resnet-tiny.digits": ("resnet-tiny", "standard"),
    "mgnet-tiny.digits": ("mgnet-tiny", "standard"),
    "ltpa-tiny.digits": ("ltpa-tiny", "standard"),
    "tdam-tiny.digits": ("tdam-tiny", "standard"),
    "gwi-resnet-tiny.digits": ("resnet-tiny", "gwi"),
}
SEEDS = (0, 1, 2)
SEED_CARD = re.compile(r"^(?P<base>.+)\.s(?P<seed>\d+)$")
TEST_IMAGES = 200  # a fixed seeded subset of the digits test split
CHANCE = 0.1


def test_the_zoo_holds_three_seeds_of_every_model() -> None:
    expected = {f"{base}.s{seed}" for base in BASES for seed in SEEDS}
    missing = expected - set(list_cards())
    assert not missing, f"missing zoo cards {sorted(missing)}: train them with benchmarks/train_zoo.sh"


@pytest.mark.parametrize("card", sorted(f"{base}.s{seed}" for base in BASES for seed in SEEDS))
def test_seed_cards_load_score_above_chance_and_record_seed_and_device(card: str) -> None:
    match = SEED_CARD.match(card)
    assert match is not None
    loaded = load_model(card)
    assert loaded.card is not None
    assert loaded.card.training["seed"] == int(match["seed"]) and loaded.card.training.get("device")
    _check_card(card, *BASES[match["base"]])


def _check_card(card: str, architecture: str, method: str) -> None:
    loaded = load_model(card)
    assert loaded.architecture == architecture
    assert loaded.card is not None and loaded.card.training["method"] == method
    model = loaded.module.eval()
    opened = open_dataset(DataSpec(name="digits", limit=TEST_IMAGES))
    correct = 0
    with torch.no_grad():
        for images, labels, _, _ in make_loader(opened.dataset, 100, device=torch.device("cpu"), workers=0):
            out = forward_steps(model, images.float() / 255)
            correct += int(out.logits[-1].argmax(1).eq(labels).sum())
            if architecture.startswith("ltpa"):
                assert out.maps is not None and len(out.maps) == 2
    assert correct / opened.n > 5 * CHANCE  # well above chance
