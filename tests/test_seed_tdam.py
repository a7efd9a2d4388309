"""TDAM (top-down attention module): searchlight math, per-step BatchNorm, parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from liveness import batch, dead_parameters
from seed_helpers import fixed_batch_losses

from mgbench.errors import InputError
from mgbench.flops import profile
from mgbench.models import create_model
from mgbench.models.tdam import Searchlight, TopDownBlock

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)


def _tiny(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("tdam-tiny", **kwargs)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_searchlight_follows_the_channel_then_spatial_formula() -> None:
    torch.manual_seed(0)
    light = Searchlight(bottom_channels=16, top_channels=64, joint=True)
    bottom, top = torch.randn(2, 16, 8, 8), torch.randn(2, 64, 4, 4)
    out = light(bottom, top)
    assert out.shape == bottom.shape
    # S = W_s [ReLU(W_t p(top)); ReLU(W_b p(bottom))], written out with plain matrices
    w_t, w_b, w_s = (conv.weight.flatten(1) for conv in (light.top, light.bottom, light.out))
    assert w_t.shape == (4, 64) and w_b.shape == (4, 16) and w_s.shape == (16, 8)  # C_top / 16 = 4
    hidden = torch.cat([torch.relu(top.mean((2, 3)) @ w_t.T), torch.relu(bottom.mean((2, 3)) @ w_b.T)], dim=1)
    s = hidden @ w_s.T  # [B, C_bottom]
    channel = bottom * torch.sigmoid(s)[:, :, None, None]
    spatial = torch.einsum("bc,bchw->bhw", s, channel)
    torch.testing.assert_close(out, channel * torch.sigmoid(spatial)[:, None])


def test_top_only_searchlight_ignores_the_bottom_summary() -> None:
    torch.manual_seed(0)
    light = Searchlight(bottom_channels=16, top_channels=64, joint=False)
    assert light.bottom is None and light.out.weight.shape == (16, 4, 1, 1)
    top = torch.randn(2, 64, 4, 4)
    bottom = torch.randn(2, 16, 8, 8)
    # the light depends on the bottom only through the modulation, not through its summary
    torch.testing.assert_close(light.light(bottom, top), light.light(bottom * 3 + 1, top))


def test_blocks_of_layer3_and_layer4_carry_the_released_configuration() -> None:
    tiny = _tiny()
    for stage in ("layer3", "layer4"):
        for block in getattr(tiny.net, stage):
            assert isinstance(block, TopDownBlock)
            # BasicBlock: m = 2, bottom = the block input, conv1+bn1+conv2+bn2 recomputed
            assert [unit[0] for unit in block.recurrent] == ["conv1", "conv2"] and block.fixed == ()
    assert not any(isinstance(b, TopDownBlock) for s in ("layer1", "layer2") for b in getattr(tiny.net, s))
    r50 = create_model("tdam-r50", num_classes=10)
    block = r50.net.layer3[0]
    # Bottleneck: m = 1, bottom = act2 output (width 256), top = bn3 output (1024), conv3 recomputed
    assert [unit[0] for unit in block.recurrent] == ["conv3"]
    assert block.searchlight.bottom.weight.shape == (64, 256, 1, 1)
    assert block.searchlight.top.weight.shape == (64, 1024, 1, 1)
    assert block.step_norms[0][0].num_features == 1024


def test_each_later_step_has_its_own_batchnorm() -> None:
    model = _tiny(steps=3)
    block = model.net.layer3[0]
    norms = [block.bn1, block.bn2] + [norm for step in block.step_norms for norm in step]
    assert len(block.step_norms) == 2 and len({id(n) for n in norms}) == 6
    model.train()
    model(torch.rand(4, 3, 64, 64))  # one training forward updates every step's statistics
    means = [n.running_mean.clone() for n in (block.bn2, block.step_norms[0][1], block.step_norms[1][1])]
    assert all(m.abs().sum() > 0 for m in means)
    assert not torch.allclose(means[0], means[1]) and not torch.allclose(means[1], means[2])
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    reference = model(x)
    with torch.no_grad():
        block.step_norms[1][1].bias.add_(1.0)  # the last step's BN feeds the output
    assert not torch.allclose(model(x), reference)


def test_a_plain_resnet_checkpoint_fits_the_shared_layers() -> None:
    plain = create_model("resnet-tiny").state_dict()
    td = _tiny().state_dict()
    assert set(plain) <= set(td)
    assert all(plain[k].shape == td[k].shape for k in plain)
    extra = set(td) - set(plain)
    assert extra and all(".searchlight." in k or ".step_norms." in k for k in extra)


def test_parameter_counts_match_the_reference() -> None:
    """ResNet-50 with 1000 classes: base 25.56M, TDAM joint 27.65M, top-only 27.06M."""
    assert round(_params(create_model("resnet50", num_classes=1000)) / 1e6, 2) == 25.56
    assert round(_params(create_model("tdam-r50", num_classes=1000)) / 1e6, 2) == 27.65
    assert round(_params(create_model("tdam-r50", num_classes=1000, variant="top")) / 1e6, 2) == 27.06


def test_resnet50_compute_matches_the_reference() -> None:
    """Reference (ImageNet, 224 px): FLOPs 4.12G -> 4.59G, i.e. TDAM adds about 0.47 GMACs."""
    base = profile(create_model("resnet50", num_classes=1000), 224).gmacs[0]
    td = profile(create_model("tdam-r50", num_classes=1000), 224).gmacs[0]
    assert td - base == pytest.approx(0.47, abs=0.01)


def test_joint_and_top_only_differ() -> None:
    joint, top = _tiny(), _tiny(variant="top")
    # joint adds W_b (C_bot x rd) and rd more inputs to W_s in each of the two blocks
    # layer3: bottom 64 ch (block input), top 128 -> rd 8; layer4: bottom 128, top 256 -> rd 16
    assert _params(joint) - _params(top) == (64 * 8 + 8 * 64) + (128 * 16 + 16 * 128)
    with torch.no_grad():  # off the zero-initialised last BN, where every block is its shortcut
        for model in (joint, top):
            for stage in ("layer3", "layer4"):
                getattr(model.net, stage)[0].step_norms[-1][-1].weight.fill_(1.0)
    top.load_state_dict({k: v for k, v in joint.state_dict().items() if "searchlight" not in k}, strict=False)
    x = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(joint.eval()(x), top.eval()(x))


def test_r18_and_fvcore() -> None:
    r18 = create_model("tdam-r18", num_classes=100)
    assert r18.net.layer3[0].searchlight.bottom.weight.shape == (16, 128, 1, 1)  # bottom = 128-ch block input
    out = r18.eval()(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 100)
    compute, plain = profile(_tiny(), 64), profile(create_model("resnet-tiny"), 64)
    # conv1 + conv2 of the layer3 block (64 -> 128 ch, 8x8 out) and the layer4 block (128 -> 256,
    # 4x4) run a second time; the searchlights and extra BatchNorms add a little on top
    convs = (64 * 128 + 128 * 128) * 9 * 8 * 8 + (128 * 256 + 256 * 256) * 9 * 4 * 4
    extra = (compute.gmacs[0] - plain.gmacs[0]) * 1e9
    assert convs <= extra < 1.01 * convs


def test_the_last_batchnorm_before_each_residual_add_starts_at_zero() -> None:
    """timm's zero_init_last_bn (the official code's): every residual block starts as its shortcut."""
    model = _tiny()
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        block = getattr(model.net, stage)[0]
        last = block.step_norms[-1][-1] if isinstance(block, TopDownBlock) else block.bn2
        assert torch.all(last.weight == 0)
        others = [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d) and m is not last]
        assert others and all(torch.all(m.weight == 1) for m in others)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = model.net.layer2(model.net.layer1(model.net.relu(model.net.bn1(model.net.conv1(
            model.normalize(x))))))
        block = model.net.layer3[0].eval()
        torch.testing.assert_close(block(features), torch.relu(block.downsample(features)))


def test_the_official_zero_init_leaves_the_top_path_dead_for_good() -> None:
    """The official code zeroes step 0's bn2 in a TD block: the step-0 top is exactly 0, ReLU's
    gradient at 0 is 0, and the searchlight's top path, bn1 and bn2 of step 0 never learn."""
    model = _tiny(zero_init="official").double()
    x, y = batch(64)
    expected = [f"net.{stage}.0.{name}" for stage in ("layer3", "layer4")
                for name in ("bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias", "searchlight.top.weight")]
    assert sorted(dead_parameters(model, x, y)) == sorted(expected)
    assert dead_parameters(_tiny().double(), x, y) == []  # zeroing the last step's BN instead: all learn


@pytest.mark.parametrize("kwargs", [{"variant": "bottom"}, {"steps": 1}, {"steps": 2.5}, {"zero_init": "none"}])
def test_bad_options_are_input_errors(kwargs: dict) -> None:
    with pytest.raises(InputError):
        create_model("tdam-tiny", **kwargs)


def test_a_few_steps_on_a_fixed_batch_lower_the_loss() -> None:
    before, after = fixed_batch_losses(_tiny().train(), lambda model, x, y: F.cross_entropy(model(x), y))
    assert after < before
