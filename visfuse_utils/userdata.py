"""Your own data: a CSV of (image file, text, label) rows read into ``MultimodalData``.

Every image is converted under one stated policy, and anything wrong stops the import
with a ``DataError`` naming the file, row and column and saying what to change: nothing
is skipped or replaced silently (README, "Your own data").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError, MultimodalData, check_image_size


def convert_image(im, image_size: int, channels: int) -> np.ndarray:
    """A PIL image under the course's policy (see ``load_csv``) as uint8 C x H x W."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        backdrop = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(backdrop, im)
    im = im.convert("L" if channels == 1 else "RGB")
    im = ImageOps.fit(im, (image_size, image_size), method=Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_image(path: Path, image_size: int, channels: int, where: str) -> np.ndarray:
    """Open one image file and convert it (``convert_image``); a ``DataError`` naming ``where`` if it cannot."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"{where}: image file {path} does not exist; fix the path or add the file.")
    try:
        with Image.open(path) as im:
            im.load()
            return convert_image(im, image_size, channels)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{where}: image file {path} cannot be read as an image ({err}); "
                        "replace it with a valid PNG/JPEG or remove the row.") from None


def class_order(name: str):
    """Sort key for class names: integers (ASCII digits, optional minus) in numeric order first, then names as text."""
    number = re.fullmatch(r"-?[0-9]+", name) is not None
    return (not number, int(name) if number else 0, name)


def class_index(raw_labels: list[str], source: str, label_col: str) -> tuple[np.ndarray, list[str]]:
    """Labels as integers and the class names they index; a ``DataError`` when fewer than two classes."""
    class_names = sorted(set(raw_labels), key=class_order)
    if len(class_names) < 2:
        raise DataError(f"{source}: column {label_col!r} holds only one class ({class_names[0]!r}); "
                        "a classifier needs at least two: add rows of another class.")
    index = {c: k for k, c in enumerate(class_names)}
    return np.array([index[c] for c in raw_labels], np.int64), class_names


@dataclass
class Table:
    """A checked CSV before any image is decoded: the image files, texts, labels and where each row is."""

    paths: list[Path]
    texts: list[str]
    labels: np.ndarray
    class_names: list[str]
    wheres: list[str]  # "file, row r (line l), column 'image'" for each row's image error
    source: str


def read_table(path: str | Path, image_root: str | Path | None = None, image_col: str = "image",
               text_col: str = "text", label_col: str = "label") -> Table:
    """Read and check a CSV of (image file, text, label) rows without opening an image (see ``load_csv``)."""
    import pandas as pd

    path = Path(path)
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
    paths, texts, raw_labels, wheres = [], [], [], []
    for i, (rel, text, label) in enumerate(zip(table[image_col], table[text_col], table[label_col])):
        where = f"{path}, row {i + 1} (line {i + 2})"
        rel = str(rel).strip()
        if not rel:
            raise DataError(f"{where}, column {image_col!r}: no image file given; fill it in or remove the row.")
        img_path = (root / rel).resolve()
        if not img_path.is_relative_to(root_resolved):
            raise DataError(f"{where}, column {image_col!r}: {rel!r} points outside the image root "
                            f"{root}; keep images under that folder or pass image_root.")
        if not img_path.is_file():
            raise DataError(f"{where}, column {image_col!r}: image file {img_path} does not exist; "
                            "fix the path or add the file.")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}, column {text_col!r}: the text is empty; write the note or remove the row.")
        label = str(label).strip()
        if not label:
            raise DataError(f"{where}, column {label_col!r}: the label is missing; fill it in or remove the row.")
        paths.append(img_path)
        texts.append(text.strip())
        raw_labels.append(label)
        wheres.append(f"{where}, column {image_col!r}")
    labels, class_names = class_index(raw_labels, str(path), label_col)
    return Table(paths, texts, labels, class_names, wheres, str(path))


def load_csv(path: str | Path, image_root: str | Path | None = None, image_col: str = "image",
             text_col: str = "text", label_col: str = "label", image_size: int = 64,
             channels: int = 1) -> MultimodalData:
    """Read a table of (image file, text, label) rows into ``MultimodalData``, every image in memory.

    Image policy: EXIF orientation applied, transparency flattened onto white, converted
    to grayscale (``channels=1``) or RGB (``channels=3``), scaled so the shorter side is
    ``image_size`` and centre-cropped to a square. Image paths are relative to
    ``image_root`` (default: the CSV's folder) and may not leave it. Labels may be
    strings or integers; class names are their sorted distinct values. Any bad row
    raises ``DataError`` naming the file, row and column: nothing is skipped silently.
    Data larger than memory: ``lazydata.read_csv`` reads the same rows image by image.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    check_image_size(image_size, "image_size")
    t = read_table(path, image_root, image_col, text_col, label_col)
    images = np.stack([load_image(p, image_size, channels, w) for p, w in zip(t.paths, t.wheres)])
    return MultimodalData(images=images, texts=t.texts, labels=t.labels, class_names=t.class_names,
                          source=t.source, meta={"image_size": image_size, "channels": channels})
