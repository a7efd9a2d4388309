"""Compute per step, counted two ways: fvcore's multiply-adds and PyTorch's FlopCounterMode.

Conventions:
- fvcore (``FlopCountAnalysis``, the counter of the MGNet paper and of timm's ``infer_gmacs``)
  counts one fused multiply-add as one FLOP, i.e. its numbers are GMACs. It traces the model
  with the JIT; it counts ``grid_sampler`` (4 per output element: bilinear), convolutions,
  matmuls, norms and pooling, and counts ``affine_grid``, ``sigmoid`` and
  ``scaled_dot_product_attention`` as zero. This is what the runner stores (metric ``gmacs``).
- ``torch.utils.flop_counter.FlopCounterMode`` counts at the dispatcher what really executes,
  2 FLOPs per multiply-add, but only for the ops it has formulas for (matmuls, convolutions,
  GPU attention); everything else, ``grid_sample`` included, counts as zero without a warning.
  :data:`TORCH_FORMULAS` adds formulas for three ops (in FLOPs = 2 x multiply-adds):

  ============================================= ===============================================
  ``aten.grid_sampler_2d``                      2 x 4 x N x C x H_out x W_out (bilinear: 4
                                                neighbours per output value, as fvcore; nearest
                                                0, bicubic 16 neighbours)
  ``aten.affine_grid_generator``                2 x 6 x N x H x W (each grid point is a 2x3
                                                matrix times (x, y, 1))
  ``aten._scaled_dot_product_flash_attention_   2 x (B x H x L_q x L_k x (E + E_v)) (scores and
  for_cpu``                                     weighted sum; the CPU kernel that torch counts
                                                on GPU but not on CPU)
  ============================================= ===============================================

So ``FlopCounterMode / 2`` equals fvcore on convolution/linear networks up to what only fvcore
counts (BatchNorm, LayerNorm, pooling: 0.3% of ResNet-18, 0.5% of ResNet-50) and what only the extra formulas
count (the affine grid and the attention scores: under 0.02% of MGNet).

An anytime model is counted once per truncation ``t`` (``forward_steps(x, steps=t)``), so the
count after ``t`` glimpses is exactly the work needed to produce the prediction at step ``t``.
Counts use one image, on a CPU copy of the model in eval mode.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from mgbench.errors import InputError
from mgbench.models import LoadedModel, get_entry, list_cards, load_model
from mgbench.models.anytime import forward_steps, num_steps
from mgbench.rows import MetricRow

CONVENTION = "fvcore: 1 multiply-add = 1 FLOP (GMACs), batch of one image, eval mode"
TORCH_CONVENTION = "torch FlopCounterMode: 2 FLOPs per multiply-add (GFLOPs), batch of one image, eval mode"

_GRID_SAMPLE_MACS = {0: 4, 1: 0, 2: 16}  # interpolation_mode: bilinear, nearest, bicubic


def _grid_sampler_2d_flops(input_shape: Any, grid_shape: Any, interpolation_mode: int, *args: Any,
                           out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * _GRID_SAMPLE_MACS[int(interpolation_mode)] * math.prod(out_shape)


def _affine_grid_flops(theta_shape: Any, size: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    n, h, w, _ = out_shape  # [N, H, W, 2]
    return 2 * 6 * n * h * w


def _cpu_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                         out_shape: Any = None, **kwargs: Any) -> int:
    b, h, l_q, e = query_shape
    l_k, e_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * l_q * l_k * (e + e_v)


aten = torch.ops.aten
TORCH_FORMULAS: dict[Any, Callable[..., int]] = {
    aten.grid_sampler_2d: _grid_sampler_2d_flops,
    aten.affine_grid_generator: _affine_grid_flops,
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
}


class _Truncated(nn.Module):
    """Final-step logits of an anytime model stopped after ``steps`` steps."""

    def __init__(self, model: nn.Module, steps: int):
        super().__init__()
        self.model = model
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_steps(self.model, x, steps=self.steps).logits[-1]


@dataclass
class ComputeProfile:
    params: int
    gmacs: list[float]  # fvcore, cumulative, after step 1..T

    def rows(self) -> list[MetricRow]:
        detail = {"convention": CONVENTION, "tool": "fvcore"}
        rows = [MetricRow("params", float(self.params), detail={"unit": "parameters"})]
        rows.append(MetricRow("gmacs", self.gmacs[-1], detail=detail))
        if len(self.gmacs) > 1:
            rows += [MetricRow("gmacs", g, step=t + 1, detail=detail) for t, g in enumerate(self.gmacs)]
        return rows


@dataclass
class ComputeComparison:
    """Both counters, cumulative after step 1..T."""

    params: int
    gmacs: list[float]  # fvcore GMACs
    torch_gflops: list[float]  # FlopCounterMode GFLOPs (with TORCH_FORMULAS)


def _module(model: nn.Module, steps: int | None) -> nn.Module:
    return _Truncated(model, steps) if steps is not None else model


def fvcore_gmacs(model: nn.Module, input_size: int, steps: int | None = None) -> float:
    """fvcore multiply-adds (in G) of one forward pass on a 1x3xSxS input."""
    x = torch.rand(1, 3, input_size, input_size)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's own and torch.jit's deprecation warnings
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(_module(model, steps), x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total() / 1e9


def torch_gflops(model: nn.Module, input_size: int, steps: int | None = None) -> float:
    """FlopCounterMode FLOPs (in G, 2 per multiply-add) of one forward pass on a 1x3xSxS input."""
    x = torch.rand(1, 3, input_size, input_size)
    counter = FlopCounterMode(display=False, custom_mapping=TORCH_FORMULAS)
    with counter, torch.no_grad():
        _module(model, steps)(x)
    return counter.get_total_flops() / 1e9


def _per_step(model: nn.Module, input_size: int, count: Callable[[nn.Module, int, int | None], float]) -> list[float]:
    """Cumulative counts after each step (one count for a one-step model)."""
    steps = num_steps(model)
    if steps == 1:
        return [count(model, input_size, None)]
    return [count(model, input_size, t) for t in range(1, steps + 1)]


def _cpu_eval(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu().eval()


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def profile(model: nn.Module, input_size: int) -> ComputeProfile:
    """Parameters and cumulative fvcore GMACs after each step, counted on a CPU copy in eval mode."""
    cpu_model = _cpu_eval(model)
    return ComputeProfile(_params(cpu_model), _per_step(cpu_model, input_size, fvcore_gmacs))


def compare(model: nn.Module, input_size: int) -> ComputeComparison:
    """Parameters and cumulative compute after each step, by fvcore and by FlopCounterMode."""
    cpu_model = _cpu_eval(model)
    return ComputeComparison(
        _params(cpu_model),
        _per_step(cpu_model, input_size, fvcore_gmacs),
        _per_step(cpu_model, input_size, torch_gflops),
    )


def counting_model(name: str, glimpses: int | None = None, input_size: int | None = None) -> tuple[LoadedModel, int]:
    """The model to count (a registered architecture, zoo card or user factory) and its input side.

    ``glimpses`` and ``input_size`` go to the architecture's factory when it takes them (MGNet's
    glimpse size follows its input size); the input side defaults to the model's own
    (``input_size`` attribute or registry default).
    """
    overrides: dict[str, int] = {}
    default_size = None
    if ":" not in name:
        cards = list_cards()
        entry = get_entry(cards[name].architecture if name in cards else name)
        accepted = inspect.signature(entry.factory).parameters
        if glimpses is not None and "glimpses" not in accepted:
            raise InputError(f"{name} takes no glimpses (it is not a glimpse model): drop --glimpses")
        if glimpses is not None:
            overrides["glimpses"] = glimpses
        if input_size is not None and "input_size" in accepted:
            overrides["input_size"] = input_size
        default_size = entry.defaults.get("input_size")
    elif glimpses is not None:
        raise InputError(f"--glimpses needs a registered architecture or card, not the factory {name}")
    loaded = load_model(name, **overrides)
    size = input_size or getattr(loaded.module, "input_size", None) or default_size
    if size is None:
        raise InputError(f"{name} does not say its input size: pass --input")
    return loaded, int(size)
