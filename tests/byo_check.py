"""`make byo-check`: every notebook that takes ``DATA`` runs on datasets of the shapes users bring.

``python tests/byo_check.py [--slice] [--shapes a,b] [--notebooks 02,03]`` builds each dataset (once, under
``build/byo/<shape>/``) from real images that scikit-image ships, cut into random crops, with generated notes
whose words carry part of the class; then runs notebooks 01–06 on it through papermill in the smoke profile and
checks each wrote its results file. Grey shapes are saved as 1-channel PNGs and read with ``CHANNELS = 1``,
colour ones as RGB and read with ``CHANNELS = 3``. ``--slice`` runs the binary and the 10-class RGB sets only
(``make test``).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_data_and_loss", "02_image_baselines", "03_text_baseline", "04_fusion", "05_interpretability",
             "06_language_queries"]
SOURCES = ["astronaut", "brick", "camera", "cat", "cell", "coffee", "coins", "grass", "gravel", "horse",
           "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "chelsea", "microaneurysms"]
FILLER = ("the sample was taken on a weekday", "no further comment", "seen at the usual magnification",
          "the operator noted nothing unusual", "image archived after review", "second look requested")
# shape: classes (name -> source images), rows, colour, class weights, note length
SHAPES = {
    "binary": dict(classes={"match": ["cell", "retina", "microaneurysms"], "mismatch": ["brick", "grass", "gravel"]},
                   rows=160, channels=1),
    "three_rgb": dict(classes={"microscopy": ["cell", "immunohistochemistry"], "texture": ["brick", "grass"],
                               "photo": ["astronaut", "coffee", "chelsea"]}, rows=180, channels=3),
    "ten_rgb": dict(classes={s: [s] for s in ["astronaut", "brick", "camera", "cat", "coffee", "coins", "grass",
                                              "horse", "retina", "rocket"]}, rows=300, channels=3),
    "imbalanced": dict(classes={"common": ["camera", "moon", "page"], "rare": ["coins", "cell"]}, rows=300,
                       channels=1, weights=[0.9, 0.1]),
    "tiny": dict(classes={"left": ["brick"], "right": ["coins"]}, rows=40, channels=1),
    "medium": dict(classes={"microscopy": ["cell", "immunohistochemistry", "retina"],
                            "texture": ["brick", "grass", "gravel"], "photo": ["camera", "coffee", "rocket"]},
                   rows=2000, channels=1),
    "short_notes": dict(classes={"a": ["cell", "retina"], "b": ["brick", "gravel"], "c": ["camera", "horse"]},
                        rows=150, channels=1, note="short"),
    "long_notes": dict(classes={"a": ["cell", "retina"], "b": ["brick", "gravel"]}, rows=120, channels=3,
                       note="long"),
    "odd_names": dict(classes={"benign lesion": ["cell"], "Läsion (maligne)": ["retina"], "naïve café": ["coffee"]},
                      rows=150, channels=3),
    # an interaction task (issue 19): the note claims what the photo shows, the label says whether the claim is true;
    # the photo alone or the note alone says nothing about it
    "claims": dict(claims={"brick": "a brick wall", "coffee": "a cup of coffee", "chelsea": "a cat",
                           "coins": "coins", "grass": "grass", "rocket": "a rocket"}, rows=600, channels=3),
}
SLICE = ["binary", "ten_rgb"]


@functools.cache
def _source(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = (255 * (img - img.min()) / max(float(np.ptp(img)), 1e-9)).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return img[..., :3]


def build(shape: str, out: Path, seed: int = 0) -> Path:
    """The dataset ``shape`` as PNG crops and a CSV in ``out``; returns the CSV (reused when present)."""
    from PIL import Image

    csv = out / "data.csv"
    if csv.is_file():
        return csv
    spec = SHAPES[shape]
    rng = np.random.default_rng(seed)
    if "claims" in spec:
        return _build_claims(spec, out, csv, rng)
    names = list(spec["classes"])
    weights = spec.get("weights", [1 / len(names)] * len(names))
    labels = np.concatenate([np.arange(len(names)), rng.choice(len(names), spec["rows"] - len(names), p=weights)])
    cache, rows = {}, []
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i, y in enumerate(labels):
        src = rng.choice(spec["classes"][names[y]])
        img = cache.setdefault(src, _source(src))
        side = int(min(img.shape[:2]) * rng.uniform(0.3, 0.6))
        top, left = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        crop = img[top:top + side, left:left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        path = f"images/{i:05d}.png"
        image = Image.fromarray(np.ascontiguousarray(crop))
        (image if spec["channels"] == 3 else image.convert("L")).save(out / path)  # grey shapes: 1-channel PNGs
        rows.append((path, _note(names[y], names, spec.get("note", "normal"), rng), names[y]))
    import pandas as pd

    pd.DataFrame(rows, columns=["image", "text", "label"]).to_csv(csv, index=False)
    return csv


def _crop(img: np.ndarray, rng) -> np.ndarray:
    """A random square crop of 30-60 % of the shorter side, mirrored half of the time."""
    side = int(min(img.shape[:2]) * rng.uniform(0.3, 0.6))
    top, left = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
    crop = img[top:top + side, left:left + side]
    return np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)


def _build_claims(spec: dict, out: Path, csv: Path, rng) -> Path:
    """Photo crops with a note that claims what the photo shows: the true thing (label ``match``) or another of the
    sources (``mismatch``): each source half of the time each way, and every claim equally likely under both labels."""
    import pandas as pd
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    names, rows = list(spec["claims"]), []
    for i in range(spec["rows"]):
        src, match = names[i % len(names)], bool(i // len(names) % 2)
        said = src if match else rng.choice([n for n in names if n != src])
        Image.fromarray(_crop(_source(src), rng)).save(out / f"images/{i:05d}.png")
        words = [f"the photo shows {spec['claims'][said]}"] + list(rng.choice(FILLER, 2, replace=False))
        rng.shuffle(words)
        rows.append((f"images/{i:05d}.png", ". ".join(w.capitalize() for w in words) + ".",
                     "match" if match else "mismatch"))
    pd.DataFrame(rows, columns=["image", "text", "label"]).to_csv(csv, index=False)
    return csv


def _note(label: str, names: list[str], kind: str, rng) -> str:
    """A note that names the true class 70 % of the time and a class drawn at random otherwise (the true one again
    for 1 in k of those: 85 % of notes name it for two classes), among filler."""
    said = label if rng.random() < 0.7 else names[rng.integers(len(names))]
    if kind == "short":
        return said
    words = [f"looks like {said}"] + list(rng.choice(FILLER, 2, replace=False))
    if kind == "long":
        words += list(rng.choice(FILLER, 60))  # far past the text model's 96 word pieces
    rng.shuffle(words)
    return ". ".join(w.capitalize() for w in words) + "."


def run(shape: str, notebook: str, folder: Path, profile: str = "smoke") -> tuple[bool, float, str]:
    """Notebook ``notebook`` on dataset ``shape`` in ``profile``: (ran and wrote results, seconds, error)."""
    import os

    import papermill as pm

    csv = build(shape, folder / shape)
    build_dir = folder / shape / ("build" if profile == "smoke" else f"build-{profile}")
    (build_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    os.environ["VISFUSE_BUILD"] = str(build_dir)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"),
                            str(build_dir / "notebooks" / f"{notebook}.ipynb"),
                            parameters={"DATA": str(csv), "PROFILE": profile, "CHANNELS": SHAPES[shape]["channels"]},
                            cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    except Exception as err:  # noqa: BLE001 - the table reports any failure
        return False, time.perf_counter() - start, str(err).strip().splitlines()[-1][:200]
    saved = build_dir / "results" / f"{notebook}.json"
    ok = saved.is_file() and json.loads(saved.read_text())["models"]
    return bool(ok), time.perf_counter() - start, "" if ok else "no results file"


def report(shape: str, folder: Path, profile: str = "smoke") -> Path:
    """The course's HTML report over the notebooks run on ``shape`` (``python -m visfuse_utils.report``)."""
    from visfuse_utils.report import build_report

    return build_report(folder / shape / ("build" if profile == "smoke" else f"build-{profile}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice", action="store_true", help=f"only {', '.join(SLICE)}")
    ap.add_argument("--shapes", help="comma-separated shapes (default: all)")
    ap.add_argument("--notebooks", help="comma-separated notebook numbers (default: 01-06)")
    ap.add_argument("--profile", default="smoke", help="smoke (default) or full (the numbers a user would read)")
    args = ap.parse_args()
    shapes = SLICE if args.slice else (args.shapes.split(",") if args.shapes else list(SHAPES))
    notebooks = [n for n in NOTEBOOKS if not args.notebooks or n[:2] in args.notebooks.split(",")]
    folder = ROOT / "build" / "byo"
    failures = 0
    print(f"{'shape':<12} {'notebook':<22} {'result':<6} seconds")
    for shape in shapes:
        for nb in notebooks:
            ok, seconds, err = run(shape, nb, folder, args.profile)
            failures += not ok
            print(f"{shape:<12} {nb:<22} {'ok' if ok else 'FAIL':<6} {seconds:5.0f}  {err}", flush=True)
        print(f"{shape:<12} report: {report(shape, folder, args.profile).relative_to(ROOT)}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
