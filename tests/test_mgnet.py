"""MGNet: shapes, glimpse geometry, the gradient rescaler, the loss, parameter counts.

Expected values come from the reference (/work/shared/reference/mgnet.md: the official code's
behaviour and measured parameter counts) or from independent computations (F.interpolate,
bilinear sampling of a linear ramp, hand-written cross-entropies).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mgbench.errors import InputError
from mgbench.models import create_model, forward_steps, list_architectures
from mgbench.models.mgnet import MGNet, glimpse_boxes
from mgbench.train.loop import LossModule

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.kernels]


@pytest.fixture(scope="module")
def tiny() -> MGNet:
    torch.manual_seed(0)
    return create_model("mgnet-tiny").eval()


def _images(batch: int = 3, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _locations(boxes: torch.Tensor) -> torch.Tensor:
    """(s, tx, ty) back from (x0, y0, x1, y1) fractions: s is half the side in [-1, 1] units."""
    s = boxes[..., 2] - boxes[..., 0]
    return torch.stack([s, 2 * boxes[..., 0] - 1 + s, 2 * boxes[..., 1] - 1 + s], dim=-1)


def test_registry_names_and_glimpse_sizes() -> None:
    for name in ("mgnet-r18", "mgnet-r50", "mgnet-tiny", "mgnet-baseline-r18", "mgnet-baseline-r50"):
        assert name in list_architectures()
    r18 = create_model("mgnet-r18")
    assert (r18.num_steps, r18.glimpse_size, r18.alpha, r18.gradient_scale) == (4, 96, 0.6, 0.02)
    assert create_model("mgnet-tiny").glimpse_size == 27  # int(64 // 2.33)
    baseline = create_model("mgnet-baseline-r18")
    assert (baseline.num_steps, baseline.glimpse_size) == (1, 224)
    assert baseline.localization is None and baseline.glimpse_fc is None


def test_shapes_and_per_step_outputs(tiny: MGNet) -> None:
    x = _images()
    with torch.no_grad():
        out = tiny.forward_steps(x)
        final = tiny(x)
        two = tiny.forward_steps(x, steps=2)
    assert out.logits.shape == (4, 3, 10) and out.boxes.shape == (4, 3, 4)
    assert torch.equal(final, out.logits[-1])  # the final step, never an average
    assert torch.equal(forward_steps(tiny, x).logits, out.logits)
    # Truncation computes the same first steps.
    assert torch.allclose(two.logits, out.logits[:2], atol=1e-6) and torch.allclose(two.boxes, out.boxes[:2])
    # Later glimpses really move: the network is not stuck on the identity.
    assert not torch.allclose(out.boxes[1], out.boxes[0])


def test_bad_steps_and_input_size(tiny: MGNet) -> None:
    with pytest.raises(InputError, match="steps"):
        tiny.forward_steps(_images(), steps=5)
    with pytest.raises(InputError, match="input_size=32"):
        tiny(_images(size=32))


def test_first_glimpse_is_the_identity_resize(tiny: MGNet) -> None:
    x = _images()
    image = tiny.normalize(x)
    glimpse = tiny.glimpse(image, tiny.identity_location(3, image))
    expected = F.interpolate(image, size=(27, 27), mode="bilinear", align_corners=True)
    assert torch.allclose(glimpse, expected, atol=1e-4)  # float rounding of the grid coordinates
    with torch.no_grad():
        boxes = tiny.forward_steps(x).boxes
    assert torch.equal(boxes[0], torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3))


def test_glimpse_samples_the_box_it_reports() -> None:
    """Bilinear sampling of a linear ramp is exact: each glimpse column must read the pixel
    position the box implies (0 and 1 = centres of the first and last pixel)."""
    model = MGNet("resnet-tiny", 10, input_size=64, mean=(0.0,) * 3, std=(1.0,) * 3)
    ramp = torch.arange(64.0).expand(1, 3, 64, 64)  # value = x pixel index
    location = torch.tensor([[0.3, 0.25, -0.4]])
    glimpse = model.glimpse(ramp, location)
    x0, _, x1, _ = (glimpse_boxes(location)[0] * 63).tolist()
    expected = torch.linspace(x0, x1, 27)
    assert torch.allclose(glimpse[0, 0, 5], expected, atol=1e-4)


def test_normalising_first_is_the_same_function() -> None:
    """The official code normalises in the data pipeline; we normalise inside and sample after."""
    model = create_model("mgnet-tiny")
    x = _images()
    location = torch.tensor([[0.35, 0.4, -0.5], [0.2, -0.8, 0.8], [0.5, 0.0, 0.1]])
    inside = model.glimpse(model.normalize(x), location)
    outside = model.normalize(model.glimpse(x, location))
    assert torch.allclose(inside, outside, atol=1e-5)


def test_scale_and_translation_bounds() -> None:
    """Boxes stay inside the image with side in (0.2, 0.5), also with a saturating location layer."""
    model = create_model("mgnet-tiny").eval()
    for scale in (1.0, 30.0):
        with torch.no_grad():
            model.localization.weight.normal_(0, scale / 16)
            model.localization.bias.normal_(0, scale)
            boxes = model.forward_steps(_images(batch=8, seed=3)).boxes[1:]
        side_x, side_y = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        assert torch.allclose(side_x, side_y, atol=1e-6)
        assert (side_x >= 0.2 - 1e-6).all() and (side_x <= 0.5 + 1e-6).all()
        assert (boxes >= -1e-6).all() and (boxes <= 1 + 1e-6).all()


def test_rescaler_scales_the_location_gradient_and_the_switch_removes_it() -> None:
    """With two glimpses the localization layer is used once and learns only through that location,
    so its whole gradient passes one rescaler: exactly x0.02. The switch removes it; the forward
    pass never changes. (With more glimpses, paths through several locations mix powers of 0.02.)"""
    torch.manual_seed(0)
    model = create_model("mgnet-tiny", glimpses=2).eval()
    x, y = _images(), torch.tensor([1, 2, 3])

    def run(enabled: bool | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model.zero_grad()
        image = x.clone().requires_grad_(True)
        if enabled is None:
            logits = model(image)
        else:
            with model.gradient_rescaler(enabled):
                logits = model(image)
        F.cross_entropy(logits, y).backward()
        return logits.detach(), model.localization.weight.grad.clone(), image.grad.clone()

    default, on, off = run(None), run(True), run(False)
    assert torch.equal(default[0], off[0]) and torch.equal(on[0], off[0])  # forward unchanged
    assert torch.equal(default[1], on[1])  # on by default
    assert off[1].abs().max() > 0
    assert torch.allclose(on[1], 0.02 * off[1], rtol=1e-4, atol=1e-10)
    assert not torch.allclose(on[2], off[2])  # the input gradient changes through the location path
    assert model._rescale_backward is True  # the context manager restores the setting


def test_rescaler_switch_restores_on_error(tiny: MGNet) -> None:
    switch = getattr(tiny, "gradient_rescaler", None)
    with pytest.raises(RuntimeError):
        with switch(False):
            raise RuntimeError("boom")
    assert tiny._rescale_backward is True


def test_training_loss_is_the_official_loss(tiny: MGNet) -> None:
    """(1 - 0.6) mean_t CE(logits_t) + 0.6 mean_{t>=2} CE(glimpse_fc(h_t)), h_t recomputed by hand."""
    x, y = _images(batch=4), torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        loss, final = tiny.training_loss(x, y)
        out = tiny.forward_steps(x)
        image = tiny.normalize(x)
        features = [tiny.backbone(tiny.glimpse(image, loc)) for loc in _locations(out.boxes)]
        global_ce = sum(F.cross_entropy(step, y) for step in out.logits) / 4
        aux_ce = sum(F.cross_entropy(tiny.glimpse_fc(h), y) for h in features[1:]) / 3
        module_loss, _ = LossModule(tiny)(x, y)
    assert torch.allclose(loss, 0.4 * global_ce + 0.6 * aux_ce, atol=1e-5)
    assert torch.equal(final, out.logits[-1])
    assert torch.equal(module_loss, loss)  # the train loop uses it


def test_baseline_loss_is_plain_cross_entropy() -> None:
    model = MGNet("resnet-tiny", 10, glimpses=1, factor=1.0, input_size=64).eval()
    x, y = _images(), torch.tensor([1, 2, 3])
    with torch.no_grad():
        loss, logits = model.training_loss(x, y)
        image = model.normalize(x)
        assert torch.allclose(model.glimpse(image, model.identity_location(3, image)), image, atol=1e-4)
    assert torch.allclose(loss, F.cross_entropy(logits, y))


def test_a_short_training_run_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = create_model("mgnet-tiny").train()
    x, y = _images(batch=16, seed=5), torch.arange(16) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss, _ = model.training_loss(x, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def _count(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


@pytest.mark.parametrize(
    "name, backbone, fusion, global_fc, glimpse_fc, total",
    [  # reference table (measured on the official code), 100 classes
        ("mgnet-r18", 11.18e6, 1.064e6, 51.6e3, 51.3e3, 12.34e6),
        ("mgnet-r50", 23.51e6, 16.84e6, 205e3, 205e3, 40.76e6),
    ],
)
def test_parameter_counts_match_the_reference(name: str, backbone: float, fusion: float, global_fc: float,
                                              glimpse_fc: float, total: float) -> None:
    model = create_model(name)
    for part, expected in ((model.backbone, backbone), (model.fusion, fusion), (model.global_fc, global_fc),
                           (model.glimpse_fc, glimpse_fc), (model, total)):
        assert _count(part) == pytest.approx(expected, rel=5e-3)
    assert round(_count(model) / 1e6, 2) == total / 1e6


def test_bad_constructor_arguments() -> None:
    with pytest.raises(InputError, match="glimpses"):
        create_model("mgnet-tiny", glimpses=0)
    with pytest.raises(InputError, match="alpha"):
        create_model("mgnet-tiny", alpha=1.5)


def test_mgnet_recipe_is_the_official_one() -> None:
    """The reference's training recipe (official README / main.py)."""
    from torchvision import transforms as T

    from mgbench.train.recipes import get_recipe, train_transform

    recipe = get_recipe("mgnet")
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.momentum, recipe.weight_decay) == (
        400, 256, 0.1, 0.9, 1e-4)
    assert (recipe.pct_start, recipe.div_factor, recipe.final_div_factor, recipe.amp) == (0.2, 25.0, 1e4, False)
    steps = train_transform(recipe.augmentation).transforms
    assert [type(t) for t in steps[:3]] == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.AutoAugment]
    assert steps[0].size == (224, 224) and steps[2].policy == T.AutoAugmentPolicy.IMAGENET
    assert steps[2].fill == [128, 128, 128]
