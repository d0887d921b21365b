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

CLASS_NAMES = ["normal", "benign", "malignant"]
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

def label_rule(image_grade: np.ndarray, text_risk: np.ndarray) -> np.ndarray:
    """Noise-free label from the two latent evidences (see the module comment)."""
    score = np.asarray(image_grade) + np.asarray(text_risk)
    return np.where(score <= 1, 0, np.where(score == 2, 1, 2)).astype(np.int64)


_GROWTH_YES = [
    "The lump has grown rapidly over the past {m} months.",
    "The patient reports that the mass has enlarged noticeably since the last visit.",
    "A marked increase in size over {m} months is described.",
    "The lesion is reported to be growing quickly.",
]
_GROWTH_NO = [
    "No change in size since the last visit.",
    "The lesion has not grown over the past {m} months.",
    "Denies any recent growth of the lump.",
    "Size reported as stable for {m} months.",
]
_FAMILY_YES = [
    "Mother was diagnosed with cancer at {a2}.",
    "There is a strong family history of malignancy.",
    "Two first-degree relatives had cancer.",
    "Father was treated for a malignant tumour at {a2}.",
]
_FAMILY_NO = [
    "No family history of cancer.",
    "Family history is unremarkable.",
    "Denies any cancer in the family.",
    "No relatives with malignant disease.",
]
# The cue sentences of the notes, by cue and polarity (notebook 03 reads them; the generator picks one at random).
CUE_TEMPLATES = {"growth": {"affirmed": _GROWTH_YES, "negated": _GROWTH_NO},
                 "family": {"affirmed": _FAMILY_YES, "negated": _FAMILY_NO}}
_OPENINGS = [
    "{age}-year-old {sex} referred for imaging.",
    "{age}-year-old {sex} presenting for a routine scan.",
    "Patient, {sex}, aged {age}, seen for follow-up imaging.",
    "{age}-year-old {sex} sent by the GP for a scan.",
]
_IRRELEVANT = [
    "Allergic to penicillin.",
    "Works as a {job}.",
    "Drinks {k} cups of coffee a day.",
    "Takes {drug} for blood pressure.",
    "Came to the appointment with {rel}.",
    "Blood pressure {bp}/{bp2} mmHg.",
    "Non-smoker.",
    "Reports mild fatigue after a busy week.",
]
_FILLER = [
    "Vitals within normal limits.",
    "Patient is in good spirits.",
    "Scan requested to complete the work-up.",
    "Consent obtained.",
]
_JOBS = ["teacher", "nurse", "carpenter", "driver", "chef", "engineer", "farmer", "clerk"]
_DRUGS = ["amlodipine", "ramipril", "losartan", "bisoprolol"]
_RELS = ["her daughter", "his son", "a friend", "her husband", "his wife"]


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


def _write_notes(rng: np.random.Generator, text_risk: np.ndarray):
    """Clinical notes with their evidence spans and the text latents."""
    n = len(text_risk)
    growth = np.zeros(n, np.int64)  # 1 affirmed, 0 negated, -1 not mentioned
    family = np.zeros(n, np.int64)
    notes, spans = [], []
    for i in range(n):
        b = int(text_risk[i])
        yes = {0: (), 1: (("growth",) if rng.random() < 0.5 else ("family",)), 2: ("growth", "family")}[b]
        fmt = dict(m=int(rng.integers(2, 13)), a2=int(rng.integers(38, 80)), age=int(rng.integers(24, 86)),
                   sex=["woman", "man"][int(rng.integers(2))], job=_JOBS[int(rng.integers(len(_JOBS)))],
                   k=int(rng.integers(1, 6)), drug=_DRUGS[int(rng.integers(len(_DRUGS)))],
                   rel=_RELS[int(rng.integers(len(_RELS)))], bp=int(rng.integers(105, 160)),
                   bp2=int(rng.integers(65, 95)))
        sentences: list[tuple[str, bool]] = []  # (sentence, is evidence)
        for cue, yes_t, no_t, store in (("growth", _GROWTH_YES, _GROWTH_NO, growth),
                                        ("family", _FAMILY_YES, _FAMILY_NO, family)):
            if cue in yes:
                store[i] = 1
                sentences.append((yes_t[int(rng.integers(len(yes_t)))].format(**fmt), True))
            elif rng.random() < 0.7:
                store[i] = 0
                sentences.append((no_t[int(rng.integers(len(no_t)))].format(**fmt), True))
            else:
                store[i] = -1
        n_irr = int(rng.integers(0, 3))
        for j in rng.choice(len(_IRRELEVANT), n_irr, replace=False):
            sentences.append((_IRRELEVANT[int(j)].format(**fmt), False))
        if rng.random() < 0.5:
            sentences.append((_FILLER[int(rng.integers(len(_FILLER)))], False))
        order = rng.permutation(len(sentences))
        text = _OPENINGS[int(rng.integers(len(_OPENINGS)))].format(**fmt)
        text = text[0].upper() + text[1:]
        note_spans = []
        for j in order:
            sent, is_evidence = sentences[int(j)]
            start = len(text) + 1
            text += " " + sent
            if is_evidence:
                note_spans.append((start, start + len(sent)))
        notes.append(text)
        spans.append(sorted(note_spans))
    return notes, spans, {"text_risk": text_risk.astype(np.int64), "growth_cue": growth, "family_cue": family}


def make_synthscan(n: int, seed: int = 0, image_size: int = 64, label_noise: float = 0.02) -> MultimodalData:
    """Generate ``n`` SynthScan samples; the same arguments give byte-identical data.

    The label needs both modalities: the scan shows a lesion grade (none, smooth,
    irregular), the note a count of affirmed risk cues, and the class follows their sum
    (see ``label_rule``). ``label_noise`` flips that fraction of labels at random.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if not 0 <= label_noise < 1:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    ss = np.random.SeedSequence([seed, 20261128])
    r_label, r_img, r_txt = (np.random.default_rng(s) for s in ss.spawn(3))
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
    notes, spans, txt_lat = _write_notes(r_txt, risk)
    latents = {**img_lat, **txt_lat, "clean_label": clean, "label_flipped": flip}
    captions = [_caption(latents, i) for i in range(n)]
    return MultimodalData(images=images, texts=notes, labels=labels, class_names=list(CLASS_NAMES),
                          masks=masks, evidence_spans=spans, captions=captions, latents=latents,
                          source="synthscan",
                          meta={"n": n, "seed": seed, "image_size": image_size, "label_noise": label_noise})


def oracle_accuracy(data: MultimodalData, modality: str) -> float:
    """Bayes-optimal accuracy when a model sees exactly the latent evidence of ``modality``.

    The latent evidence is the image grade (``"image"``), the text risk count (``"text"``)
    or both (``"both"``). For each value of that evidence the best guess is the most
    frequent label among samples sharing it; the oracle is the accuracy of those guesses.
    """
    if data.latents is None:
        raise DataError("oracle_accuracy needs the latents of SynthScan; user data has none.")
    keys = {"image": ["image_grade"], "text": ["text_risk"], "both": ["image_grade", "text_risk"]}
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
                     cache_dir: str | Path | None = None) -> MultimodalData:
    """``make_synthscan`` with an on-disk cache shared by the notebooks.

    The file name hashes the settings and the generator version, so changing any of
    them regenerates the set instead of reusing a stale one.
    """
    settings = dict(n=n, seed=seed, image_size=image_size, label_noise=label_noise, version=SYNTHSCAN_VERSION)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else _default_cache_dir()
    path = folder / f"synthscan_{key}.npz"
    if path.exists():
        try:
            return _load_npz(path)
        except Exception:  # a truncated or foreign file: regenerate rather than fail
            path.unlink(missing_ok=True)
    data = make_synthscan(n, seed=seed, image_size=image_size, label_noise=label_noise)
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


