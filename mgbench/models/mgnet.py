"""MGNet, the Multi-Glimpse Network (Tan et al., BMVC 2021), and the official code's baseline.

A re-implementation of the official code (github.com/siahuat0727/MGNet, ``mgnet.py``), written
from its documented behaviour (``/work/shared/reference/mgnet.md``, ``docs/mgnet.md``):

- ONE backbone (a torchvision ResNet with ``fc = Identity``) called once per glimpse, so in
  training BatchNorm sees the statistics of each glimpse step separately, as in the original.
- Glimpse ``t`` is a square crop ``theta = [[s, 0, tx], [0, s, ty]]`` resampled to
  ``int(input_size // factor)`` pixels by ``affine_grid`` + ``grid_sample`` (bilinear, zero
  padding, ``align_corners=True``, no anti-aliasing). Glimpse 1 is the identity: the whole image.
- Each glimpse adds a token ``[h_t ; stopgrad(a_t)]`` (backbone feature and location); a one-head
  ``nn.MultiheadAttention`` over all tokens so far (recomputed at every step, no mask, no
  positional encoding), LayerNorm, the LAST token, ReLU gives ``z_t``.
- ``global_fc(z_t)`` are the logits of step ``t`` (never averaged over steps);
  ``localization(z_t)`` -> sigmoid -> gradient rescaler (identity forward, x0.02 backward) gives
  the next location: ``s = 0.2 + 0.3 u0``, ``t_xy = 2 (u_xy - 0.5)(1 - s)`` (the crop stays inside).
- Training loss ``(1 - alpha) mean_t CE(logits_t) + alpha mean_{t>=2} CE(glimpse_fc(h_t))``.

Choices that differ from the official code, each computing the same function:
- Normalisation happens inside the model (first layer, like every mgbench model) and the glimpses
  are sampled from the normalised image; the official code normalises in the data pipeline.
  Bilinear sampling is an affine combination of pixels (weights summing to one inside the image),
  so it commutes with the per-channel affine normalisation; only outside the image does the zero
  padding differ, and the tight-crop translation never samples there.
- The location after the final step is not computed (the official code computes it and discards
  it), and the one-step baseline has no localization layer at all (its official ``loc_network``
  is computed but never used; :mod:`mgbench.models.official` drops those weights when converting).
- The input size is fixed when the model is built (the glimpse size follows from it); the
  official code derives the glimpse size from each batch. A batch of another size is an error.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mgbench.errors import InputError
from mgbench.models._registry import register_model
from mgbench.models.anytime import StepOutputs
from mgbench.models.layers import DIGITS_MEAN, DIGITS_STD, IMAGENET_MEAN, IMAGENET_STD, Normalize
from mgbench.models.resnet import resnet_backbone

SCALE_MIN = 0.2
SCALE_RANGE = 0.3  # s in (0.2, 0.5): scale_max - scale_min of the official defaults
LOCATION_DIM = 3  # (s, tx, ty)


class _GradientScale(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``factor`` in the backward pass."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def _kaiming_linear(layer: nn.Linear) -> nn.Linear:
    """The official initialisation of every MGNet head: kaiming normal (fan in), zero bias."""
    nn.init.kaiming_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FeatureFusion(nn.Module):
    """One-head self-attention over the glimpse tokens [t, B, D] -> ReLU(LayerNorm(.)) of the last."""

    def __init__(self, dim: int):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads=1, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        for param in self.attention.parameters():
            if param.dim() == 2:  # in_proj_weight, out_proj.weight
                nn.init.kaiming_normal_(param)
            else:  # in_proj_bias, out_proj.bias
                nn.init.zeros_(param)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mixed = self.attention(tokens, tokens, tokens, need_weights=False)[0]
        return F.relu(self.norm(mixed)[-1])


def glimpse_boxes(locations: torch.Tensor) -> torch.Tensor:
    """(s, tx, ty) [..., 3] -> boxes (x0, y0, x1, y1) [..., 4] as fractions of the image.

    In ``align_corners=True`` coordinates, -1 and +1 are the centres of the first and last pixel;
    the box spans ``t - s .. t + s`` there, i.e. ``(t -+ s + 1) / 2`` of the image.
    """
    s, tx, ty = locations.unbind(-1)
    return torch.stack([(tx - s + 1) / 2, (ty - s + 1) / 2, (tx + s + 1) / 2, (ty + s + 1) / 2], dim=-1)


class MGNet(nn.Module):
    """Multi-Glimpse Network on a ResNet backbone; input [0, 1] NCHW at ``input_size``.

    ``forward`` returns the logits after the last glimpse; ``forward_steps`` the logits and glimpse
    boxes after each one; ``training_loss`` the official loss. ``glimpses=1, factor=1`` is the
    official code's baseline (one full-resolution step, no localization, no auxiliary head).
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        *,
        glimpses: int = 4,
        factor: float = 2.33,
        input_size: int = 224,
        alpha: float = 0.6,
        gradient_scale: float = 0.02,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        if not isinstance(glimpses, int) or glimpses < 1:
            raise InputError(f"glimpses must be a whole number >= 1, not {glimpses!r}")
        if factor < 1 or int(input_size // factor) < 1:
            raise InputError(f"factor must be >= 1 and leave a glimpse of a pixel or more, not {factor!r}")
        if not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must lie in [0, 1], not {alpha!r}")
        if not 0.0 < gradient_scale <= 1.0:
            raise InputError(f"gradient_scale must lie in (0, 1], not {gradient_scale!r}")
        self.num_steps = glimpses
        self.input_size = input_size
        self.glimpse_size = int(input_size // factor)
        self.alpha = alpha
        self.gradient_scale = gradient_scale
        self._rescale_backward = True

        self.normalize = Normalize(mean, std)
        self.backbone, dim = resnet_backbone(backbone)
        token = dim + LOCATION_DIM
        self.fusion = FeatureFusion(token)
        self.global_fc = _kaiming_linear(nn.Linear(token, num_classes))
        # Only models that take a second glimpse need a location or the auxiliary loss (the
        # official code also sets alpha = 0 for one step).
        self.localization = _kaiming_linear(nn.Linear(token, LOCATION_DIM)) if glimpses > 1 else None
        self.glimpse_fc = _kaiming_linear(nn.Linear(dim, num_classes)) if glimpses > 1 and alpha > 0 else None

    # ------------------------------------------------------------------ the switch for attacks

    @contextlib.contextmanager
    def gradient_rescaler(self, enabled: bool) -> Iterator[None]:
        """Within the block, forward passes use (``True``) or skip (``False``) the x0.02 gradient
        rescaling of the location path. The forward values never change: attacks use ``False`` to
        see the true gradient of the function. The setting is taken when the forward pass runs."""
        previous = self._rescale_backward
        self._rescale_backward = bool(enabled)
        try:
            yield
        finally:
            self._rescale_backward = previous

    # ------------------------------------------------------------------ the recurrence

    def identity_location(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """(s, tx, ty) = (1, 0, 0) for each image: the first glimpse sees the whole image."""
        return torch.tensor([1.0, 0.0, 0.0], dtype=like.dtype, device=like.device).expand(batch, LOCATION_DIM)

    def glimpse(self, image: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """The ``glimpse_size`` square crop of ``image`` at ``location`` (s, tx, ty)."""
        s, shift = location[:, :1], location[:, 1:]
        theta = torch.cat([torch.diag_embed(s.expand(-1, 2)), shift.unsqueeze(2)], dim=2)  # [B, 2, 3]
        size = (image.shape[0], image.shape[1], self.glimpse_size, self.glimpse_size)
        grid = F.affine_grid(theta, size, align_corners=True)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def next_location(self, z: torch.Tensor) -> torch.Tensor:
        assert self.localization is not None
        u = torch.sigmoid(self.localization(z))
        u = _GradientScale.apply(u, self.gradient_scale if self._rescale_backward else 1.0)
        s = SCALE_MIN + SCALE_RANGE * u[:, :1]
        shift = 2 * (u[:, 1:] - 0.5) * (1 - s)
        return torch.cat([s, shift], dim=1)

    def _run(self, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Logits [t, B, K], locations [t, B, 3] and backbone features h_1..h_t of ``steps`` glimpses."""
        if x.dim() != 4 or x.shape[-2:] != (self.input_size, self.input_size):
            raise InputError(
                f"this MGNet was built for [B, C, {self.input_size}, {self.input_size}] inputs, got "
                f"{list(x.shape)}: build it with input_size={x.shape[-1]} or resize the images"
            )
        image = self.normalize(x)
        location = self.identity_location(x.shape[0], image)
        tokens, logits, locations, features = [], [], [], []
        for step in range(steps):
            feature = self.backbone(self.glimpse(image, location))
            features.append(feature)
            locations.append(location)
            tokens.append(torch.cat([feature, location.detach()], dim=1))
            z = self.fusion(torch.stack(tokens))
            logits.append(self.global_fc(z))
            if step + 1 < steps:
                location = self.next_location(z)
        return torch.stack(logits), torch.stack(locations), features

    def forward_steps(self, x: torch.Tensor, steps: int | None = None) -> StepOutputs:
        """Logits [t, B, K] and glimpse boxes [t, B, 4] after each of the first ``steps`` glimpses."""
        steps = self.num_steps if steps is None else steps
        if not 1 <= steps <= self.num_steps:
            raise InputError(f"steps must lie in 1..{self.num_steps}, not {steps}")
        logits, locations, _ = self._run(x, steps)
        return StepOutputs(logits, glimpse_boxes(locations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, self.num_steps)[0][-1]

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 - alpha) mean_t CE(logits_t) + alpha mean_{t>=2} CE(glimpse_fc(h_t))`` and the final logits."""
        logits, _, features = self._run(x, self.num_steps)
        loss = torch.stack([F.cross_entropy(step, y) for step in logits]).mean()
        if self.glimpse_fc is None:
            return loss, logits[-1]
        auxiliary = torch.stack([F.cross_entropy(self.glimpse_fc(h), y) for h in features[1:]]).mean()
        return (1 - self.alpha) * loss + self.alpha * auxiliary, logits[-1]


# ---------------------------------------------------------------------------- the registry

_PAPER = "T=4 glimpses of int(224 // 2.33) = 96 px"


@register_model("mgnet-r18", family="mgnet", description=f"MGNet on ResNet-18, {_PAPER}", input_size=224)
def mgnet_r18(num_classes: int = 100, glimpses: int = 4, factor: float = 2.33, input_size: int = 224,
              alpha: float = 0.6, gradient_scale: float = 0.02,
              mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> MGNet:
    return MGNet("resnet18", num_classes, glimpses=glimpses, factor=factor, input_size=input_size,
                 alpha=alpha, gradient_scale=gradient_scale, mean=mean, std=std)


@register_model("mgnet-r50", family="mgnet", description=f"MGNet on ResNet-50, {_PAPER}", input_size=224)
def mgnet_r50(num_classes: int = 100, glimpses: int = 4, factor: float = 2.33, input_size: int = 224,
              alpha: float = 0.6, gradient_scale: float = 0.02,
              mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> MGNet:
    return MGNet("resnet50", num_classes, glimpses=glimpses, factor=factor, input_size=input_size,
                 alpha=alpha, gradient_scale=gradient_scale, mean=mean, std=std)


@register_model("mgnet-tiny", family="mgnet", input_size=64,
                description="MGNet on the small digits ResNet, T=4 glimpses of int(64 // 2.33) = 27 px")
def mgnet_tiny(num_classes: int = 10, glimpses: int = 4, factor: float = 2.33, input_size: int = 64,
               alpha: float = 0.6, gradient_scale: float = 0.02,
               mean: Sequence[float] = DIGITS_MEAN, std: Sequence[float] = DIGITS_STD) -> MGNet:
    return MGNet("resnet-tiny", num_classes, glimpses=glimpses, factor=factor, input_size=input_size,
                 alpha=alpha, gradient_scale=gradient_scale, mean=mean, std=std)


_BASELINE = "the official code's baseline (--n_iter 1 --scale 1.0): one full-resolution step through the fusion head"


@register_model("mgnet-baseline-r18", family="mgnet", description=f"ResNet-18, {_BASELINE}", input_size=224)
def mgnet_baseline_r18(num_classes: int = 100, input_size: int = 224,
                       mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> MGNet:
    return MGNet("resnet18", num_classes, glimpses=1, factor=1.0, input_size=input_size, mean=mean, std=std)


@register_model("mgnet-baseline-r50", family="mgnet", description=f"ResNet-50, {_BASELINE}", input_size=224)
def mgnet_baseline_r50(num_classes: int = 100, input_size: int = 224,
                       mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> MGNet:
    return MGNet("resnet50", num_classes, glimpses=1, factor=1.0, input_size=input_size, mean=mean, std=std)
