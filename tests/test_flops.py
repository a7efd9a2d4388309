"""Compute counting: fvcore against FlopCounterMode, the added formulas, and the MGNet table.

Expected values: the reference's fvcore measurements of the official code
(/work/shared/reference/mgnet.md) and closed-form counts written out here.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mgbench import flops
from mgbench.models import create_model

# kernels: compares floats across implementations; .ci/run repeats it on a second CPU kernel path.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.kernels]


def _fvcore_by_operator(module: nn.Module, x: torch.Tensor) -> dict[str, int]:
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's and torch.jit's deprecation warnings
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(module, x)
        analysis.unsupported_ops_warnings(False)
        return dict(analysis.by_operator())


def _torch_by_operator(module: nn.Module, x: torch.Tensor, formulas: dict | None = None) -> dict[str, int]:
    counter = FlopCounterMode(display=False, custom_mapping=formulas or {})
    with counter, torch.no_grad():
        module(x)
    return {str(op).split(".")[-1]: n for op, n in counter.get_flop_counts().get("Global", {}).items()}


@pytest.mark.parametrize("name, size, reference", [("resnet18", 224, 1.819), ("resnet-tiny", 64, None)])
def test_counters_agree_on_static_models(name: str, size: int, reference: float | None) -> None:
    """Convolutions and the classifier: FlopCounterMode = 2 x fvcore, exactly. Totals differ only
    by what fvcore alone counts (BatchNorm, pooling), well under 1%."""
    model = create_model(name).eval()
    x = torch.rand(1, 3, size, size)
    fv = _fvcore_by_operator(model, x)
    th = _torch_by_operator(model, x)
    assert th["convolution"] == 2 * fv["conv"]
    assert th["addmm"] == 2 * fv["linear"]
    assert set(th) == {"convolution", "addmm"}
    if reference is not None:  # the plain ResNet-18 of the reference table
        assert sum(fv.values()) / 1e9 == pytest.approx(reference, rel=1e-2)
    assert sum(th.values()) / 2 == pytest.approx(sum(fv.values()), rel=1e-2)
    assert sum(th.values()) / 2 < sum(fv.values())  # fvcore's extra norm and pooling counts


class _Sampler(nn.Module):
    def __init__(self, out: int):
        super().__init__()
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = torch.tensor([[[0.5, 0.0, 0.1], [0.0, 0.5, -0.2]]]).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, (x.shape[0], x.shape[1], self.out, self.out), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)


def test_glimpse_formulas() -> None:
    """FlopCounterMode counts grid_sample and affine_grid as zero unless told; our formulas give
    4 multiply-adds per bilinear output value (fvcore's count) and 6 per grid point."""
    n, c, out = 2, 3, 27
    x = torch.rand(n, c, 64, 64)
    assert _torch_by_operator(_Sampler(out), x) == {}  # silently zero without the formulas
    counted = _torch_by_operator(_Sampler(out), x, flops.TORCH_FORMULAS)
    assert counted["grid_sampler_2d"] == 2 * 4 * n * c * out * out
    assert counted["affine_grid_generator"] == 2 * 6 * n * out * out
    assert _fvcore_by_operator(_Sampler(out), x)["grid_sampler"] == 4 * n * c * out * out


def test_cpu_attention_formula() -> None:
    """One-head attention over L tokens of width D, batch 1: projections 4 L D^2, scores and
    weighted sum 2 L^2 D multiply-adds."""
    length, dim = 3, 40
    attention = nn.MultiheadAttention(dim, 1).eval()
    tokens = torch.rand(length, 1, dim)
    counter = FlopCounterMode(display=False, custom_mapping=flops.TORCH_FORMULAS)
    with counter, torch.no_grad():
        attention(tokens, tokens, tokens, need_weights=False)
    assert counter.get_total_flops() == 2 * (4 * length * dim * dim + 2 * length * length * dim)


def test_conv_compute_per_glimpse_is_9_49_of_the_full_image() -> None:
    """The reference: a 96 px glimpse costs exactly (96/224)^2 = 9/49 of the ResNet's convolutions."""
    x = torch.rand(1, 3, 224, 224)
    full = _fvcore_by_operator(create_model("resnet18").eval(), x)["conv"]
    one = _fvcore_by_operator(flops._Truncated(create_model("mgnet-r18").eval(), 1), x)["conv"]
    assert one * 49 == full * 9


@pytest.mark.parametrize(
    "mgnet, per_glimpse, single, single_gmacs",
    [  # reference table: fvcore GMACs of the official code, one 224 image, eval mode
        ("mgnet-r18", [0.335, 0.672, 1.009, 1.347], "mgnet-baseline-r18", 1.820),
        pytest.param("mgnet-r50", [0.772, 1.561, 2.366, 3.189], "resnet50", 4.110, marks=pytest.mark.slow),
    ],
)
def test_flops_table_matches_the_reference(mgnet: str, per_glimpse: list[float], single: str,
                                           single_gmacs: float) -> None:
    """MGNet after each glimpse, and one one-step model of the table (ResNet-18: plain ResNet above)."""
    profile = flops.profile(create_model(mgnet), 224)
    assert profile.gmacs == pytest.approx(per_glimpse, rel=1e-3)  # docs/mgnet.md: all within 0.1%
    increments = [b - a for a, b in zip([0.0] + per_glimpse, per_glimpse)]
    measured = [b - a for a, b in zip([0.0] + profile.gmacs, profile.gmacs)]
    assert measured == pytest.approx(increments, abs=1e-3)  # each glimpse, to the table's last digit
    assert flops.profile(create_model(single), 224).gmacs == pytest.approx([single_gmacs], rel=1e-3)
    rows = profile.rows()
    assert [r.step for r in rows if r.metric == "gmacs"] == [None, 1, 2, 3, 4]


def test_counting_model_overrides() -> None:
    loaded, size = flops.counting_model("mgnet-tiny", glimpses=2)
    assert (loaded.module.num_steps, size) == (2, 64)
    loaded, size = flops.counting_model("mgnet-tiny", input_size=128)
    assert (loaded.module.glimpse_size, size) == (54, 128)  # int(128 // 2.33)
    loaded, size = flops.counting_model("resnet18")
    assert size == 224
