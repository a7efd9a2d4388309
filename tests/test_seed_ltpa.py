"""LTPA (Learn To Pay Attention): attention math, shapes, maps, parameters, FLOPs, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from liveness import batch, dead_parameters
from seed_helpers import fixed_batch_losses

from mgbench.errors import InputError
from mgbench.flops import profile
from mgbench.models import create_model, forward_steps

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)


def _tiny(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("ltpa-tiny", **kwargs).eval()


@pytest.mark.parametrize("compatibility", ["pc", "dp"])
def test_attention_is_a_distribution_over_positions(compatibility: str) -> None:
    model = _tiny(compatibility=compatibility)
    out = forward_steps(model, torch.rand(3, 3, 64, 64))
    assert out.logits.shape == (1, 3, 10)
    # the digits ResNet: stem /2, layer3 /8, layer4 /16 of 64 pixels
    assert [tuple(a.shape) for a in out.maps] == [(3, 8, 8), (3, 4, 4)]
    for attention in out.maps:
        assert torch.all(attention > 0)
        torch.testing.assert_close(attention.sum((1, 2)), torch.ones(3))


def test_forward_returns_the_one_step_logits() -> None:
    model = _tiny()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model(x), forward_steps(model, x).logits[0])
    assert model.num_steps == 1


def test_dot_product_attention_matches_an_independent_computation() -> None:
    model = _tiny(compatibility="dp")
    local, g = torch.randn(2, 128, 4, 4), torch.randn(2, 256)
    attention, descriptor = model.attend("layer3", local, g)
    # g projected down to 128 channels by BN (eval: running statistics) - ReLU - Dropout (off) - Linear
    bn, linear = model.project["layer3"][0][0], model.project["layer3"][1]
    hidden = torch.relu((g - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    g_small = hidden @ linear.weight.T + linear.bias
    scores = torch.stack([torch.stack([local[b, :, i, j] @ g_small[b] for i in range(4) for j in range(4)])
                          for b in range(2)])
    expected = torch.exp(scores - scores.max(1, keepdim=True).values)
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(attention.flatten(1), expected)
    expected_descriptor = (expected.view(2, 1, 4, 4) * local).sum((2, 3))
    torch.testing.assert_close(descriptor, expected_descriptor)
    # the layer4 level is as wide as g and uses g itself
    local4 = torch.randn(2, 256, 2, 2)
    expected4 = torch.einsum("bchw,bc->bhw", local4, g).flatten(1).softmax(1).view(2, 2, 2)
    torch.testing.assert_close(model.attend("layer4", local4, g)[0], expected4)


def test_pc_attention_equals_the_formula_with_any_global_descriptor_and_dp_depends_on_it() -> None:
    """<u, l_i + g> = <u, l_i> + <u, g>: the g term is the same at every position and the softmax
    removes it, so the pc model leaves g out (see ltpa.py); its attention equals the formula for any g."""
    local = torch.randn(2, 128, 4, 4)
    pc = _tiny(compatibility="pc")
    assert not hasattr(pc, "global_fc") and not hasattr(pc, "project")
    u = pc.score["layer3"].weight.view(128)
    for g in (torch.zeros(2, 128), torch.randn(2, 128) * 10):
        expected = torch.einsum("c,bchw->bhw", u, local + g[:, :, None, None]).flatten(1).softmax(1).view(2, 4, 4)
        torch.testing.assert_close(pc.attend("layer3", local, None)[0], expected)
    dp = _tiny(compatibility="dp").eval()
    g1, g2 = torch.randn(2, 256), torch.randn(2, 256)
    assert not torch.allclose(dp.attend("layer3", local, g1)[0], dp.attend("layer3", local, g2)[0])


@pytest.mark.parametrize("compatibility", ["pc", "dp"])
def test_the_final_stage_and_the_global_branch_learn(compatibility: str) -> None:
    """The old layer2+layer3 pc model left layer4, g and its projection without gradient."""
    model = _tiny(compatibility=compatibility).double()
    x, y = batch(64)
    assert dead_parameters(model, x, y) == []
    assert any(name.startswith("net.layer4.") for name, _ in model.named_parameters())


def test_other_levels_and_independent_heads() -> None:
    model = _tiny(levels=["layer2", "layer3", "layer4"], head="indep")
    out = forward_steps(model, torch.rand(2, 3, 64, 64))
    assert [tuple(a.shape) for a in out.maps] == [(2, 16, 16), (2, 8, 8), (2, 4, 4)]
    single = _tiny(levels=["layer3"], head="indep")
    logits = single(torch.rand(2, 3, 64, 64))  # one level: the output is a log-probability vector
    torch.testing.assert_close(logits.logsumexp(1), torch.zeros(2))
    # with pc and no layer4 level, layer4 cannot influence the output: it is not built or run
    assert isinstance(single.net.layer4, torch.nn.Identity)
    assert not any(name.startswith("net.layer4.") for name in single.state_dict())


def test_parameter_count_adds_exactly_the_attention_parts() -> None:
    base = sum(p.numel() for p in create_model("resnet-tiny").parameters()) - (256 * 10 + 10)  # without fc
    levels = 128 + 256  # layer3 and layer4 widths
    head = 2 * levels + levels * 10 + 10  # BN (gamma, beta) on each descriptor; concat classifier
    expected = {
        "pc": base + levels + head,  # u per level (no bias: the softmax removes it)
        # g = Linear(256 -> 256); g projected down to 128 by BN(256) + Linear with bias; layer4 uses g
        "dp": base + 256 * 256 + 256 + 2 * 256 + 256 * 128 + 128 + head,
    }
    for compatibility, count in expected.items():
        assert sum(p.numel() for p in _tiny(compatibility=compatibility).parameters()) == count


def test_r18_and_r50_build_with_their_widths() -> None:
    r18 = create_model("ltpa-r18", num_classes=100, compatibility="dp")
    assert r18.classifier.in_features == 256 + 512
    assert r18.project["layer3"][1].weight.shape == (256, 512)
    assert isinstance(r18.project["layer4"], torch.nn.Identity)
    r50 = create_model("ltpa-r50", num_classes=100)
    assert r50.classifier.in_features == 1024 + 2048
    assert r50.score["layer4"].weight.shape == (1, 2048, 1, 1)


def test_fvcore_traces_the_model() -> None:
    compute = profile(_tiny(), 64)
    plain = profile(create_model("resnet-tiny"), 64)
    assert compute.params == sum(p.numel() for p in _tiny().parameters())
    assert compute.gmacs[0] > plain.gmacs[0] > 0  # the attention parts cost a little more


@pytest.mark.parametrize("kwargs", [{"levels": ["layer5"]}, {"levels": []}, {"levels": ["layer2", "layer2"]},
                                    {"compatibility": "cos"}, {"head": "vote"},
                                    {"compatibility": "dp", "levels": ["layer2", "layer3"]}])
def test_bad_options_are_input_errors(kwargs: dict) -> None:
    with pytest.raises(InputError):
        create_model("ltpa-tiny", **kwargs)


def test_a_few_steps_on_a_fixed_batch_lower_the_loss() -> None:
    before, after = fixed_batch_losses(_tiny().train(), lambda model, x, y: F.cross_entropy(model(x), y))
    assert after < before


def test_pictures_overlay_the_attention_maps(tmp_path) -> None:
    from mgbench.report.glimpses import Clean, combine_maps, draw, observe

    coarse, fine = torch.zeros(2, 2, 2), torch.zeros(2, 4, 4)
    coarse[:, 0, 0], fine[:, 3, 3] = 0.9, 0.2  # peaks of different heights in opposite corners
    combined = combine_maps([coarse, fine], (8, 8))
    assert combined.shape == (2, 8, 8) and float(combined.max()) <= 1.0
    # each level is scaled to max 1 before averaging, so both corners carry the same weight
    assert torch.allclose(combined[:, 0, 0], combined[:, 7, 7])

    model = create_model("ltpa-tiny", num_classes=10)
    batch = observe(model, Clean(), torch.rand(2, 3, 64, 64), torch.tensor([1, 2]), torch.arange(2))
    assert batch.levels == 2 and batch.attention is not None and batch.attention.shape == (2, 64, 64)
    assert batch.boxes is None and batch.predictions.shape == (1, 2)
    out = draw(batch, [str(i) for i in range(10)], tmp_path / "ltpa.png", "ltpa")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
