"""Classic image processing for scans: denoise, enhance, edges, segment, region features (notebook 02).

Each step is a thin, named wrapper around scikit-image, so the notebook can show one
step at a time and the traditional baseline (segment -> measure -> classify) is one
call per image. Images come in as the course stores them (uint8, C x H x W or H x W)
and are worked on as floats in [0, 1].
"""
from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_NAMES = ["area", "solidity", "eccentricity", "border_irregularity",
                 "intensity_mean", "intensity_std", "contrast"]
BACKGROUND_SCALE = 0.25  # background blur sigma, as a fraction of the image width (wider than any lesion)


def to_float(image: np.ndarray) -> np.ndarray:
    """A scan (uint8, C x H x W or H x W) as an H x W float image in [0, 1]; colour is averaged to gray."""
    x = np.asarray(image)
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    if x.ndim == 3:
        x = x.mean(axis=0)
    if x.ndim != 2:
        raise ValueError(f"expected an H x W or C x H x W image, got shape {np.shape(image)}")
    return x.astype(np.float64) / scale


def denoise(image: np.ndarray, method: str = "gaussian", size: float = 1.0) -> np.ndarray:
    """Smooth pixel noise: a Gaussian blur (``size`` = sigma) or a median filter (disk of radius ``size``).

    The Gaussian averages noise away but also softens edges; the median keeps edges and
    removes isolated specks (salt-and-pepper) better; a line survives a disc it fills more than half of.
    """
    from skimage import filters, morphology

    x = to_float(image)
    if method == "gaussian":
        return filters.gaussian(x, sigma=size, preserve_range=True)
    if method == "median":
        return filters.median(x, morphology.disk(max(1, int(round(size)))))
    raise ValueError(f"method must be 'gaussian' or 'median', got {method!r}")


def enhance(image: np.ndarray, method: str = "clahe", clip_limit: float = 0.01) -> np.ndarray:
    """Stretch contrast: global histogram equalisation, or CLAHE (local, with clipped histograms).

    Equalisation spreads the gray levels over the full range; CLAHE does it per tile and
    clips each tile's histogram so that flat regions do not have their noise amplified.
    """
    from skimage import exposure

    x = np.clip(to_float(image), 0, 1)
    if method == "equalize":
        return exposure.equalize_hist(x)
    if method == "clahe":
        return exposure.equalize_adapthist(x, clip_limit=clip_limit)
    raise ValueError(f"method must be 'equalize' or 'clahe', got {method!r}")


def edges(image: np.ndarray, method: str = "sobel", sigma: float = 1.0) -> np.ndarray:
    """Edge map: Sobel gradient magnitude (float), or Canny edges (bool, thin and linked).

    Sobel answers "how steep is the intensity here"; Canny smooths with ``sigma``, keeps
    only local maxima of the gradient and links them with two thresholds (hysteresis).
    """
    from skimage import feature, filters

    x = to_float(image)
    if method == "sobel":
        return filters.sobel(x)
    if method == "canny":
        return feature.canny(x, sigma=sigma)
    raise ValueError(f"method must be 'sobel' or 'canny', got {method!r}")


def flatten_background(image: np.ndarray, scale: float = BACKGROUND_SCALE) -> np.ndarray:
    """Subtract the slowly varying background (a Gaussian blur with sigma = ``scale`` x image width).

    Vignetting and uneven tissue brightness shift whole regions up or down; removing them
    lets one global threshold work everywhere in the scan.
    """
    from skimage import filters

    x = to_float(image)
    return x - filters.gaussian(x, sigma=scale * x.shape[-1], preserve_range=True)


def segment_flattened(flat: np.ndarray, classes: int = 3, min_contrast: float = 0.12,
                      min_area: float = 0.002) -> tuple[np.ndarray, dict]:
    """Threshold -> opening -> connected components -> brightest component, holes filled.

    ``flat`` is a denoised, background-flattened scan (H x W float). Returns the mask and
    the intermediate results (threshold, binary, opened, components, contrast) for display.
    """
    from scipy import ndimage as ndi
    from skimage import filters, measure, morphology

    try:
        if classes == 2:
            threshold = float(filters.threshold_otsu(flat))
        else:
            threshold = float(filters.threshold_multiotsu(flat, classes=classes, nbins=64)[-1])
    except ValueError:  # too few gray levels to split (a blank scan): nothing stands out
        threshold = float(np.max(flat))
    binary = flat > threshold
    opened = morphology.opening(binary, morphology.disk(1))
    labels = measure.label(opened)
    mask = np.zeros_like(binary)
    contrast = 0.0
    regions = [r for r in measure.regionprops(labels, intensity_image=flat) if r.area >= min_area * flat.size]
    if regions:
        best = max(regions, key=lambda r: r.intensity_mean)
        mask = ndi.binary_fill_holes(labels == best.label)
        contrast = float(flat[mask].mean() - flat[~mask].mean()) if (~mask).any() else 0.0
        if contrast < min_contrast:
            mask = np.zeros_like(mask)
    steps = {"threshold": threshold, "binary": binary, "opened": opened, "components": labels,
             "mask": mask, "contrast": contrast}
    return mask, steps


def segment_lesion(image: np.ndarray, classes: int = 3, min_contrast: float = 0.12,
                   min_area: float = 0.002, return_steps: bool = False):
    """Lesion mask (H x W bool) of one scan by thresholding; empty when no region stands out.

    Steps: Gaussian denoise, background flattening, Otsu threshold (``classes=2``) or the
    top class of multi-Otsu (``classes=3``: background, bright tissue, lesion), a
    morphological opening (drops specks), connected components, the brightest component
    larger than ``min_area`` x H x W kept and its holes filled. If that component is less
    than ``min_contrast`` brighter than the rest, the scan is called lesion-free.
    ``return_steps=True`` also returns the intermediate images (a dict) for display.
    """
    smooth = denoise(image, "gaussian", 1.0)
    flat = flatten_background(smooth)
    mask, steps = segment_flattened(flat, classes, min_contrast, min_area)
    if return_steps:
        return mask, {"denoised": smooth, "flattened": flat, **steps}
    return mask


def segment_lesions(images: np.ndarray, classes: int = 3, min_contrast: float = 0.12,
                    min_area: float = 0.002, progress: bool = True) -> np.ndarray:
    """``segment_lesion`` over a stack of scans (N x C x H x W): N x H x W bool masks.

    The two blurs run once on the whole stack (faster than image by image); the
    thresholding steps run per scan, exactly as in ``segment_lesion``.
    """
    from skimage import filters
    from tqdm.auto import tqdm

    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"expected an N x C x H x W stack of scans, got shape {x.shape}")
    if len(x) == 0:
        return np.zeros((0,) + x.shape[-2:], bool)
    x = x.mean(axis=1) / 255.0 if x.dtype == np.uint8 else x.mean(axis=1).astype(np.float64)
    smooth = filters.gaussian(x, sigma=(0, 1.0, 1.0), preserve_range=True)
    width = x.shape[-1]
    flat = smooth - filters.gaussian(smooth, sigma=(0, BACKGROUND_SCALE * width, BACKGROUND_SCALE * width),
                                     preserve_range=True)
    masks = [segment_flattened(f, classes, min_contrast, min_area)[0]
             for f in tqdm(flat, desc="segment", leave=False, disable=not progress)]
    return np.stack(masks)


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A|+|B|) of two masks; 1.0 when both are empty (nothing to find, nothing found)."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    total = pred.sum() + target.sum()
    return 1.0 if total == 0 else float(2.0 * (pred & target).sum() / total)


def dice_scores(preds: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Dice of each pair of masks in two N x H x W stacks."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predicted masks but {len(targets)} target masks")
    return np.array([dice(p, t) for p, t in zip(preds, targets)])


def region_features(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Handcrafted descriptors of the masked region (all its pixels, taken as one region).

    area (pixels), solidity (area / convex-hull area), eccentricity (0 for a circle),
    border_irregularity (perimeter² / (4π·area): 1 for a disc, larger for a ragged border),
    intensity_mean and intensity_std inside the region (heterogeneity), and contrast
    (mean inside minus mean outside). An empty mask gives zeros: "no lesion found".
    """
    from skimage import measure

    x = to_float(image)
    mask = np.asarray(mask, bool)
    if not mask.any():
        return dict.fromkeys(FEATURE_NAMES, 0.0)
    region = measure.regionprops(mask.astype(np.uint8), intensity_image=x)[0]
    perimeter = region.perimeter_crofton
    return {
        "area": float(region.area),
        "solidity": float(region.solidity),
        "eccentricity": float(region.eccentricity),
        "border_irregularity": float(perimeter ** 2 / (4 * np.pi * region.area)),
        "intensity_mean": float(region.intensity_mean),
        "intensity_std": float(region.intensity_std),
        "contrast": float(region.intensity_mean - x[~mask].mean()) if (~mask).any() else 0.0,
    }


def feature_table(images: np.ndarray, masks: np.ndarray, progress: bool = True) -> pd.DataFrame:
    """``region_features`` of each (scan, mask) pair: one row per scan, one column per feature."""
    from tqdm.auto import tqdm

    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    rows = [region_features(img, m) for img, m in tqdm(zip(images, masks), total=len(images),
                                                       desc="features", leave=False, disable=not progress)]
    return pd.DataFrame(rows, columns=FEATURE_NAMES)
