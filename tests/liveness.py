"""Liveness checks shared by the model tests: dead parameters, module calls that cannot reach the
output, and what fvcore counts per module (see tests/test_models_liveness.py)."""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench.data import DataSpec, make_loader, open_dataset
from mgbench.models import forward_steps

DEAD = 1e-9  # relative to the model's largest gradient, in float64


def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real digits for the 64-px models; two random images for the 224-px ones (CPU time)."""
    if size == 64:
        opened = open_dataset(DataSpec(name="digits", split="train", limit=8))
        images, labels, _, _ = next(iter(make_loader(opened.dataset, 8, device=torch.device("cpu"), workers=0)))
        return images.double() / 255, labels
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, size, size, generator=generator, dtype=torch.float64), torch.tensor([1, 3])


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    custom = getattr(model, "training_loss", None)
    return custom(x, y)[0] if custom is not None else F.cross_entropy(model(x), y)


def dead_parameters(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """Parameters without a gradient after one optimiser step (train mode, float64).

    The step is Adam's first (each parameter with a gradient moves by about 1e-3 times its sign):
    zero-initialised gammas come off zero whatever the size of their gradient, a parameter without
    gradient stays where it is, and no layer jumps far enough to saturate what follows it."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _loss(model, x, y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _loss(model, x, y).backward()
    peaks = {name: (0.0 if p.grad is None else float(p.grad.abs().max())) for name, p in model.named_parameters()}
    largest = max(peaks.values())
    return [name for name, peak in peaks.items() if peak <= DEAD * largest]


def dead_module_calls(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """Leaf modules with calls whose outputs do not reach the outputs: name -> (dead calls, calls).

    BatchNorm in train mode (an untrained model's running statistics blow activations up until
    softmaxes saturate, which would read as dead), dropout off (fvcore counts the eval graph)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    outputs: dict[str, list[torch.Tensor]] = defaultdict(list)
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            def keep(_module: nn.Module, _inputs: tuple, out: object, name: str = name) -> None:
                if isinstance(out, torch.Tensor) and out.requires_grad:
                    out.retain_grad()
                    outputs[name].append(out)
            handles.append(module.register_forward_hook(keep))
    try:
        logits = forward_steps(model, x.requires_grad_(True)).logits  # every step's prediction
        (logits * torch.randn_like(logits)).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    peaks = {name: [0.0 if out.grad is None else float(out.grad.abs().max()) for out in outs]
             for name, outs in outputs.items()}
    largest = max(max(values) for values in peaks.values())
    dead = {}
    for name, values in peaks.items():
        n_dead = sum(peak <= DEAD * largest for peak in values)
        if n_dead:
            dead[name] = (n_dead, len(values))
    return dead


def fvcore_by_module(model: nn.Module, size: int) -> dict[str, int]:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model.float().eval(), torch.rand(1, 3, size, size))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return dict(analysis.by_module())
