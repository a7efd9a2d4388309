"""Group-wise inhibition ("TENET training", Liu et al., ICCV 2021) as a training method.

A training method only: at test time the network is the plain backbone (no extra parameters,
no extra compute). It applies to our ResNet classifiers (``resnet-tiny``, ``resnet18``,
``resnet50``: :class:`mgbench.models.layers.Classifier` around a torchvision ``ResNet``), split
into F (normalisation, stem, ``layer1``..``layer3``) and D (``layer4``, pooling, ``fc``).

Every iteration is the normal cross-entropy step. After a warm-up, every ``every``-th iteration
adds a second optimiser step on the correctly classified part of the batch:

1. first pass, eval mode: ``A = F(x)``, ``L_d = sum_b sigmoid(D(A))[b, y_b]``, ``G = dL_d/dA``;
2. per sample, the C channel maps of ``A`` are grouped by K-means (:func:`kmeans_channels`);
3. group weights ``w_k = mean_HW(G_k)``, importance ``IS_g = sum_{k in g} w_k``; a group with
   ``IS_g <= 0`` keeps mask 1, otherwise its channels share the reversed map
   ``sigmoid(-z)``, ``z`` the standardised ``M_g = sum_{k in g} w_k A_k`` (:func:`inhibition_mask`);
4. second pass, train mode: ``logits = D(F(x) * mask)`` with the mask constant, loss
   ``0.1 * CE + 1e-3 * L_orth`` (:func:`orthogonality_loss` of ``F(x)``'s groups).

Warm-up: the reference switches TENET on after 500 iterations of CIFAR at batch 256, i.e. after
500 * 256 / 50,000 = 2.56 epochs. We keep that in epochs, so it scales with any recipe: with the
``tiny`` recipe (125 iterations per epoch) it starts at iteration 320 of 1,875, when the
digits ResNet is already fairly accurate (as a CIFAR ResNeXt is after 2.5 epochs), rather than
after 500 iterations (a quarter of the whole run) or 1.3 % of the run (24 iterations, when
it still classifies almost nothing).

Fixed bugs of the official code: the K-means mean of an empty cluster is NaN; here an empty
cluster keeps its previous centre (see :func:`kmeans_channels`), and empty groups are left out of
the orthogonality loss and never reach a mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import ResNet

from mgbench.errors import InputError
from mgbench.models.layers import Classifier
from mgbench.models.resnet import resnet_stem
from mgbench.train.loop import StepContext, register_method, standard_step

EPS = 1e-8
Stage = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GWIConfig:
    """The reference's CIFAR configuration (``ConfigForCIFAR``), warm-up in epochs (see above)."""

    groups: int = 6
    warmup_epochs: float = 500 * 256 / 50_000
    every: int = 3
    ce_weight: float = 0.1
    orth_weight: float = 1e-3
    max_iter: int = 50
    tol: float = 1e-4


def _squared_distances(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """points [B, C, N], centres [B, K, N] -> [B, C, K] squared Euclidean distances, from the
    differences (one centre at a time), not as ``|a|^2 - 2ab + |b|^2``: that expansion's
    rounding breaks exact ties, e.g. a two-channel cluster's mean is exactly as far from both of
    its channels, and such ties must go to the lowest channel index."""
    return torch.stack([(points - centres[:, k, None]).square().sum(2) for k in range(centres.shape[1])], dim=2)


def _snap(points: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Indices [B, K] of the channel nearest to each mean, cluster by cluster in order, each
    cluster skipping the channels already taken by the clusters before it."""
    distances = _squared_distances(points, means).transpose(1, 2)  # [B, K, C]
    taken = torch.zeros(points.shape[:2], dtype=torch.bool, device=points.device)
    chosen = []
    for k in range(means.shape[1]):  # K clusters (6): sequential by definition of the rule
        choice = distances[:, k].masked_fill(taken, float("inf")).argmin(1)
        taken[torch.arange(points.shape[0], device=points.device), choice] = True
        chosen.append(choice)
    return torch.stack(chosen, dim=1)


def _gather_rows(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """points [B, C, N], index [B, K] -> [B, K, N]."""
    return torch.gather(points, 1, index[:, :, None].expand(-1, -1, points.shape[2]))


def kmeans_channels(
    maps: torch.Tensor,
    k: int,
    *,
    max_iter: int = 50,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample K-means of the C channel maps of ``maps`` [B, C, ...] (flattened, Euclidean).

    The reference algorithm, batched: centres start at K distinct random channels; each
    iteration assigns every channel to its nearest centre, moves each centre to the mean of its
    channels and snaps it to the nearest channel not taken by a lower-numbered cluster; a sample
    stops when ``(sum_k |c_k - c_k'|)^2 < tol`` or after ``max_iter`` iterations. An empty
    cluster keeps its centre (the reference takes the mean of nothing: NaN). The random start
    is drawn on the CPU from ``generator`` (default: torch's global generator), so the result is
    deterministic under a seed on any device; ``init`` [B, K] gives the starting channels instead.

    Returns the labels [B, C] of each sample's last assignment step and the centres' channel
    indices [B, K].
    """
    points = maps.detach().flatten(2).double()  # float64: rounding far below any distance that matters
    batch, channels = points.shape[:2]
    if not 1 <= k <= channels:
        raise ValueError(f"K-means needs 1 <= k <= channels ({channels}), not k={k}")
    if init is None:
        init = torch.rand(batch, channels, generator=generator).argsort(1)[:, :k]
    elif (init.shape != (batch, k) or bool(init.sort(1).values.diff(1).eq(0).any())
          or bool(init.lt(0).any()) or bool(init.ge(channels).any())):
        raise ValueError(f"init must be ({batch}, {k}): distinct channel indices below {channels} per sample")
    index = init.to(points.device, torch.long)
    centres = _gather_rows(points, index)
    labels = torch.zeros(batch, channels, dtype=torch.long, device=points.device)
    active = torch.ones(batch, dtype=torch.bool, device=points.device)
    for _ in range(max_iter):
        assigned = _squared_distances(points, centres).argmin(2)  # [B, C]
        members = F.one_hot(assigned, k).to(points.dtype)  # [B, C, K]
        counts = members.sum(1)  # [B, K]
        means = torch.einsum("bck,bcn->bkn", members, points) / counts.clamp(min=1)[:, :, None]
        means = torch.where(counts[:, :, None] > 0, means, centres)
        new_index = _snap(points, means)
        new_centres = _gather_rows(points, new_index)
        shift = (new_centres - centres).norm(dim=2).sum(1).square()
        labels = torch.where(active[:, None], assigned, labels)
        index = torch.where(active[:, None], new_index, index)
        centres = torch.where(active[:, None, None], new_centres, centres)
        active &= shift >= tol
        if not active.any():
            break
    return labels, index


def inhibition_mask(features: torch.Tensor, grads: torch.Tensor, labels: torch.Tensor, groups: int) -> torch.Tensor:
    """The soft inhibition mask [B, C, H, W] from features A, gradients G = dL_d/dA and the
    channel groups ``labels`` [B, C]: 1 for a group of non-positive importance, else the
    group's reversed map ``sigmoid(-z)`` shared by its channels."""
    weights = grads.mean((2, 3))  # w_k [B, C]
    members = F.one_hot(labels, groups).to(features.dtype)  # [B, C, G]
    importance = torch.einsum("bcg,bc->bg", members, weights)
    group_maps = torch.einsum("bcg,bc,bchw->bghw", members, weights, features).flatten(2)  # M_g [B, G, HW]
    mean = group_maps.mean(2, keepdim=True)
    std = group_maps.std(2, unbiased=False, keepdim=True)
    reversed_maps = torch.sigmoid(-(group_maps - mean) / (std + EPS))
    group_mask = torch.where(importance[:, :, None] <= 0, torch.ones_like(reversed_maps), reversed_maps)
    channel_mask = torch.gather(group_mask, 1, labels[:, :, None].expand(-1, -1, group_mask.shape[2]))
    return channel_mask.view_as(features)


def orthogonality_loss(features: torch.Tensor, labels: torch.Tensor, groups: int) -> torch.Tensor:
    """Mean over the batch of ``sum_{i<j} |<m_i, m_j>| / (G'(G'-1)/2)`` over the G' non-empty
    groups' channel-mean maps ``m_g`` (a sample with one group contributes 0)."""
    flat = features.flatten(2)  # [B, C, HW]
    members = F.one_hot(labels, groups).to(flat.dtype)  # [B, C, G]
    counts = members.sum(1)  # [B, G]
    means = torch.einsum("bcg,bcn->bgn", members, flat) / counts.clamp(min=1)[:, :, None]
    gram = torch.einsum("bgn,bhn->bgh", means, means).abs()
    present = counts > 0
    upper = torch.ones(groups, groups, dtype=torch.bool, device=flat.device).triu(1)
    pairs = present[:, :, None] & present[:, None, :] & upper
    valid = present.sum(1).to(flat.dtype)
    denominator = torch.where(valid > 1, valid * (valid - 1) / 2, torch.ones_like(valid))
    return ((gram * pairs).sum((1, 2)) / denominator).mean()


def resnet_parts(model: nn.Module) -> tuple[Stage, Stage]:
    """F (image -> ``layer3`` output) and D (``layer3`` output -> logits) of a ResNet classifier."""
    if not isinstance(model, Classifier) or not isinstance(model.net, ResNet):
        raise InputError(
            f"training method gwi needs a ResNet classifier, not {type(model).__name__}: "
            "train resnet-tiny, resnet18 or resnet50 with --method gwi"
        )
    net = model.net

    def features(x: torch.Tensor) -> torch.Tensor:
        return net.layer3(net.layer2(net.layer1(resnet_stem(net, model.normalize(x)))))

    def head(a: torch.Tensor) -> torch.Tensor:
        return net.fc(torch.flatten(net.avgpool(net.layer4(a)), 1))

    return features, head


class GroupWiseInhibition:
    """The ``gwi`` training method (callable on a :class:`StepContext`)."""

    def __init__(self, config: GWIConfig = GWIConfig()):
        if config.groups < 1 or config.every < 1 or config.warmup_epochs < 0:
            raise InputError("gwi needs groups >= 1, every >= 1 and warmup_epochs >= 0: fix the GWIConfig")
        self.config = config

    def __call__(self, ctx: StepContext) -> tuple[float, torch.Tensor]:
        loss, logits = standard_step(ctx)
        number = ctx.iteration + 1  # the reference counts iterations from 1
        warmup = round(self.config.warmup_epochs * ctx.iterations_per_epoch)
        if number >= warmup and number % self.config.every == 0:
            correct = logits.argmax(1).eq(ctx.y)
            if correct.any():
                self.inhibition_step(ctx, ctx.x[correct], ctx.y[correct])
        return loss, logits

    def inhibition_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> float:
        """The extra optimiser step on correctly classified images; returns its loss."""
        cfg = self.config
        model = ctx.net.model
        features, head = resnet_parts(model)
        was_training = model.training
        model.eval()
        with torch.no_grad(), ctx.autocast():
            first = features(x).float()
        first.requires_grad_(True)
        with torch.enable_grad(), ctx.autocast():
            detection = torch.sigmoid(head(first).float()).gather(1, y[:, None]).sum()
        grads = torch.autograd.grad(detection, first)[0]
        first = first.detach()
        labels, _ = kmeans_channels(first, cfg.groups, max_iter=cfg.max_iter, tol=cfg.tol)
        mask = inhibition_mask(first, grads, labels, cfg.groups)
        model.train()
        ctx.optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            second = features(x)
            orth = orthogonality_loss(second.float(), labels, cfg.groups)
            logits = head(second * mask.to(second.dtype))
            loss = cfg.ce_weight * F.cross_entropy(logits.float(), y) + cfg.orth_weight * orth
        loss.backward()
        ctx.optimizer.step()
        model.train(was_training)
        return float(loss.detach())


register_method("gwi")(GroupWiseInhibition())
