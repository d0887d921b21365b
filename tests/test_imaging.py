"""Behaviour tests for visfuse_utils.imaging: known shapes, known overlaps, a known segmentation."""
import numpy as np
import pytest
from skimage import draw

from visfuse_utils import imaging

SIZE = 64


def disc_mask(radius: float, center=(32, 32), size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[draw.disk(center, radius, shape=(size, size))] = True
    return mask


def star_mask(points: int = 8, outer: float = 22, inner: float = 9, size: int = SIZE) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False)
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    mask = np.zeros((size, size), bool)
    mask[draw.polygon(size / 2 + radii * np.sin(angles), size / 2 + radii * np.cos(angles), shape=(size, size))] = True
    return mask


def noisy_disc_scan(radius: float = 10, seed: int = 0, center=(30, 36)) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a noisy, vignetted background, as a 1 x H x W uint8 scan, and its true mask."""
    rng = np.random.default_rng(seed)
    truth = disc_mask(radius, center)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    img = 0.4 * (1 - 0.5 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)) + 0.3 * truth
    img = img + 0.04 * rng.standard_normal(img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)[None], truth


def test_disc_features_match_geometry():
    r = 12
    mask = disc_mask(r)
    f = imaging.region_features(mask.astype(np.uint8) * 200, mask)
    assert set(f) == set(imaging.FEATURE_NAMES)
    assert f["area"] == pytest.approx(np.pi * r ** 2, rel=0.05)
    assert f["eccentricity"] < 0.1
    assert f["solidity"] > 0.95
    assert f["border_irregularity"] == pytest.approx(1.0, abs=0.1)
    assert f["intensity_mean"] == pytest.approx(200 / 255)
    assert f["intensity_std"] == pytest.approx(0.0, abs=1e-9)
    assert f["contrast"] == pytest.approx(200 / 255)


def test_star_is_more_irregular_and_less_solid_than_disc():
    disc, star = disc_mask(12), star_mask()
    fd = imaging.region_features(disc.astype(np.uint8) * 200, disc)
    fs = imaging.region_features(star.astype(np.uint8) * 200, star)
    assert fs["border_irregularity"] > 2 * fd["border_irregularity"]
    assert fs["solidity"] < 0.8 * fd["solidity"]


def test_ellipse_is_eccentric():
    mask = np.zeros((SIZE, SIZE), bool)
    mask[draw.ellipse(32, 32, 8, 24, shape=(SIZE, SIZE))] = True
    f = imaging.region_features(mask.astype(np.uint8) * 200, mask)
    assert f["eccentricity"] == pytest.approx(np.sqrt(1 - (8 / 24) ** 2), abs=0.03)


def test_empty_mask_gives_zero_features():
    f = imaging.region_features(np.full((SIZE, SIZE), 100, np.uint8), np.zeros((SIZE, SIZE), bool))
    assert f == dict.fromkeys(imaging.FEATURE_NAMES, 0.0)


def test_dice_known_answers():
    a = disc_mask(10)
    assert imaging.dice(a, a) == 1.0
    assert imaging.dice(disc_mask(5, (10, 10)), disc_mask(5, (50, 50))) == 0.0
    assert imaging.dice(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # nothing to find, nothing found
    half = np.zeros((4, 4), bool)
    half[:2] = True
    assert imaging.dice(half, np.ones((4, 4), bool)) == pytest.approx(2 * 8 / (8 + 16))
    np.testing.assert_allclose(imaging.dice_scores(np.stack([a, a]), np.stack([a, ~a])), [1.0, 0.0])


@pytest.mark.parametrize("classes", [2, 3])
def test_otsu_segmentation_recovers_bright_disc(classes):
    scan, truth = noisy_disc_scan()
    mask = imaging.segment_lesion(scan, classes=classes)
    assert imaging.dice(mask, truth) > 0.9


def test_segmentation_finds_nothing_in_plain_noise():
    rng = np.random.default_rng(1)
    scan = (np.clip(0.4 + 0.04 * rng.standard_normal((1, SIZE, SIZE)), 0, 1) * 255).astype(np.uint8)
    assert not imaging.segment_lesion(scan).any()
    blank = np.full((1, SIZE, SIZE), 90, np.uint8)
    assert not imaging.segment_lesion(blank).any()


def test_batch_segmentation_matches_single_scans():
    scans, truths = zip(*(noisy_disc_scan(radius=6 + 2 * k, seed=k, center=(24 + 4 * k, 40 - 3 * k)) for k in range(4)))
    stack = np.stack(scans)
    masks = imaging.segment_lesions(stack, progress=False)
    assert masks.shape == (4, SIZE, SIZE) and masks.dtype == bool
    for scan, mask in zip(scans, masks):
        np.testing.assert_array_equal(mask, imaging.segment_lesion(scan))
    assert imaging.dice_scores(masks, np.stack(truths)).min() > 0.85


def test_segment_steps_are_returned_for_display():
    scan, _ = noisy_disc_scan()
    mask, steps = imaging.segment_lesion(scan, return_steps=True)
    for key in ("denoised", "flattened", "threshold", "binary", "opened", "components", "mask", "contrast"):
        assert key in steps
    np.testing.assert_array_equal(steps["mask"], mask)
    assert steps["contrast"] > 0.12


def test_feature_table_shape_and_columns():
    scan, truth = noisy_disc_scan()
    table = imaging.feature_table(np.stack([scan, scan]), np.stack([truth, np.zeros_like(truth)]), progress=False)
    assert list(table.columns) == imaging.FEATURE_NAMES
    assert table.shape == (2, len(imaging.FEATURE_NAMES))
    assert table.loc[0, "area"] == truth.sum() and table.loc[1, "area"] == 0


def test_filters_do_what_they_say():
    rng = np.random.default_rng(2)
    flat = np.full((SIZE, SIZE), 0.5) + 0.05 * rng.standard_normal((SIZE, SIZE))
    for method in ("gaussian", "median"):
        assert imaging.denoise(flat, method).std() < 0.6 * flat.std()
    step = np.zeros((SIZE, SIZE))
    step[:, SIZE // 2:] = 1.0
    sobel = imaging.edges(step, "sobel")
    assert sobel[:, SIZE // 2 - 1: SIZE // 2 + 1].mean() > 10 * sobel[:, :SIZE // 4].mean() + 1e-6
    canny = imaging.edges(step, "canny")
    assert canny.dtype == bool and canny[:, SIZE // 2 - 2: SIZE // 2 + 2].any() and not canny[:, :SIZE // 4].any()
    ramp = np.tile(np.linspace(0.4, 0.6, SIZE), (SIZE, 1))
    for method in ("equalize", "clahe"):
        out = imaging.enhance(ramp, method)
        assert np.ptp(out) > 2 * np.ptp(ramp)
    with pytest.raises(ValueError):
        imaging.denoise(flat, "bilateral")


def test_to_float_handles_uint8_and_colour():
    rgb = np.stack([np.full((4, 4), v, np.uint8) for v in (0, 255, 255)])
    gray = imaging.to_float(rgb)
    assert gray.shape == (4, 4) and gray.dtype == np.float64
    np.testing.assert_allclose(gray, 2 / 3)
    with pytest.raises(ValueError):
        imaging.to_float(np.zeros((2, 2, 2, 2)))
