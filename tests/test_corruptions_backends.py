"""The reference backend's determinism, the torch backend's fidelity to it, and the torch
backend's OpenCV parts (Canny, histogram equalisation, dilation, the water drops) against OpenCV.

Fidelity is measured two ways (see mgbench.corruptions.fidelity): with the reference's own
random numbers replayed (implementation differences only), and with the torch backend's own
seeding (same random process: the same statistics)."""

from __future__ import annotations

import os
import select
import signal
from typing import Callable

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from mgbench.corruptions import ALL, ReferenceBackend, TorchBackend, corrupt_scaled, fidelity, torch_backend
from mgbench.corruptions.reference import from_uint8
from mgbench.corruptions.scaling import working_size
from mgbench.corruptions.torch_backend import (
    _dilate,
    _shifted_sum,
    _water,
    canny,
    edge_distance,
    equalize_hist,
    pull_chains,
)
from mgbench.data.digits import load_digits

# kernels: compares floats across implementations; .ci/run repeats it on a second CPU kernel path.
pytestmark = pytest.mark.kernels


@pytest.fixture(autouse=True)
def _uncached_kernels() -> None:
    """Each test builds the defocus disks, frost layers and pixelate's resampling tables afresh:
    a cache filled by an earlier test (or, under mutation testing, by the process mutmut forks
    each mutant from) would hand the code under test the kernels of another version of it."""
    for cached in (torch_backend._disk, torch_backend.frost_layers, torch_backend._box_matrix,
                   torch_backend._nearest_index):
        cached.cache_clear()


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
        if row.corruption == "spatter" and row.severity >= 4:  # mud: no distance transform, replays exactly
            assert row.replay_mae <= 0.01 and row.replay_max <= 1, row  # measured 0.0002 and 1 at 32 px
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


# ----------------------------------------------------------------------------- the parts, exactly
# The image operations the torch backend rebuilds from OpenCV, each against OpenCV (or SciPy's
# exact distance transform) on images made to hit their edge cases: ties between neighbouring
# gradient magnitudes, magnitudes exactly at a threshold, gradients on either side of OpenCV's
# integer 22.5-degree test, weak edges reached only after many rounds of hysteresis, histograms
# whose lowest level is not 0 or holds one pixel, edge pixels more than ``cap`` away. The replay
# tests above compare whole corruptions with a tolerance (spatter's is loose: its distance
# transform differs from OpenCV's chamfer on purpose); these compare the parts exactly.


def _batch(*images: np.ndarray) -> torch.Tensor:
    """uint8-valued float32 ``[B, 1, H, W]``."""
    return torch.from_numpy(np.stack(images).astype(np.float32))[:, None]


def _step_image() -> np.ndarray:
    """Flat regions one step of 10 or 20 levels apart: Sobel magnitudes of exactly 40 and 80,
    equal on both sides of each step (ties), and a ramp of rising contrast along one edge."""
    image = np.full((24, 40), 100, np.uint8)
    image[:, 20:] = 110            # a vertical step of 10: |gx| = 40 on both sides
    image[12:, :] = 130            # a horizontal step of 20 below: |gy| = 80
    for x in range(3, 18):         # a weak edge whose contrast grows towards x = 3
        image[4:8, x] = 100 + (18 - x) * 4
    return image


def _chain_image() -> np.ndarray:
    """A 1-pixel line with a strong start and a long weak tail that winds back and forth: only
    repeated hysteresis rounds (more than eight steps) reach its end."""
    image = np.zeros((30, 30), np.uint8)
    for row in range(2, 28, 4):
        image[row, 2:28] = 60
        image[row:row + 4, 27 if (row // 4) % 2 == 0 else 2] = 60
    image[2, 2:5] = 255
    return image


def _ratio_patch(gx: int, gy: int) -> np.ndarray:
    """A pixel whose Sobel gradient is exactly (gx, gy) (same parity, both even here), with
    neighbours set so that its horizontal and diagonal non-maximum tests disagree."""
    image = np.zeros((9, 9), np.int64)
    image[4, 5] = gx // 2          # weight 2 in gx
    image[5, 4] = gy // 2          # weight 2 in gy
    image[2:7, 0:2] = 3            # neighbours that make the directions disagree
    return image.clip(0, 255).astype(np.uint8)


CANNY_CASES = [
    (_step_image(), 40, 80), (_step_image(), 39, 79), (_step_image(), 40.9, 80.5), (_step_image(), 30, 40),
    (_chain_image(), 50, 150), (_chain_image(), 100, 300),
    (np.random.default_rng(0).integers(0, 256, (23, 37)).astype(np.uint8), 50, 150),
    ((np.random.default_rng(1).integers(0, 4, (31, 19)) * 60).astype(np.uint8), 100, 200),
    (_ratio_patch(338, 140), 10, 20), (_ratio_patch(478, 198), 10, 20),
]


@pytest.mark.parametrize("index", range(len(CANNY_CASES)))
def test_canny_is_opencvs(index: int) -> None:
    image, low, high = CANNY_CASES[index]
    expected = cv2.Canny(image, low, high) > 0
    assert np.array_equal(canny(_batch(image), low, high)[0, 0].numpy(), expected)


def test_canny_direction_test_at_tan_22_5_degrees() -> None:
    """OpenCV compares |gy| << 15 with |gx| * round(tan(22.5 deg) * 2**15) = |gx| * 13573. At
    (gx, gy) = (338, 140) the gradient is below that line (13573 * 338 > 140 << 15) but would be
    above it with 13572; at (478, 198) it is above it, and would be below it with 13574: the two
    patches put a pixel on each side, and the canny cases above check the edges OpenCV finds."""
    assert (140 << 15) < 338 * 13573 and not (140 << 15) < 338 * 13572
    assert not (198 << 15) < 478 * 13573 and (198 << 15) < 478 * 13574
    for gx, gy in ((338, 140), (478, 198)):
        image = _ratio_patch(gx, gy)
        sobel_x = cv2.Sobel(image, cv2.CV_16S, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        sobel_y = cv2.Sobel(image, cv2.CV_16S, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        assert (sobel_x[4, 4], sobel_y[4, 4]) == (gx, gy)


def test_a_batch_of_canny_maps_is_each_images_own() -> None:
    images = [CANNY_CASES[0][0][:20, :30], CANNY_CASES[6][0][:20, :30]]
    out = canny(_batch(*images), 50, 150)
    for k, image in enumerate(images):
        assert np.array_equal(out[k, 0].numpy(), cv2.Canny(image, 50, 150) > 0)


def test_shifted_sum_is_a_correlation() -> None:
    rng = np.random.default_rng(2)
    padded = torch.from_numpy(rng.integers(0, 256, (2, 1, 9, 14)).astype(np.float32))
    kernel = [[-2, 0, 1], [3, 0, -1], [0, 5, 2]]
    expected = F.conv2d(padded, torch.tensor(kernel, dtype=torch.float32)[None, None])
    assert torch.equal(_shifted_sum(padded, kernel), expected)


def test_dilate_is_opencvs_3x3() -> None:
    rng = np.random.default_rng(3)
    masks = rng.random((2, 11, 17)) < 0.08
    masks[0, 0, 0] = masks[1, 10, 16] = masks[1, 0, 16] = True  # corners: nothing outside the image counts
    out = _dilate(torch.from_numpy(masks)[:, None])
    for k in range(2):
        expected = cv2.dilate(masks[k].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert np.array_equal(out[k, 0].numpy(), expected)


def _equalize_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    random = rng.integers(0, 256, (12, 20)).astype(np.uint8)
    few = rng.choice(np.array([7, 50, 51, 200], np.uint8), (12, 20))  # the lowest level is not 0
    lonely = np.full((12, 20), 10, np.uint8)
    lonely[3, 4] = 200                                                 # one pixel above the lowest level
    unique_low = few.copy()
    unique_low[0, 0] = 3                                               # the lowest level holds one pixel
    flat = np.full((12, 20), 99, np.uint8)                             # one level only
    return [random, few, lonely, unique_low, flat]


def test_equalize_hist_is_opencvs_per_image() -> None:
    cases = _equalize_cases()
    out = equalize_hist(_batch(*cases))
    assert out.dtype == torch.float32 and out.shape == (5, 1, 12, 20)
    for k, image in enumerate(cases):
        assert np.array_equal(out[k, 0].numpy(), cv2.equalizeHist(image).astype(np.float32)), k
    as_bytes = equalize_hist(torch.from_numpy(np.stack(cases[:2]))[:, None])
    assert as_bytes.dtype == torch.uint8  # the input's type comes back
    assert np.array_equal(as_bytes[1, 0].numpy(), cv2.equalizeHist(cases[1]))


def test_edge_distance_is_the_exact_distance_capped() -> None:
    edges = np.zeros((2, 48, 40), bool)
    edges[0, 24, 20] = True                   # one point: distances up to beyond the cap
    edges[0, 3, 0] = True
    edges[1, 0, 39] = True                    # one corner: 20-ish to the left and down
    edges[1, 47, 10:12] = True
    for cap in (20, 7):
        out = edge_distance(torch.from_numpy(edges)[:, None], cap=cap)
        assert out.dtype == torch.float32
        for k in range(2):
            expected = np.minimum(ndimage.distance_transform_edt(~edges[k]), cap)
            np.testing.assert_allclose(out[k, 0].numpy(), expected, rtol=0, atol=1e-5)
    nothing = edge_distance(torch.zeros(1, 1, 10, 30, dtype=torch.bool), cap=20)
    assert torch.equal(nothing, torch.full((1, 1, 10, 30), 20.0))


def _reference_water(liquid: np.ndarray, intensity: float) -> np.ndarray:
    """imagecorruptions' water drops (spatter, severities 1-3) in OpenCV, with its chamfer
    distance transform replaced by the exact one (the one documented difference)."""
    levels = (liquid * 255).astype(np.uint8)
    edges = cv2.Canny(levels, 50, 150) > 0
    dist = np.minimum(ndimage.distance_transform_edt(~edges), 20).astype(np.float32)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    drops = levels * dist
    return drops / drops.max() * intensity


def test_water_drops_are_the_references() -> None:
    """Two random puddle maps, and one large drop whose centre lies more than the cap (20 px)
    away from its edge."""
    rng = np.random.default_rng(5)
    liquids = []
    for seed_sigma in (2.0, 3.0):
        field = ndimage.gaussian_filter(rng.random((40, 56)), seed_sigma)
        field = (field - field.min()) / (field.max() - field.min())
        liquids.append(np.where(field > 0.55, field, 0).astype(np.float32))
    rows, cols = np.mgrid[:40, :56]
    distance = np.hypot(rows - 20, cols - 28)
    liquids.append(np.where(distance < 27, 0.8 - distance / 100, 0).astype(np.float32))
    out = _water(torch.from_numpy(np.stack(liquids))[:, None], 0.7)
    for k, liquid in enumerate(liquids):
        np.testing.assert_allclose(out[k, 0].numpy(), _reference_water(liquid, 0.7), rtol=0, atol=2e-6)
    dry = _water(torch.zeros(1, 1, 16, 16), 0.7)  # no drop at all: left clean, not 0/0
    assert torch.equal(dry, torch.zeros(1, 1, 16, 16))


def _same_in_a_fork(corrupt: Callable[[], torch.Tensor]) -> bool:
    """Whether ``corrupt()`` gives the same result in a forked child as here (run here first, so
    that its pools exist in this process); False when the child hangs for 60 s."""
    expected = corrupt()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave at once
        try:
            os.write(write, b"1" if torch.equal(corrupt(), expected) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 60)
    answer = os.read(read, 1) if ready else b""
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return answer == b"1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_pools_are_not_inherited_by_a_fork() -> None:
    """A forked process (a DataLoader worker, mutmut's mutant processes) inherits the JPEG thread
    pool and the reference's process pools as objects but not their threads: it must start its
    own instead of waiting forever."""
    x = torch.rand(2, 3, 32, 32)
    assert _same_in_a_fork(lambda: TorchBackend()(x, [0, 1], "jpeg_compression", 3))
    assert _same_in_a_fork(lambda: ReferenceBackend(workers=2)(x, [0, 1], "gaussian_noise", 2))


@pytest.mark.parametrize("radius, alias_blur", [(3, 0.1), (8, 0.5), (9, 0.5), (10, 0.5)])
def test_disk_kernel_is_imagecorruptions(radius: int, alias_blur: float) -> None:
    """defocus_blur's kernel: the reference's own ``disk`` (in float64), at the radii on either
    side of its switch from a 3 x 3 to a 5 x 5 anti-aliasing blur."""
    from imagecorruptions.corruptions import disk

    expected = disk(radius, alias_blur, dtype=np.float64)
    np.testing.assert_allclose(torch_backend.disk_kernel(radius, alias_blur).numpy(), expected, rtol=0, atol=1e-12)


def test_plasma_fractal_is_imagecorruptions() -> None:
    """fog's and frost's height map: the reference's diamond-square with its random numbers."""
    from imagecorruptions.corruptions import plasma_fractal

    state = np.random.get_state()
    try:
        np.random.seed(11)
        expected = plasma_fractal(mapsize=64, wibbledecay=2.5)
    finally:
        np.random.set_state(state)
    ours = torch_backend.plasma_fractal(fidelity.NumpyReplay([11], "fog"), 1, 64, 2.5, torch.device("cpu"))
    np.testing.assert_allclose(ours[0].numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("height, width", [(40, 56), (37, 41), (61, 49)])
def test_pixelate_of_a_non_square_image_is_the_references(height: int, width: int) -> None:
    """Width and height kept apart, and PIL's BOX and NEAREST at their edges: 40 px at factor 0.4
    gives 16 boxes of 2.5 pixels (input pixel centres exactly on box edges; enlarging back, exact
    ties); at 37, 41, 61 and 49 px the box test is decided in the last bit of float64."""
    image = np.random.default_rng(6).integers(0, 256, (1, height, width, 3)).astype(np.uint8)
    x = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255
    for severity in range(1, 6):
        ours = torch.round(TorchBackend()(x, [0], "pixelate", severity) * 255).to(torch.uint8)
        expected = ReferenceBackend(workers=0).corrupt_uint8(image, [0], "pixelate", severity)
        assert np.array_equal(ours.permute(0, 2, 3, 1).numpy(), expected), severity


def test_each_corruption_draws_its_own_random_numbers() -> None:
    """The per-image seed includes the corruption's name: Gaussian and speckle noise on the same
    image id and severity are independent (the same draws would make them correlate fully)."""
    x = torch.full((1, 3, 32, 32), 0.5)
    gaussian = TorchBackend()(x, [3], "gaussian_noise", 1) - 0.5
    speckle = TorchBackend()(x, [3], "speckle_noise", 1) - 0.5
    assert abs(np.corrcoef(gaussian.flatten().numpy(), speckle.flatten().numpy())[0, 1]) < 0.2
