"""Group-wise inhibition (TENET training): K-means, masks, orthogonality loss, schedule."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from seed_helpers import fixed_batch

from mgbench.errors import InputError
from mgbench.models import create_model
from mgbench.train import get_method
from mgbench.train.gwi import (
    GroupWiseInhibition,
    GWIConfig,
    inhibition_mask,
    kmeans_channels,
    orthogonality_loss,
    resnet_parts,
)
from mgbench.train.loop import LossModule, StepContext

pytestmark = pytest.mark.kernels  # the outcome rests on float arithmetic (tests/README.md)


def reference_kmeans(points: np.ndarray, init: list[int], max_iter: int = 50, tol: float = 1e-4):
    """One sample, written from the description in the reference document, loop by loop.
    Returns (labels of the last assignment, centre channels, how often a snap hit a taken channel)."""
    chosen = list(init)
    centres = points[chosen].copy()
    conflicts = 0
    for _ in range(max_iter):
        labels = np.array([int(np.argmin([((p - c) ** 2).sum() for c in centres])) for p in points])
        new_chosen: list[int] = []
        for k in range(len(chosen)):
            members = points[labels == k]
            mean = members.mean(0) if len(members) else centres[k]
            order = np.argsort([((p - mean) ** 2).sum() for p in points], kind="stable")
            if order[0] in new_chosen:
                conflicts += 1
            new_chosen.append(int(next(i for i in order if i not in new_chosen)))
        new_centres = points[new_chosen]
        shift = sum(np.sqrt(((a - b) ** 2).sum()) for a, b in zip(new_centres, centres)) ** 2
        chosen, centres = new_chosen, new_centres
        if shift < tol:
            break
    return labels, chosen, conflicts


def test_kmeans_hand_computed_example() -> None:
    # six one-pixel channels 0 1 2 10 11 12, K = 2, started at channels 0 and 1:
    # assign {0} {1,2,10,11,12} -> means 0, 7.2 -> snap to channels 0 and 3 (value 10);
    # assign {0,1,2} {10,11,12} -> means 1, 11 -> channels 1 and 4; the next round changes nothing
    maps = torch.tensor([0.0, 1, 2, 10, 11, 12]).view(1, 6, 1, 1)
    labels, centres = kmeans_channels(maps, 2, init=torch.tensor([[0, 1]]))
    assert labels.tolist() == [[0, 0, 0, 1, 1, 1]]
    assert centres.tolist() == [[1, 4]]


def test_kmeans_snaps_to_the_nearest_unused_channel_by_hand() -> None:
    # two-pixel channels 0:(2,4) 1:(1,8) 2:(6,1) 3:(2,7) 4:(3,2) 5:(0,6), K = 2, started at 3 and 5.
    # round 1: {1,2,3} {0,4,5}; means (3, 5.33) -> channel 0 (squared distance 2.78) and
    #   (1.67, 4) -> channel 0 again (0.11), taken by cluster 0, so its next nearest, channel 4 (5.78)
    # round 2: {0,1,3,5} {2,4}; means (1.25, 6.25) -> channel 3; (4.5, 1.5) -> channels 2 and 4 tie
    #   at 2.5: the lower index, 2
    # round 3: the same groups and centres: stop
    maps = torch.tensor([[2.0, 4], [1, 8], [6, 1], [2, 7], [3, 2], [0, 6]]).view(1, 6, 2, 1)
    labels, centres = kmeans_channels(maps, 2, init=torch.tensor([[3, 5]]))
    assert labels.tolist() == [[0, 0, 1, 0, 1, 0]]
    assert centres.tolist() == [[3, 2]]
    _, after_one_round = kmeans_channels(maps, 2, init=torch.tensor([[3, 5]]), max_iter=1)
    assert after_one_round.tolist() == [[0, 4]]


def test_kmeans_matches_the_reference_loop() -> None:
    generator = torch.Generator().manual_seed(1)
    maps = torch.relu(torch.randn(16, 24, 3, 3, generator=generator) - 0.5)  # sparse, some dead channels
    init = torch.stack([torch.randperm(24, generator=generator)[:6] for _ in range(16)])
    labels, centres = kmeans_channels(maps, 6, init=init)
    conflicts = 0
    for b in range(16):
        ref_labels, ref_centres, hits = reference_kmeans(maps[b].flatten(1).double().numpy(), init[b].tolist())
        assert labels[b].tolist() == ref_labels.tolist()
        assert centres[b].tolist() == ref_centres
        conflicts += hits
    assert conflicts > 0  # the "nearest unused channel" rule was exercised here too


def test_kmeans_is_deterministic_under_a_seed() -> None:
    maps = torch.rand(4, 32, 4, 4, generator=torch.Generator().manual_seed(0))
    runs = [kmeans_channels(maps, 6, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert all(len(set(row)) == 6 for row in runs[0][1].tolist())  # K distinct centre channels


def test_empty_clusters_produce_no_nan() -> None:
    # channels 0 and 1 are equal: both join cluster 0 (ties go to the first centre) and cluster 1
    # starts empty; the reference code would take the mean of nothing (NaN)
    features = torch.tensor([0.0, 0.0, 10.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous()
    labels, centres = kmeans_channels(features, 3, init=torch.tensor([[0, 1, 2]]))
    assert labels.tolist() == [[0, 0, 2]]
    assert centres.tolist() == [[0, 1, 2]]
    grads = torch.ones_like(features)
    assert torch.isfinite(inhibition_mask(features, grads, labels, 3)).all()
    assert torch.isfinite(orthogonality_loss(features, labels, 3))


def test_mask_is_one_for_non_positive_importance_and_soft_otherwise() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(2, 6, 4, 4, generator=generator)
    labels = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 2]])
    grads = torch.ones_like(features)
    grads[:, 2:4] = -1.0  # sample 0: group 1 has importance -2; sample 1: group 1 gets -1 + -1
    grads[0, 4] = -1.0  # sample 0, group 2: w = -1 + 1 = 0 -> non-positive, mask 1
    mask = inhibition_mask(features, grads, labels, 3)
    assert mask.shape == features.shape
    for b, g, one in [(0, 0, False), (0, 1, True), (0, 2, True), (1, 0, False), (1, 1, True), (1, 2, False)]:
        group = mask[b, labels[b] == g]
        if one:
            assert torch.equal(group, torch.ones_like(group))
        else:
            assert bool(((group > 0) & (group < 1)).all())
            assert torch.equal(group, group[:1].expand_as(group))  # shared by the group's channels


def test_reversed_map_of_a_group_by_hand() -> None:
    features = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # [1, 2, 2, 2]
    grads = torch.full_like(features, 0.5)
    labels = torch.tensor([[0, 1]])
    mask = inhibition_mask(features, grads, labels, 2)
    m = 0.5 * np.array([1.0, 2.0, 3.0, 6.0])  # M_0 = w * A_0, w = mean of the gradient = 0.5
    z = (m - m.mean()) / (m.std() + 1e-8)  # population std
    np.testing.assert_allclose(mask[0, 0].flatten().numpy(), 1 / (1 + np.exp(z)), rtol=1e-6)
    # group 1: w = 0.5 > 0 but a constant map: z = 0 everywhere -> 0.5, not NaN
    np.testing.assert_allclose(mask[0, 1].numpy(), 0.5)


def test_orthogonality_loss_by_hand() -> None:
    maps = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],  # groups {a}, {b, c}, {}: means [1,0], [.5,1] -> |.5| / 1
        [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],  # one group only -> 0
        [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]],  # three groups: (0 + 1 + 2) / 3 = 1
    ]).view(3, 3, 2, 1)
    labels = torch.tensor([[0, 1, 1], [2, 2, 2], [0, 1, 2]])
    torch.testing.assert_close(orthogonality_loss(maps, labels, 3), torch.tensor((0.5 + 0.0 + 1.0) / 3))


def test_split_reproduces_the_model_for_every_backbone() -> None:
    for name, size in (("resnet-tiny", 32), ("resnet18", 64), ("resnet50", 64)):
        torch.manual_seed(0)
        model = create_model(name, num_classes=10).eval()
        features, head = resnet_parts(model)
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(head(features(x)), model(x))
    with pytest.raises(InputError):
        resnet_parts(create_model("ltpa-tiny"))


class _Recording(GroupWiseInhibition):
    def __init__(self, config: GWIConfig):
        super().__init__(config)
        self.calls: list[tuple[int, int]] = []

    def inhibition_step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> float:
        self.calls.append((ctx.iteration + 1, len(y)))
        return super().inhibition_step(ctx, x, y)


def test_schedule_warm_up_in_epochs_every_third_iteration_on_correct_images() -> None:
    assert isinstance(get_method("gwi"), GroupWiseInhibition)
    torch.manual_seed(0)
    model = create_model("resnet-tiny")
    with torch.no_grad():
        model.net.fc.bias[0] = 20.0  # every image is predicted as class 0 throughout
    x, _ = fixed_batch(n=8)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])  # so exactly the first four are correct
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the predictions must not change
    method = _Recording(GWIConfig(warmup_epochs=1.25))
    for iteration in range(9):  # 4 iterations per epoch: the warm-up ends at iteration number 5
        method(StepContext(LossModule(model), x, y, optimizer, iteration, contextlib.nullcontext, 4))
    assert method.calls == [(6, 4), (9, 4)]


def test_inhibition_step_trains_on_the_correct_subset_and_lowers_its_loss() -> None:
    torch.manual_seed(0)
    model = create_model("resnet-tiny")
    x, y = fixed_batch(n=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ctx = StepContext(LossModule(model), x, y, optimizer, 0, contextlib.nullcontext, 1)
    method = GroupWiseInhibition(GWIConfig(warmup_epochs=0, every=1))
    losses = [method.inhibition_step(ctx, x, y) for _ in range(5)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert model.training
    ce = []
    for iteration in range(5):  # the whole method: CE step plus the inhibition step, every iteration
        ce.append(method(StepContext(LossModule(model), x, y, optimizer, iteration, contextlib.nullcontext, 1))[0])
    assert ce[-1] < ce[0]
    with torch.no_grad():
        assert float(F.cross_entropy(model.eval()(x), y)) < ce[0]
