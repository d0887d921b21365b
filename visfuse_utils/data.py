"""SynthScan, user CSV data, splits and the torch Dataset (notebook 01 explains them).

SynthScan is a *synthetic* paired data set: a grayscale scan and a clinical note per
patient, generated with known ground truth (lesion mask, evidence spans in the note,
the latent variables of the label rule) so that later notebooks can score what a
model relies on. Nothing here describes real patients.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.fft

CLASS_NAMES = ["normal", "benign", "malignant"]
SYNTHSCAN_VERSION = "2"
_CHUNK = 512  # scans rendered at a time


class DataError(ValueError):
    """Bad input data; the message names the file, row and column and says what to do."""


@dataclass
class MultimodalData:
    """Paired images, texts and labels; the ground-truth fields are None for user data."""

    images: np.ndarray  # uint8, N x C x H x W
    texts: list[str]
    labels: np.ndarray  # int64, N
    class_names: list[str]
    masks: np.ndarray | None = None  # bool, N x H x W
    evidence_spans: list[list[tuple[int, int]]] | None = None
    captions: list[str] | None = None
    latents: dict[str, np.ndarray] | None = None
    source: str = "synthscan"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.ndim != 4 or len(self.images) != n or len(self.texts) != n:
            raise ValueError(
                f"images {self.images.shape}, texts ({len(self.texts)}) and labels ({n}) "
                "must share the first dimension, with images shaped N x C x H x W"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "MultimodalData":
        """The samples at ``indices``, ground truth included."""
        idx = np.asarray(indices, dtype=np.int64)
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return MultimodalData(
            images=self.images[idx],
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            masks=None if self.masks is None else self.masks[idx],
            evidence_spans=pick(self.evidence_spans),
            captions=pick(self.captions),
            latents=None if self.latents is None else {k: v[idx] for k, v in self.latents.items()},
            source=self.source,
            meta=dict(self.meta),
        )

    @property
    def has_ground_truth(self) -> bool:
        """True when masks, evidence spans and latents exist (SynthScan, not user data)."""
        return self.masks is not None and self.evidence_spans is not None and self.latents is not None


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
    hline = hx0[:, None, None] + hslope[:, None, None] * (yy[None] - 0.5) + hcurve[:, None, None] * (yy[None] - 0.5) ** 2
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
            path.unlink()
    data = make_synthscan(n, seed=seed, image_size=image_size, label_noise=label_noise)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
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


def load_data(data: str, n: int, seed: int = 0, image_size: int = 64) -> MultimodalData:
    """What a notebook's ``DATA`` parameter names: ``"synthscan"`` or a CSV path (see ``load_csv``)."""
    if data.lower() == "synthscan":
        return synthscan_cached(n, seed=seed, image_size=image_size)
    return load_csv(data, image_size=image_size)


# ---------------------------------------------------------------------------- user CSV
def _load_image(path: Path, image_size: int, channels: int, where: str) -> np.ndarray:
    """Open, convert and resize one image under the stated policy (see ``load_csv``)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"{where}: image file {path} does not exist; fix the path or add the file.")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                backdrop = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(backdrop, im)
            im = im.convert("L" if channels == 1 else "RGB")
            im = ImageOps.fit(im, (image_size, image_size), method=Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{where}: image file {path} cannot be read as an image ({err}); "
                        "replace it with a valid PNG/JPEG or remove the row.") from None
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_csv(path: str | Path, image_root: str | Path | None = None, image_col: str = "image",
             text_col: str = "text", label_col: str = "label", image_size: int = 64,
             channels: int = 1) -> MultimodalData:
    """Read a table of (image file, text, label) rows into ``MultimodalData``.

    Image policy: EXIF orientation applied, transparency flattened onto white, converted
    to grayscale (``channels=1``) or RGB (``channels=3``), scaled so the shorter side is
    ``image_size`` and centre-cropped to a square. Image paths are relative to
    ``image_root`` (default: the CSV's folder) and may not leave it. Labels may be
    strings or integers; class names are their sorted distinct values. Any bad row
    raises ``DataError`` naming the file, row and column: nothing is skipped silently.
    """
    import pandas as pd

    path = Path(path)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if not path.is_file():
        raise DataError(f"CSV file {path} does not exist; check the DATA parameter (a CSV path or 'synthscan').")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not valid UTF-8 (byte {err.start}); re-save the file as UTF-8.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path} cannot be parsed as CSV ({err}); check quoting and the header row.") from None
    missing = [c for c in (image_col, text_col, label_col) if c not in table.columns]
    if missing:
        raise DataError(f"{path} has no column {', '.join(map(repr, missing))}; found {list(table.columns)}. "
                        "Rename the columns or pass image_col/text_col/label_col.")
    if len(table) == 0:
        raise DataError(f"{path} has a header but no rows; add at least one row per class.")
    root = Path(image_root) if image_root is not None else path.parent
    root_resolved = root.resolve()
    images, texts, raw_labels = [], [], []
    for i, row in enumerate(table.itertuples(index=False)):
        row = row._asdict() if hasattr(row, "_asdict") else dict(zip(table.columns, row))
        where = f"{path}, row {i + 1} (line {i + 2})"
        rel = str(row[image_col]).strip()
        if not rel:
            raise DataError(f"{where}, column {image_col!r}: no image file given; fill it in or remove the row.")
        img_path = (root / rel).resolve()
        if not img_path.is_relative_to(root_resolved):
            raise DataError(f"{where}, column {image_col!r}: {rel!r} points outside the image root "
                            f"{root}; keep images under that folder or pass image_root.")
        images.append(_load_image(img_path, image_size, channels, f"{where}, column {image_col!r}"))
        text = row[text_col]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}, column {text_col!r}: the text is empty; write the note or remove the row.")
        texts.append(text.strip())
        label = str(row[label_col]).strip()
        if not label:
            raise DataError(f"{where}, column {label_col!r}: the label is missing; fill it in or remove the row.")
        raw_labels.append(label)
    class_names = sorted(set(raw_labels), key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))
    if len(class_names) < 2:
        raise DataError(f"{path}: column {label_col!r} holds only one class ({class_names[0]!r}); "
                        "a classifier needs at least two.")
    index = {c: k for k, c in enumerate(class_names)}
    return MultimodalData(images=np.stack(images), texts=texts,
                          labels=np.array([index[c] for c in raw_labels], np.int64),
                          class_names=class_names, source=str(path),
                          meta={"image_size": image_size, "channels": channels})


# ----------------------------------------------------------------------------- splits
def split(data: MultimodalData, val: float = 0.15, test: float = 0.15, seed: int = 0):
    """Stratified (train, val, test) split of ``data``."""
    from sklearn.model_selection import train_test_split

    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be fractions in (0, 1) with val + test < 1")
    idx = np.arange(len(data))
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    if counts[counts > 0].min() < 3:
        raise DataError(f"{data.source}: every class needs at least 3 samples to be split three ways; "
                        f"class counts are {dict(zip(data.class_names, counts.tolist()))}.")
    n_test, n_val = round(test * len(data)), round(val * len(data))
    rest, test_idx = train_test_split(idx, test_size=n_test, stratify=data.labels, random_state=seed)
    train_idx, val_idx = train_test_split(rest, test_size=n_val, stratify=data.labels[rest], random_state=seed)
    return data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx)), data.subset(np.sort(test_idx))


# ------------------------------------------------------------------------ torch Dataset
class MultimodalDataset:
    """Torch dataset over ``MultimodalData``; the texts are tokenized once, here.

    Items are dicts with ``image`` (float, normalised to mean 0 and unit scale),
    ``input_ids`` and ``attention_mask`` (unpadded; ``collate`` pads per batch) and
    ``label``. ``tokenizer=None`` gives image-only items.
    """

    def __init__(self, data: MultimodalData, tokenizer=None, max_length: int = 96):
        import torch

        self.data = data
        self.images = torch.from_numpy(np.ascontiguousarray(data.images))
        self.labels = torch.from_numpy(data.labels)
        self.tokens = None
        if tokenizer is not None:
            enc = tokenizer(list(data.texts), truncation=True, max_length=max_length)
            self.tokens = enc["input_ids"]
            self.pad_id = tokenizer.pad_token_id or 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        import torch

        item = {"image": (self.images[i].float() / 255.0 - 0.5) / 0.25, "label": self.labels[i], "index": i}
        if self.tokens is not None:
            item["input_ids"] = torch.tensor(self.tokens[i], dtype=torch.long)
        return item


def collate(items: list[dict], pad_id: int = 0) -> dict:
    """Stack a list of items into a batch, padding ``input_ids`` to the longest in it."""
    import torch

    batch = {"image": torch.stack([it["image"] for it in items]),
             "label": torch.stack([torch.as_tensor(it["label"]) for it in items]),
             "index": torch.tensor([it["index"] for it in items])}
    if "input_ids" in items[0]:
        longest = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), longest), dtype=torch.long)
        for k, it in enumerate(items):
            ids[k, : len(it["input_ids"])] = it["input_ids"]
            mask[k, : len(it["input_ids"])] = 1
        batch["input_ids"], batch["attention_mask"] = ids, mask
    return batch


class LengthGroupedBatches:
    """Shuffled batches of notes of similar length, a new order every epoch.

    Random batches of notes pad to their longest note (about 40 % wasted tokens on
    SynthScan); sorting each random window of ``group`` batches by length before cutting it
    into batches cuts that to about 7 %, so fewer padded tokens go through BERT. Batches then
    share a note length, which correlates with the label on SynthScan: image-only models
    train on loaders without a tokenizer, whose batches stay plainly random.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator, group: int = 8):
        self.lengths, self.batch_size, self.generator, self.group = list(lengths), batch_size, generator, group

    def __len__(self) -> int:
        n, window = len(self.lengths), self.batch_size * self.group
        return sum(-(-min(window, n - s) // self.batch_size) for s in range(0, n, window))

    def __iter__(self):
        import torch

        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        window = self.batch_size * self.group
        batches = []
        for s in range(0, len(order), window):
            chunk = sorted(order[s:s + window], key=self.lengths.__getitem__)
            batches += [chunk[k:k + self.batch_size] for k in range(0, len(chunk), self.batch_size)]
        for j in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[j]


def make_loader(data: MultimodalData, tokenizer=None, batch_size: int = 64, shuffle: bool = False,
                seed: int = 0, device=None, max_length: int = 96):
    """A DataLoader over ``data`` with dynamic padding; pinned memory on CUDA.

    Shuffled loaders with text batch notes of similar length (``LengthGroupedBatches``);
    unshuffled ones keep the data's order, so predictions line up with ``data.labels``.
    """
    import functools

    import torch

    ds = MultimodalDataset(data, tokenizer, max_length=max_length)
    gen = torch.Generator().manual_seed(seed)
    pin = device is not None and torch.device(device).type == "cuda"
    collate_fn = functools.partial(collate, pad_id=getattr(ds, "pad_id", 0))
    if shuffle and ds.tokens is not None:
        batches = LengthGroupedBatches([len(t) for t in ds.tokens], batch_size, gen)
        return torch.utils.data.DataLoader(ds, batch_sampler=batches, pin_memory=pin, collate_fn=collate_fn)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, pin_memory=pin,
                                       collate_fn=collate_fn)
