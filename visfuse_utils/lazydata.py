"""Data larger than memory: rows whose images are read and resized on demand, in DataLoader workers.

``data.MultimodalData`` holds every scan in one array, which is right for a course notebook and wrong for
tens of thousands of photographs. ``LazyData`` keeps only the texts, labels and where each image lives (a
file of a checked CSV, or a row of a Hugging Face ``datasets`` dataset); ``LazyDataset`` opens, converts
(``userdata.convert_image``: the same policy as ``load_csv``) one image when a worker asks for it, so
memory stays flat as the data grows. Errors are ``DataError`` s naming the file or row.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .data import MAX_LENGTH, DataError, check_image_size, collate, normalize_images, split_indices
from .userdata import class_index, convert_image, load_image, read_table


@dataclass
class LazyData:
    """Texts and labels in memory, images where they are: ``paths`` (files) or ``hf`` (a ``datasets.Dataset``).

    ``rows`` maps sample i to its row in the source, so a split is a cheap view.
    """

    texts: list[str]
    labels: np.ndarray
    class_names: list[str]
    source: str
    image_size: int
    channels: int
    rows: np.ndarray
    paths: list[Path] | None = None
    wheres: list[str] | None = None
    hf: object | None = None
    image_col: str = "image"

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices) -> LazyData:
        """The samples at ``indices`` (positions in this view)."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(self, texts=[self.texts[i] for i in idx], labels=self.labels[idx], rows=self.rows[idx])

    def image(self, i: int) -> np.ndarray:
        """Sample i's image, opened and converted now: uint8 C x H x W."""
        row = int(self.rows[i])
        if self.paths is not None:
            return load_image(self.paths[row], self.image_size, self.channels, self.wheres[row])
        value = self.hf[row][self.image_col]
        where = f"{self.source}, row {row}, column {self.image_col!r}"
        if isinstance(value, str):  # a column of file paths
            return load_image(Path(value), self.image_size, self.channels, where)
        if not hasattr(value, "convert"):
            raise DataError(f"{where}: holds {type(value).__name__}, not an image; cast the column to "
                            "datasets.Image() or store file paths in it.")
        return convert_image(value, self.image_size, self.channels)


def read_csv(path: str | Path, image_root: str | Path | None = None, image_col: str = "image",
             text_col: str = "text", label_col: str = "label", image_size: int = 64, channels: int = 1) -> LazyData:
    """``userdata.load_csv``'s rows and checks (every file must exist), with no image opened yet."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    check_image_size(image_size, "image_size")
    t = read_table(path, image_root, image_col, text_col, label_col)
    return LazyData(t.texts, t.labels, t.class_names, t.source, image_size, channels,
                    rows=np.arange(len(t.texts)), paths=t.paths, wheres=t.wheres)


def load_hf(name_or_path: str, split: str = "train"):
    """A ``datasets`` dataset: ``load_from_disk`` for a saved folder, else ``load_dataset`` (the hub, online)."""
    import datasets

    if Path(name_or_path).is_dir():
        ds = datasets.load_from_disk(name_or_path)
    else:
        try:
            ds = datasets.load_dataset(name_or_path, split=split)
        except (OSError, ConnectionError, ValueError) as err:
            raise DataError(f"Hugging Face dataset {name_or_path!r} could not be loaded ({err}); give a folder "
                            "written by Dataset.save_to_disk, or a hub name while online.") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{name_or_path} has splits {list(ds)}, not {split!r}; pass one of them.")
        ds = ds[split]
    return ds


def from_hf(ds, image_col: str = "image", text_col: str = "text", label_col: str = "label", image_size: int = 64,
            channels: int = 1, source: str | None = None) -> LazyData:
    """A ``datasets.Dataset`` with image, text and label columns as ``LazyData`` (images decoded on demand).

    Labels of a ``ClassLabel`` column keep its names; other labels are sorted as ``load_csv`` sorts them.
    """
    source = source or getattr(ds, "info", None) and ds.info.dataset_name or "datasets.Dataset"
    check_image_size(image_size, "image_size")
    missing = [c for c in (image_col, text_col, label_col) if c not in ds.column_names]
    if missing:
        raise DataError(f"{source} has no column {', '.join(map(repr, missing))}; found {ds.column_names}. "
                        "Pass image_col/text_col/label_col (the command's --image-col/--text-col/--label-col).")
    texts = ds[text_col]
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{source}, row {i}, column {text_col!r}: the text is empty; write the note or drop "
                            "the row (Dataset.filter).")
    feature = ds.features[label_col]
    raw = ds[label_col]
    if hasattr(feature, "names"):  # ClassLabel
        labels, class_names = np.asarray(raw, np.int64), list(feature.names)
        if len(set(raw)) < 2:
            raise DataError(f"{source}: column {label_col!r} holds only one class ({feature.names[raw[0]]!r}); "
                            "a classifier needs at least two: add rows of another class.")
    else:
        labels, class_names = class_index([str(v).strip() for v in raw], source, label_col)
    return LazyData([t.strip() for t in texts], labels, class_names, source, image_size, channels,
                    rows=np.arange(len(texts)), hf=ds.select_columns([image_col]), image_col=image_col)


def split(data: LazyData, val: float = 0.15, test: float = 0.15, seed: int = 0):
    """(train, val, test) views, stratified exactly as ``data.split`` splits in-memory data."""
    parts = split_indices(data.labels, data.class_names, data.source, val, test, seed)
    return tuple(data.subset(p) for p in parts)


class LazyDataset:
    """Torch dataset over ``LazyData``: items as ``data.MultimodalDataset`` makes them. The notes are tokenized
    once, here, in one batch call (they are in memory anyway); each image is read when its item is asked for."""

    def __init__(self, data: LazyData, tokenizer=None, max_length: int = MAX_LENGTH):
        self.data = data
        self.pad_id = (tokenizer.pad_token_id or 0) if tokenizer is not None else 0
        self.tokens = None if tokenizer is None else \
            tokenizer(list(data.texts), truncation=True, max_length=max_length)["input_ids"]

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        import torch

        item = {"image": normalize_images(torch.from_numpy(np.array(self.data.image(i)))),
                "label": torch.tensor(self.data.labels[i]), "index": i}
        if self.tokens is not None:
            item["input_ids"] = torch.tensor(self.tokens[i], dtype=torch.long)
        return item


def make_loader(data: LazyData, tokenizer=None, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                workers: int = 0, device=None, max_length: int = MAX_LENGTH):
    """A DataLoader that reads images in ``workers`` processes (plain random batches when ``shuffle``)."""
    import torch

    ds = LazyDataset(data, tokenizer, max_length)
    pin = device is not None and torch.device(device).type == "cuda"
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                                       generator=torch.Generator().manual_seed(seed), num_workers=workers,
                                       persistent_workers=workers > 0, pin_memory=pin,
                                       collate_fn=functools.partial(collate, pad_id=ds.pad_id))
