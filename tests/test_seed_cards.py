"""The trained tiny seed models in the zoo: they load through their cards and beat chance."""

from __future__ import annotations

import pytest
import torch

from mgbench.data import DataSpec, make_loader, open_dataset
from mgbench.models import forward_steps, list_cards, load_model

# card -> (architecture, training method)
CARDS = {
    "ltpa-tiny.digits": ("ltpa-tiny", "standard"),
    "tdam-tiny.digits": ("tdam-tiny", "standard"),
    "gwi-resnet-tiny.digits": ("resnet-tiny", "gwi"),
}
TEST_IMAGES = 200  # a fixed seeded subset of the digits test split
CHANCE = 0.1


@pytest.mark.parametrize("card", sorted(CARDS))
def test_trained_card_loads_and_scores_above_chance(card: str) -> None:
    assert card in list_cards(), f"models/{card}.toml is missing: train it as docs/seed-methods.md says"
    architecture, method = CARDS[card]
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
