"""Models and data for the attack tests: a small CNN trained for a few seconds on the embedded
digits (so attacks meet a real decision boundary), models built to mask gradients, and a toy
anytime model with MGNet's interface (``num_steps``, ``forward_steps``, ``gradient_rescaler``).

Not a test module (no ``test_`` prefix): the test files import it.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from support import single_thread

from mgbench.data.digits import load_digits
from mgbench.models import StepOutputs
from mgbench.models.layers import DIGITS_MEAN, DIGITS_STD, Classifier

TRAIN_STEPS = 300
BATCH = 64
# Table keys that make an attack table expand to exactly the attack it names: no verdict
# probes, no default rescaler-off run, the cross-entropy only.
ONE = {"checks": False, "variant": "default", "loss": "ce"}


def small_cnn() -> Classifier:
    """~25k parameters, ~0.8M multiply-adds; [0, 1] 64x64 RGB in, 10 logits out, normalising inside."""
    net = nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=4), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )
    return Classifier(net, DIGITS_MEAN, DIGITS_STD)


def _unit(images) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()


@functools.lru_cache(maxsize=None)
def _arrays() -> dict:
    return load_digits()


def digits(split: str = "test", n: int | None = None, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = _arrays()
    stop = None if n is None else offset + n
    x = _unit(arrays[f"{split}_images"][offset:stop])
    y = torch.from_numpy(arrays[f"{split}_labels"][offset:stop]).long()
    return x, y


@functools.lru_cache(maxsize=None)
def _trained_state() -> dict[str, torch.Tensor]:
    with single_thread():
        return _train()


def _train() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = small_cnn()
    arrays = _arrays()
    images = torch.from_numpy(arrays["train_images"]).permute(0, 3, 1, 2)  # uint8: converted per batch
    labels = torch.from_numpy(arrays["train_labels"]).long()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(TRAIN_STEPS):
        idx = torch.randint(0, len(labels), (BATCH,), generator=generator)
        loss = F.cross_entropy(model(images[idx].float().div(255)), labels[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_cnn() -> Classifier:
    """A fresh copy of the small CNN after a few seconds of training (trained once per process)."""
    model = small_cnn()
    model.load_state_dict(_trained_state())
    return model.eval()


def save_trained(path: Path) -> Path:
    torch.save(_trained_state(), path)
    return path


FACTORY_SOURCE = '''
import sys
sys.path.insert(0, {tests!r})
import torch
from attack_support import small_cnn
from {wrappers} import wrapped

def factory():
    model = small_cnn()
    model.load_state_dict(torch.load({weights!r}, weights_only=True))
    return wrapped(model.eval(), {kind!r})
'''


def write_factory(folder: Path, kind: str = "healthy", wrappers: str = "attack_support") -> str:
    """A ``--model FILE.py:factory`` spec for the trained CNN wrapped as ``kind`` by the ``wrapped``
    of the test module ``wrappers`` (this one's, see :func:`wrapped`, or verdict_models')."""
    weights = save_trained(folder / "cnn.pt")
    path = folder / f"model_{kind.replace('-', '_')}.py"
    path.write_text(FACTORY_SOURCE.format(tests=str(Path(__file__).parent), weights=str(weights), kind=kind,
                                          wrappers=wrappers))
    return f"{path}:factory"


class _ZeroGradRound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: float) -> torch.Tensor:
        return torch.round(x * levels) / levels

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.zeros_like(grad), None


class Quantised(nn.Module):
    """Input quantisation whose gradient is exactly zero: gradient attacks see a flat loss."""

    def __init__(self, model: nn.Module, levels: int = 8):
        super().__init__()
        self.model, self.levels = model, float(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_ZeroGradRound.apply(x, self.levels))


class SoftmaxOutput(nn.Module):
    """Returns probabilities instead of logits (cross-entropy on them saturates)."""

    def __init__(self, model: nn.Module, temperature: float = 50.0):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x) * self.temperature, dim=1)


class ScaledLogits(nn.Module):
    """Logits multiplied by a large factor: the softmax saturates in float32, so the
    cross-entropy's input gradient is exactly zero on confidently classified examples and
    cross-entropy PGD cannot move them, while a scale-invariant loss (APGD-T's targeted DLR, the
    margin) still can. A model whose robustness a short CE-PGD overstates."""

    def __init__(self, model: nn.Module, scale: float = 1e4):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


class NoisyInput(nn.Module):
    """A randomised model: Gaussian noise on the input at every forward pass."""

    def __init__(self, model: nn.Module, sigma: float = 0.1):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))


def wrapped(model: nn.Module, kind: str) -> nn.Module:
    wrappers = {"healthy": lambda m: m, "quantised": Quantised, "softmax": SoftmaxOutput, "noisy": NoisyInput,
                "scaled": ScaledLogits}
    return wrappers[kind](model).eval()


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class ToyAnytime(nn.Module):
    """MGNet's interface on a toy: step t classifies the image blurred by a shrinking kernel,
    step t > 1 also sees the previous step's features through a gradient rescaler (identity
    forward, gradient x ``scale`` backward), like MGNet's localisation path."""

    def __init__(self, num_steps: int = 3, scale: float = 0.02):
        super().__init__()
        self.num_steps = num_steps
        self.scale = scale
        self.rescale = True
        self.backbone = small_cnn()
        self.mix = nn.Linear(10, 10)

    @contextmanager
    def gradient_rescaler(self, enabled: bool) -> Iterator[None]:
        previous, self.rescale = self.rescale, enabled
        try:
            yield
        finally:
            self.rescale = previous

    def forward_steps(self, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
        logits, carry = [], None
        for t in range(steps or self.num_steps):
            size = 2 ** (self.num_steps - 1 - t)
            view = F.avg_pool2d(x, size) if size > 1 else x
            view = F.interpolate(view, size=x.shape[-1]) if size > 1 else view
            out = self.backbone(view)
            if carry is not None:
                out = out + self.mix(_ScaleGrad.apply(carry, self.scale) if self.rescale else carry)
            logits.append(out)
            carry = out
        return StepOutputs(torch.stack(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x).logits[-1]


# Two implementations of one attack on one model (ours and a reference library) run the same
# arithmetic, but on another CPU kernel path (AVX-512 vs AVX2, another reduction order) a
# gradient component that is ~0 can take the other sign, and that pixel then moves the other way
# for the rest of the attack. Such sign ties touch a handful of pixels of a handful of examples;
# a real difference between the attacks (another step, a missing projection or clip, a random
# start) moves most pixels. So the comparison allows a tiny share of differing pixels and one
# example's verdict, never more.
AGREE_PIXEL_SHARE = 1e-4   # share of pixels that may differ by more than float rounding
AGREE_EXAMPLES = 1         # examples whose success (fooled or not) may differ


def attack_disagreement(model: nn.Module, ours: torch.Tensor, theirs: torch.Tensor,
                        y: torch.Tensor, atol: float = 1e-6) -> tuple[float, int]:
    """(share of pixels differing by more than ``atol``, number of examples whose success differs)."""
    pixels = float(((ours - theirs).abs() > atol).double().mean())
    with torch.no_grad():
        fooled_ours = model(ours).argmax(dim=1) != y
        fooled_theirs = model(theirs).argmax(dim=1) != y
    return pixels, int((fooled_ours != fooled_theirs).sum())


def assert_attacks_agree(model: nn.Module, ours: torch.Tensor, theirs: torch.Tensor, y: torch.Tensor,
                         atol: float = 1e-6) -> None:
    """The same attack up to sign ties (see above): robust accuracy then agrees within one example."""
    pixels, examples = attack_disagreement(model, ours, theirs, y, atol)
    assert pixels <= AGREE_PIXEL_SHARE, f"{pixels:.2%} of the pixels differ: not the same attack"
    assert examples <= AGREE_EXAMPLES, f"{examples} examples fooled by one attack and not the other"


class Judge(nn.Module):
    """Predicts class 1 where an image's first pixel exceeds ``threshold``, else 0 (a threshold
    above 1 is never fooled on label 0, one below 0 always); records each batch's size."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold, self.sizes = threshold, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        first = x.flatten(1)[:, 0]
        return torch.stack([first * 0, (first > self.threshold).float()], dim=1)
