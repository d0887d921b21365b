"""SynthScan: a synthetic paired data set whose ground truth is known (notebook 01 tours it).

Each sample is a grayscale scan and a clinical note, generated with the lesion mask, the
evidence spans in the note and the latent variables of the label rule, so that later
notebooks can score what a model relies on. Nothing here describes real patients.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import scipy.fft

from .data import DataError, MultimodalData
from .synthscan_notes import CLAIMS, CUE_TEMPLATES, add_claims, write_notes  # noqa: F401 - notebooks read these here

CLASS_NAMES = ["normal", "benign", "malignant"]
CONSISTENCY_CLASSES = ["consistent", "inconsistent"]  # does the scan show what the referral letter claims?
RULES = ("sum", "consistency")
SYNTHSCAN_VERSION = "2"
_CHUNK = 512  # scans rendered at a time

# --------------------------------------------------------------------------- SynthScan
# The label rule. Each modality carries one graded piece of evidence:
#   image_grade a: 0 no lesion, 1 smooth homogeneous lesion, 2 irregular heterogeneous lesion
#   text_risk   b: number of affirmed risk cues in the note (rapid growth, family history)
# score = a + b;  normal if score <= 1, benign if score == 2, malignant if score >= 3;
# then a small fraction of labels is flipped at random (annotation noise).
# With a and b uniform and independent, each class holds a third of the data, and either
# modality alone leaves the Bayes-optimal accuracy at 5/9, while both together reach
# 1 - label_noise.
# The consistency rule (rule="consistency") needs the two *together*: a referral sentence
# claims a grade c (the true one for half the notes, else one of the two others), and the
# label is whether the scan shows it (c == a). Given a alone, or c alone, both labels are
# equally likely (oracles 1/2); given both, 1 - label_noise. A model that adds an image score
# to a text score (late fusion) cannot express "equal" on all 3 x 3 cells.

def label_rule(image_grade: np.ndarray, text_risk: np.ndarray) -> np.ndarray:
    """Noise-free label from the two latent evidences (see the module comment)."""
    score = np.asarray(image_grade) + np.asarray(text_risk)
    return np.where(score <= 1, 0, np.where(score == 2, 1, 2)).astype(np.int64)


def _smooth_noise(rng: np.random.Generator, n: int, size: int, scale: float) -> np.ndarray:
    """Smooth Gaussian random fields with unit std per image, by spectral synthesis.

    White noise filtered by a Gaussian of width ``scale`` pixels is random Fourier
    coefficients shaped by the kernel; drawing only the coefficients where the kernel
    exceeds 1e-4 (the rest contribute nothing visible) makes 10k scans cheap.
    """
    fy = scipy.fft.fftfreq(size).astype(np.float32)
    fx = scipy.fft.rfftfreq(size).astype(np.float32)
    kernel = np.exp(-((fy[:, None] ** 2 + fx[None, :] ** 2) * np.float32((scale * np.pi) ** 2 * 2)))
    keep = kernel > 1e-4
    coef = rng.standard_normal((n, int(keep.sum()), 2), dtype=np.float32)
    spectrum = np.zeros((n, size, size // 2 + 1), np.complex64)
    spectrum[:, keep] = (coef[..., 0] + 1j * coef[..., 1]) * kernel[keep]
    out = scipy.fft.irfft2(spectrum, s=(size, size))
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + np.float32(1e-6)
    return out


def _render_images(rng: np.random.Generator, grade: np.ndarray, size: int):
    """Scans, masks and the image latents, vectorised over the batch."""
    n = len(grade)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)  # 0..1

    # Tissue: a smooth background field plus fine texture.
    f32 = np.float32
    base = rng.uniform(0.30, 0.45, n).astype(f32)
    img = base[:, None, None] + f32(0.06) * _smooth_noise(rng, n, size, size / 8)
    img += f32(0.03) * _smooth_noise(rng, n, size, size / 32)

    # Lesion geometry: centre, radius, border harmonics.
    has = grade > 0
    cx = rng.uniform(0.28, 0.72, n).astype(np.float32)
    cy = rng.uniform(0.28, 0.72, n).astype(np.float32)
    radius = rng.uniform(0.09, 0.19, n).astype(np.float32)
    irregular = grade == 2
    n_harm = 4
    ks = np.where(irregular[:, None], rng.integers(5, 10, (n, n_harm)), rng.integers(2, 4, (n, n_harm))).astype(f32)
    amps = np.where(irregular[:, None], rng.uniform(0.10, 0.22, (n, n_harm)),
                    rng.uniform(0.0, 0.03, (n, n_harm))).astype(f32)
    phases = rng.uniform(0, 2 * np.pi, (n, n_harm)).astype(f32)
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    dist = np.sqrt(dx ** 2 + dy ** 2)
    theta = np.arctan2(dy, dx)
    rtheta = np.ones_like(dist)
    for j in range(n_harm):
        rtheta += amps[:, j, None, None] * np.cos(ks[:, j, None, None] * theta + phases[:, j, None, None])
    rtheta *= radius[:, None, None]
    masks = (dist <= rtheta) & has[:, None, None]

    # Lesion intensity: brightness is a nuisance; heterogeneity carries malignancy evidence.
    brightness = rng.uniform(0.22, 0.40, n).astype(np.float32)
    hetero = np.where(irregular, rng.uniform(0.10, 0.16, n), rng.uniform(0.0, 0.02, n)).astype(np.float32)
    inner = _smooth_noise(rng, n, size, size / 24)
    soft_edge = np.clip((rtheta - dist) * f32(1 / 0.02), 0, 1) * has[:, None, None]
    img += (brightness[:, None, None] + hetero[:, None, None] * inner) * soft_edge

    # Label-independent nuisances: artefacts, vignetting, contrast, noise.
    ruler = rng.random(n) < 0.25
    ticks = ((np.floor(xx * size) % 4) == 0) & (yy > 0.93)
    img = np.where(ruler[:, None, None] & ticks[None], f32(0.95), img)
    hair = rng.random(n) < 0.25
    hx0, hslope, hcurve = (rng.uniform(lo, hi, n).astype(f32) for lo, hi in ((0.1, 0.9), (-1.5, 1.5), (-1.5, 1.5)))
    dy = yy[None] - 0.5
    hline = hx0[:, None, None] + hslope[:, None, None] * dy + hcurve[:, None, None] * dy ** 2
    hair_px = np.abs(xx[None] - hline) < (0.6 / size)
    img = np.where(hair[:, None, None] & hair_px, img - f32(0.25), img)
    vignette = rng.uniform(0.0, 0.45, n).astype(np.float32)
    r2 = (xx - 0.5) ** 2 + (yy - 0.5) ** 2
    img *= 1 - vignette[:, None, None] * r2[None] * f32(2)
    contrast = rng.uniform(0.75, 1.2, n).astype(np.float32)
    img = f32(0.5) + (img - f32(0.5)) * contrast[:, None, None]
    noise = rng.uniform(0.005, 0.05, n).astype(np.float32)
    img += noise[:, None, None] * rng.standard_normal(img.shape, dtype=f32)

    images = (np.clip(img, 0, 1) * f32(255)).round().astype(np.uint8)[:, None]
    latents = {
        "image_grade": grade.astype(np.int64),
        "center_x": np.where(has, cx, np.nan), "center_y": np.where(has, cy, np.nan),
        "radius": np.where(has, radius, np.nan),
        "border_irregularity": np.where(has, amps.sum(1), np.nan),
        "heterogeneity": np.where(has, hetero, np.nan),
        "brightness": np.where(has, brightness, np.nan),
        "contrast": contrast, "noise": noise, "vignette": vignette,
        "ruler": ruler, "hair": hair,
    }
    return images, masks, latents


def _caption(lat: dict, i: int) -> str:
    """Findings caption: what a reader of the scan can see (no label, no note)."""
    parts = []
    if lat["image_grade"][i] == 0:
        parts.append("no focal lesion is visible")
    else:
        r = lat["radius"][i]
        size = "small" if r < 0.123 else ("medium" if r < 0.157 else "large")
        border = "irregular" if lat["image_grade"][i] == 2 else "smooth"
        vert = "top" if lat["center_y"][i] < 0.43 else ("bottom" if lat["center_y"][i] > 0.57 else "middle")
        horiz = "left" if lat["center_x"][i] < 0.43 else ("right" if lat["center_x"][i] > 0.57 else "centre")
        where = "the centre" if (vert, horiz) == ("middle", "centre") else (
            f"the {vert} {horiz}" if vert != "middle" else f"the middle {horiz}")
        where = where.replace("the middle centre", "the centre")
        tone = "bright" if lat["brightness"][i] > 0.31 else "faint"
        texture = "heterogeneous" if lat["image_grade"][i] == 2 else "homogeneous"
        parts.append(f"a {size} {tone} lesion with an {border} border near {where}, {texture} inside"
                     .replace("an smooth", "a smooth"))
    if lat["ruler"][i]:
        parts.append("a ruler along the bottom edge")
    if lat["hair"][i]:
        parts.append("a thin hair artefact")
    return "; ".join(parts).capitalize() + "."


_CAPTION = re.compile(r"(small|medium|large) (bright|faint) lesion with an? (smooth|irregular) border "
                      r"near the (?:(top|middle|bottom) )?(left|centre|right)")
CAPTION_ATTRIBUTES = ("size", "brightness", "border", "row", "column", "ruler", "hair")


def caption_attributes(caption: str) -> dict:
    """What a findings caption names: size, brightness, border (texture goes with it), row, column, ruler, hair.

    None where the caption does not say (a clear scan has no lesion attributes). Notebook 06 and its
    solutions score retrieval per attribute with it.
    """
    m = _CAPTION.search(caption.lower())
    found = dict(zip(CAPTION_ATTRIBUTES[:5], m.groups() if m else [None] * 5))
    if m and found["row"] is None:  # "near the centre"
        found["row"] = "middle"
    return {**found, "ruler": "ruler" if "ruler" in caption else None, "hair": "hair" if "hair" in caption else None}


def caption_finding(caption: str) -> str | None:
    """The key finding a caption states: "none", "smooth" or "irregular" (a lesion's border), None if it says none.

    Notebook 07 reads generated reports with it, so a sentence that names both or neither counts as unreadable.
    """
    text = caption.lower()
    said = {"none": "no focal lesion" in text, "smooth": "smooth border" in text,
            "irregular": "irregular border" in text}
    named = [k for k, v in said.items() if v]
    return named[0] if len(named) == 1 else None


def make_synthscan(n: int, seed: int = 0, image_size: int = 64, label_noise: float = 0.02,
                   rule: str = "sum") -> MultimodalData:
    """Generate ``n`` SynthScan samples; the same arguments give byte-identical data.

    The label needs both modalities: the scan shows a lesion grade (none, smooth,
    irregular), the note a count of affirmed risk cues, and the class follows their sum
    (see ``label_rule``). ``label_noise`` flips that fraction of labels at random.
    ``rule="consistency"`` asks instead whether the scan shows the finding that a referral
    sentence in the note claims (right for half the notes): each modality alone says
    nothing (both oracles 1/2), the two together 1 - label_noise; the risk cues stay as distractors.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    ss = np.random.SeedSequence([seed, 20261128])
    r_label, r_img, r_txt, r_claim = (np.random.default_rng(s) for s in ss.spawn(4))
    grade = r_label.integers(0, 3, n)
    risk = r_label.integers(0, 3, n)
    clean = label_rule(grade, risk)
    flip = r_label.random(n) < label_noise
    labels = np.where(flip, (clean + r_label.integers(1, 3, n)) % 3, clean).astype(np.int64)
    # Rendering in chunks keeps the float32 work arrays in cache: 2-3x faster for 10k scans.
    chunks = [_render_images(r_img, grade[i:i + _CHUNK], image_size) for i in range(0, n, _CHUNK)]
    images = np.concatenate([c[0] for c in chunks])
    masks = np.concatenate([c[1] for c in chunks])
    img_lat = {k: np.concatenate([c[2][k] for c in chunks]) for k in chunks[0][2]}
    notes, spans, txt_lat = write_notes(r_txt, risk)
    latents = {**img_lat, **txt_lat, "clean_label": clean, "label_flipped": flip}
    captions = [_caption(latents, i) for i in range(n)]
    class_names, meta = list(CLASS_NAMES), {"n": n, "seed": seed, "image_size": image_size, "label_noise": label_noise}
    if rule == "consistency":
        claimed = np.where(r_claim.random(n) < 0.5, grade, (grade + r_claim.integers(1, 3, n)) % 3)
        notes, spans = add_claims(r_claim, notes, claimed)
        clean = (claimed != grade).astype(np.int64)  # 0 consistent, 1 inconsistent
        labels = np.where(flip, 1 - clean, clean).astype(np.int64)
        latents.update(claimed_grade=claimed.astype(np.int64), clean_label=clean)
        class_names, meta = list(CONSISTENCY_CLASSES), {**meta, "rule": rule}
    return MultimodalData(images=images, texts=notes, labels=labels, class_names=class_names, masks=masks,
                          evidence_spans=spans, captions=captions, latents=latents, source="synthscan", meta=meta)


def oracle_accuracy(data: MultimodalData, modality: str) -> float:
    """Bayes-optimal accuracy when a model sees exactly the latent evidence of ``modality``.

    The latent evidence is the image grade (``"image"``), what the note carries (``"text"``: the
    risk count, or the claimed grade under the consistency rule) or both (``"both"``). For each
    value of that evidence the best guess is the most frequent label among samples sharing it;
    the oracle is the accuracy of those guesses.
    """
    if data.latents is None:
        raise DataError("oracle_accuracy needs the latents of SynthScan; user data has none.")
    text = "claimed_grade" if "claimed_grade" in data.latents else "text_risk"
    keys = {"image": ["image_grade"], "text": [text], "both": ["image_grade", text]}
    if modality not in keys:
        raise ValueError(f"modality must be 'image', 'text' or 'both', got {modality!r}")
    evidence = np.stack([data.latents[k] for k in keys[modality]], axis=1)
    _, cell = np.unique(evidence, axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    counts = np.zeros((cell.max() + 1, len(data.class_names)), np.int64)
    np.add.at(counts, (cell, data.labels), 1)
    return float(counts.max(axis=1).sum() / len(data))


# ------------------------------------------------------------------------------ caching
def _default_cache_dir() -> Path:
    if os.environ.get("VISFUSE_CACHE"):
        return Path(os.environ["VISFUSE_CACHE"])
    repo_data = Path(__file__).resolve().parent.parent / "data"
    if repo_data.is_dir():
        return repo_data / "cache"
    return Path.home() / ".cache" / "visfuse"


def synthscan_cached(n: int, seed: int = 0, image_size: int = 64, label_noise: float = 0.02,
                     cache_dir: str | Path | None = None, rule: str = "sum") -> MultimodalData:
    """``make_synthscan`` with an on-disk cache shared by the notebooks.

    The file name hashes the settings and the generator version, so changing any of
    them regenerates the set instead of reusing a stale one.
    """
    settings = dict(n=n, seed=seed, image_size=image_size, label_noise=label_noise, version=SYNTHSCAN_VERSION)
    if rule != "sum":  # the sum rule's files keep their names
        settings["rule"] = rule
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else _default_cache_dir()
    path = folder / f"synthscan_{key}.npz"
    if path.exists():
        try:
            return _load_npz(path)
        except Exception:  # a truncated or foreign file: regenerate rather than fail
            path.unlink(missing_ok=True)
    data = make_synthscan(n, seed=seed, image_size=image_size, label_noise=label_noise, rule=rule)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # per process: training processes may write it at once
    _save_npz(data, tmp)
    os.replace(tmp, path)
    return data


def _save_npz(data: MultimodalData, path: Path) -> None:
    extra = {"texts": data.texts, "class_names": data.class_names, "evidence_spans": data.evidence_spans,
             "captions": data.captions, "source": data.source, "meta": data.meta}
    arrays = {f"latent__{k}": v for k, v in (data.latents or {}).items()}
    np.savez_compressed(path, images=data.images, labels=data.labels, masks=data.masks,
                        extra=np.frombuffer(json.dumps(extra).encode(), dtype=np.uint8), **arrays)


def _load_npz(path: Path) -> MultimodalData:
    with np.load(path, allow_pickle=False) as z:
        extra = json.loads(z["extra"].tobytes().decode())
        latents = {k[len("latent__"):]: z[k] for k in z.files if k.startswith("latent__")}
        return MultimodalData(
            images=z["images"], texts=extra["texts"], labels=z["labels"], class_names=extra["class_names"],
            masks=z["masks"], evidence_spans=[[tuple(s) for s in sp] for sp in extra["evidence_spans"]],
            captions=extra["captions"], latents=latents, source=extra["source"], meta=extra["meta"])


