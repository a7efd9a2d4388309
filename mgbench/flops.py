"""Compute per step: fvcore's multiply-add count, cumulative after each glimpse.

Convention: fvcore counts one fused multiply-add as one FLOP, i.e. these are GMACs, the unit
of the MGNet paper and of timm's ``infer_gmacs``. An anytime model is traced once per
truncation ``t`` (``forward_steps(x, steps=t)``), so the count after ``t`` glimpses is exactly
the work needed to produce the prediction at step ``t``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from mgbench.models.anytime import forward_steps, num_steps
from mgbench.store import MetricRow

CONVENTION = "fvcore: 1 multiply-add = 1 FLOP (GMACs), batch of one image, eval mode"


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
    gmacs: list[float]  # cumulative, after step 1..T

    def rows(self) -> list[MetricRow]:
        detail = {"convention": CONVENTION, "tool": "fvcore"}
        rows = [MetricRow("params", float(self.params), detail={"unit": "parameters"})]
        rows.append(MetricRow("gmacs", self.gmacs[-1], detail=detail))
        if len(self.gmacs) > 1:
            rows += [MetricRow("gmacs", g, step=t + 1, detail=detail) for t, g in enumerate(self.gmacs)]
        return rows


def fvcore_gmacs(model: nn.Module, input_size: int, steps: int | None = None) -> float:
    """fvcore multiply-adds (in G) of one forward pass on a 1x3xSxS input."""
    from fvcore.nn import FlopCountAnalysis

    module = _Truncated(model, steps) if steps is not None else model
    x = torch.rand(1, 3, input_size, input_size)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(module, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total() / 1e9


def profile(model: nn.Module, input_size: int) -> ComputeProfile:
    """Parameters and cumulative GMACs after each step, counted on a CPU copy in eval mode."""
    cpu_model = copy.deepcopy(model).cpu().eval()
    steps = num_steps(cpu_model)
    if steps == 1:
        gmacs = [fvcore_gmacs(cpu_model, input_size)]
    else:
        gmacs = [fvcore_gmacs(cpu_model, input_size, steps=t) for t in range(1, steps + 1)]
    return ComputeProfile(sum(p.numel() for p in cpu_model.parameters()), gmacs)
