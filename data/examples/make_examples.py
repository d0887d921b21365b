"""Rebuild the bring-your-own-data example from images that scikit-image bundles.

    python data/examples/make_examples.py

Writes 128x128 PNG crops (the four quadrants of each source image) to images/ and
examples.csv (image,text,label). The sources, their licences and the texts are listed
below; see data/examples/README.md.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

# (skimage function, label, licence as stated in its docstring, description)
SOURCES = [
    ("cell", "microscopy", "CC0", "a phase-contrast micrograph of a single cell"),
    ("immunohistochemistry", "microscopy", "no known copyright restrictions", "stained tissue under a microscope"),
    ("microaneurysms", "microscopy", "CC0", "a retinal angiogram with small microaneurysms"),
    ("retina", "microscopy", "CC0 1.0 / public domain", "a fundus image of the human retina"),
    ("brick", "texture", "CC0", "a close-up of a brick wall texture"),
    ("grass", "texture", "CC0", "a dense patch of grass seen from above"),
    ("gravel", "texture", "CC0", "loose gravel on the ground"),
    ("camera", "photo", "CC0", "a photographer with a camera on a tripod"),
    ("coffee", "photo", "CC0", "a cup of coffee on a saucer"),
    ("chelsea", "photo", "CC0", "a tabby cat named Chelsea"),
    ("coins", "photo", "no known copyright restrictions", "ancient Greek coins from Pompeii"),
]
QUADRANTS = ["top left", "top right", "bottom left", "bottom right"]


def main() -> None:
    here = Path(__file__).resolve().parent
    (here / "images").mkdir(exist_ok=True)
    rows = []
    for name, label, _licence, description in SOURCES:
        image = np.asarray(getattr(skdata, name)())
        h, w = image.shape[:2]
        for q, where in enumerate(QUADRANTS):
            r, c = divmod(q, 2)
            crop = image[r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2]
            path = f"images/{name}_{q}.png"
            Image.fromarray(crop).resize((128, 128), Image.Resampling.BILINEAR).save(here / path)
            rows.append({"image": path, "text": f"The {where} quarter of {description}.", "label": label})
    with open(here / "examples.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {here.name}/examples.csv")


if __name__ == "__main__":
    main()
