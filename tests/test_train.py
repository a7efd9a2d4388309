"""The training loop: it learns, it is seeded, and a killed run resumes to the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mgbench.data import DataSpec
from mgbench.errors import InputError
from mgbench.models import load_model
from mgbench.train import Recipe, train, write_card

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)

RECIPE = Recipe("test", epochs=2, batch_size=64, lr=0.05, augmentation="digits")
DATA = DataSpec(limit=384)


class Interrupt(Exception):
    pass


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def test_training_lowers_the_loss_and_writes_a_loadable_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = train("resnet-tiny", DATA, tmp_path / "run", recipe=RECIPE, test_limit=100, device="cpu")
    assert [e["epoch"] for e in result.log] == [1, 2]
    assert result.log[1]["train_loss"] < result.log[0]["train_loss"]
    summary = json.loads((tmp_path / "run" / "log.json").read_text())
    assert summary["recipe"]["epochs"] == 2 and summary["seed"] == 0

    zoo = tmp_path / "zoo"
    card = write_card(result, "resnet-tiny.testcard", "mgbench train --model resnet-tiny ...", zoo=zoo)
    monkeypatch.setenv("MGBENCH_ZOO", str(zoo))
    loaded = load_model("resnet-tiny.testcard")
    assert loaded.card is not None and loaded.card.training["command"].startswith("mgbench train")
    assert "sha256" in card.read_text()
    assert loaded.card.training["seed"] == 0 and loaded.card.training["precision"] == "fp32"
    assert loaded.card.training["device"].startswith("cpu:") and "on cpu:" in loaded.card.description
    for name, tensor in _weights(result.weights).items():
        assert torch.equal(loaded.module.state_dict()[name], tensor)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    straight = train("resnet-tiny", DATA, tmp_path / "straight", recipe=RECIPE, test_limit=50, device="cpu")

    def stop_in_second_epoch(epoch: int, batch: int, loss: float) -> None:
        if epoch == 2 and batch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train("resnet-tiny", DATA, tmp_path / "resumed", recipe=RECIPE, test_limit=50, device="cpu",
              progress=stop_in_second_epoch)
    assert (tmp_path / "resumed" / "last.pt").exists() and not (tmp_path / "resumed" / "model.pt").exists()
    resumed = train("resnet-tiny", DATA, tmp_path / "resumed", recipe=RECIPE, test_limit=50, device="cpu")
    assert [e["epoch"] for e in resumed.log] == [1, 2]
    a, b = _weights(straight.weights), _weights(resumed.weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_seed_changes_the_run(tmp_path: Path) -> None:
    one_epoch = Recipe("test", epochs=1, batch_size=64, lr=0.05)
    first = train("resnet-tiny", DataSpec(limit=128), tmp_path / "s0", recipe=one_epoch, test_limit=20, seed=0)
    other = train("resnet-tiny", DataSpec(limit=128), tmp_path / "s1", recipe=one_epoch, test_limit=20, seed=1)
    a, b = _weights(first.weights), _weights(other.weights)
    assert not torch.equal(a["net.fc.weight"], b["net.fc.weight"])


def test_the_cli_trains_with_the_given_seed_and_device_into_the_zoo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli
) -> None:
    monkeypatch.setenv("MGBENCH_ZOO", str(tmp_path / "zoo"))
    code, out, err = run_cli("train", "--model", "resnet-tiny", "--out", str(tmp_path / "run"), "--epochs", "1",
                             "--batch-size", "64", "--limit", "128", "--seed", "2", "--device", "cpu",
                             "--card", "resnet-tiny.digits.s2")
    assert code == 0, err
    card = load_model("resnet-tiny.digits.s2").card
    assert card is not None and card.source == tmp_path / "zoo" / "resnet-tiny.digits.s2.toml"
    assert card.training["seed"] == 2 and card.training["device"].startswith("cpu:")
    assert "--seed 2" in card.training["command"] and "--device cpu" in card.training["command"]
    code, _, err = run_cli("train", "--model", "resnet-tiny", "--out", str(tmp_path / "gpu"), "--device", "cuda:7")
    assert code == 2 and "device" in err and not (tmp_path / "gpu").exists()


@pytest.mark.parametrize("kwargs,message", [
    ({"recipe": "nope"}, "unknown recipe"),
    ({"method": "nope"}, "unknown training method"),
    ({"epochs": 0}, "must be positive"),
    ({"batch_size": 100000}, "fewer than one batch"),
])
def test_bad_training_input(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        train("resnet-tiny", DataSpec(limit=64), tmp_path / "bad", **kwargs)
