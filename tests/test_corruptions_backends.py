"""The reference backend's determinism, and the torch backend's fidelity to it.

Fidelity is measured two ways (see mgbench.corruptions.fidelity): with the reference's own
random numbers replayed (implementation differences only), and with the torch backend's own
seeding (same random process: the same statistics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgbench.corruptions import ALL, ReferenceBackend, TorchBackend, corrupt_scaled, fidelity, torch_backend
from mgbench.corruptions.reference import from_uint8
from mgbench.corruptions.scaling import working_size
from mgbench.corruptions.torch_backend import pull_chains
from mgbench.data.digits import load_digits

# kernels: compares floats across implementations; .ci/run repeats it on a second CPU kernel path.
pytestmark = pytest.mark.kernels


@pytest.fixture(autouse=True)
def _uncached_kernels() -> None:
    """Each test builds the defocus disks and frost layers afresh: a cache filled by an earlier
    test (or, under mutation testing, by the process mutmut forks each mutant from) would hand
    the code under test the kernels of another version of it."""
    torch_backend._disk.cache_clear()
    torch_backend.frost_layers.cache_clear()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_digits()["test_images"][:8]


# Largest mean absolute difference (uint8 levels) between the torch code fed the reference's
# random numbers and the reference, per image size and corruption (measured on this suite's
# images, then about twice that). A float32 round-off crossing an integer under the reference's
# truncation to uint8 costs 1/(H*W*3) per pixel value. The larger ones: defocus/motion blur: the
# reference's float kernels sum to just below 1, so flat regions (the digits' backgrounds)
# truncate one level lower; spatter: OpenCV's chamfer distance transform vs our exact one, so a
# few drop edges differ; saturate severity 3 (2 x saturation): results that are whole levels
# exactly land just below them in the reference's float64 HSV round trip and truncate. A wrong
# severity constant moves most pixels by several levels (MAE > 1).
REPLAY_MAE: dict[int, dict[str, float]] = {
    32: {name: 0.05 for name in ALL} | {
        "brightness": 0.1, "defocus_blur": 0.1, "saturate": 0.25, "spatter": 0.6,
    },
    64: {name: 0.03 for name in ALL} | {
        "frost": 0.05, "gaussian_blur": 0.04, "defocus_blur": 0.8, "motion_blur": 0.6, "glass_blur": 0.2,
        "spatter": 0.5, "saturate": 0.35,
    },
    224: {name: 0.01 for name in ALL} | {
        "contrast": 0.06, "frost": 0.03, "spatter": 0.35, "saturate": 0.3,
    },
}
EXACT = ("shot_noise", "impulse_noise", "jpeg_compression", "pixelate")


def _check_replay(frame) -> None:
    for row in frame.itertuples():
        assert row.replay_mae <= REPLAY_MAE[row.size][row.corruption], row
        if row.corruption in EXACT:
            assert row.replay_max == 0, row
        elif row.corruption != "spatter":
            assert row.replay_max <= 2, row


@pytest.mark.parametrize("name", ALL)
def test_torch_replays_the_reference_at_32_every_severity(name: str) -> None:
    """Every corruption at every severity on one small image, against imagecorruptions' own code
    at the same random state: any constant of the ImageNet-C parameter tables that differs from
    the reference's (say gaussian_noise severity 4 at 0.30 instead of 0.26) moves the image by
    several levels. One test per corruption, so a failure names it (and mutation testing runs only
    the corruption a mutant touches)."""
    _check_replay(fidelity.measure(fidelity.synthetic_images(1, 32), [name], [1, 2, 3, 4, 5]))


@pytest.mark.slow
def test_torch_replays_the_reference_at_64(digits: np.ndarray) -> None:
    _check_replay(fidelity.measure(digits[:2], ALL, [1, 2, 3, 4, 5]))


@pytest.mark.slow
def test_torch_replays_the_reference_at_224() -> None:
    _check_replay(fidelity.measure(fidelity.synthetic_images(1, 224), ALL, [3, 5]))


def _changes(backend, x: torch.Tensor, name: str) -> float:
    """Mean absolute change (uint8 levels) over severities 1-5 and all images."""
    ids = list(range(len(x)))
    return float(np.mean([(backend(x, ids, name, s) - x).abs().mean() * 255 for s in range(1, 6)]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["glass_blur", "motion_blur", "snow", "frost", "fog", "spatter",
                                  "elastic_transform"])
def test_random_corruptions_change_images_as_much_as_the_reference(digits: np.ndarray, name: str) -> None:
    """Own seeding: independent draws of the same random process move the images by about the
    same amount (8 images x 5 severities; frost picks one of 6 pictures per image, the most
    variable)."""
    x = from_uint8(digits, torch.zeros(()))
    ref, own = _changes(ReferenceBackend(workers=0), x, name), _changes(TorchBackend(), x, name)
    assert own == pytest.approx(ref, rel=0.25 if name == "frost" else 0.12)


@pytest.mark.parametrize("name, severity", [("gaussian_noise", 3), ("speckle_noise", 5), ("shot_noise", 2),
                                            ("impulse_noise", 4)])
def test_noise_statistics_match(name: str, severity: int) -> None:
    """On flat grey images, the residual's mean and spread and the salt/pepper fractions of
    the torch backend's own draws match the reference's, within 4 standard errors of the
    difference of two independent samples (8 x 128 x 128 x 3 = 393k values each)."""
    grey = np.full((8, 128, 128, 3), 100, dtype=np.uint8)
    x = from_uint8(grey, torch.zeros(()))
    ids = list(range(8))
    ref = (ReferenceBackend(workers=0)(x, ids, name, severity) * 255 - 100).double()
    own = (TorchBackend()(x, ids, name, severity) * 255 - 100).double()
    count = ref.numel()
    spread = float(ref.std())
    assert float(own.mean()) == pytest.approx(float(ref.mean()), abs=4 * spread * (2 / count) ** 0.5)
    assert float(own.std()) == pytest.approx(spread, rel=4 * (1 / count) ** 0.5 * 2)
    for level in (-100, 155):  # pepper and salt
        p = float((ref == level).double().mean())
        tolerance = 4 * (2 * p * (1 - p) / count) ** 0.5 + 1e-5
        assert float((own == level).double().mean()) == pytest.approx(p, abs=tolerance)


def test_pull_chains_is_the_reference_loop() -> None:
    """The vectorised glass-blur shuffle equals the sequential loop it replaces (written out
    here on a small image with the same offsets)."""
    rng = np.random.default_rng(0)
    height, width, delta = 12, 10, 2
    image = rng.integers(0, 255, (height, width, 3))
    visited = [(h, w) for h in range(height - delta, delta, -1) for w in range(width - delta, delta, -1)]
    offsets = rng.integers(-delta, delta, (len(visited), 2))
    expected = image.copy()
    for (h, w), (dx, dy) in zip(visited, offsets):
        expected[h, w] = expected[h + dy, w + dx]
    got = pull_chains(torch.from_numpy(image).permute(2, 0, 1)[None].double(),
                      torch.from_numpy(offsets[None, :, 0]), torch.from_numpy(offsets[None, :, 1]), delta)
    assert np.array_equal(got[0].permute(1, 2, 0).numpy(), expected)


def test_reference_is_deterministic_and_leaves_numpy_alone(digits: np.ndarray) -> None:
    x = from_uint8(digits[:2], torch.zeros(()))
    backend = ReferenceBackend(workers=0)
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    for name in ALL:
        first, second = backend(x, [4, 9], name, 3), backend(x, [4, 9], name, 3)
        assert torch.equal(first, second), name
        assert torch.equal(first * 255, torch.round(first * 255)), name
    assert np.random.random() == before  # the caller's global stream was not consumed
    # Different images (ids) get different noise.
    assert not torch.equal(backend(x, [4, 9], "gaussian_noise", 3), backend(x, [5, 9], "gaussian_noise", 3))


@pytest.mark.slow
def test_reference_process_pool_gives_the_same_bytes(digits: np.ndarray) -> None:
    x = from_uint8(digits[:4], torch.zeros(()))
    for name in ("glass_blur", "impulse_noise", "frost"):
        assert torch.equal(ReferenceBackend(workers=2)(x, [0, 1, 2, 3], name, 2),
                           ReferenceBackend(workers=0)(x, [0, 1, 2, 3], name, 2)), name


def test_torch_seeds_per_image_not_per_batch(digits: np.ndarray) -> None:
    x = from_uint8(digits[:3], torch.zeros(()))
    backend = TorchBackend()
    for name in ALL:
        batch = backend(x, [7, 8, 9], name, 4)
        alone = backend(x[1:2], [8], name, 4)
        assert torch.equal(batch[1:2], alone), name
        assert torch.equal(batch * 255, torch.round(batch * 255)), name
        assert batch.shape == x.shape and batch.min() >= 0 and batch.max() <= 1


def test_resample224_runs_size_dependent_corruptions_at_224(digits: np.ndarray) -> None:
    assert working_size(64, 64, "motion_blur", "resample224") == (224, 224)
    assert working_size(64, 64, "gaussian_noise", "resample224") is None
    assert working_size(224, 300, "motion_blur", "resample224") is None
    assert working_size(64, 64, "motion_blur", "native") is None
    x = from_uint8(digits[:2], torch.zeros(()))
    # At 224 the radius-3 defocus disk spans ~1 pixel of the 64 x 64 image: much milder.
    native = corrupt_scaled(TorchBackend(), x, [0, 1], "defocus_blur", 1, "native")
    scaled = corrupt_scaled(TorchBackend(), x, [0, 1], "defocus_blur", 1, "resample224")
    assert (scaled - x).abs().mean() < 0.6 * (native - x).abs().mean()
    # Both backends share the resampling: replaying the reference's draws still matches.
    ref = corrupt_scaled(ReferenceBackend(workers=0), x, [0, 1], "defocus_blur", 1, "resample224")
    assert float((ref - scaled).abs().mean() * 255) < 0.8
