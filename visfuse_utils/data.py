"""The data every notebook shares: ``MultimodalData``, the split, and the loaders that feed models.

``load_data`` turns a notebook's ``DATA`` parameter into samples (SynthScan from ``synthscan``, a
user's CSV from ``userdata``); ``split`` divides them the same way in every notebook; the Dataset
normalises the scans and tokenizes the notes once, and ``make_loader`` batches them with dynamic
padding. The constants below are the course's single definition of a scan's normalisation, a
blank scan, an empty note and the note length a text model reads.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MAX_LENGTH = 96  # word pieces a text model reads per note, [CLS] and [SEP] included
PIXEL_MEAN, PIXEL_SCALE = 0.5, 0.25  # scans enter models as (pixel / 255 - PIXEL_MEAN) / PIXEL_SCALE
BLANK_PIXEL = (0.0 - PIXEL_MEAN) / PIXEL_SCALE  # a black pixel after normalisation: the "missing scan"
MIN_IMAGE_SIZE = 8  # the CNN halves the scan three times (models.SmallCNN): 8 px leave it one pixel


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

    def subset(self, indices: Sequence[int] | np.ndarray) -> MultimodalData:
        """The samples at ``indices``, ground truth included."""
        idx = np.asarray(indices, dtype=np.int64)
        return MultimodalData(
            images=self.images[idx],
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            masks=None if self.masks is None else self.masks[idx],
            evidence_spans=None if self.evidence_spans is None else [self.evidence_spans[i] for i in idx],
            captions=None if self.captions is None else [self.captions[i] for i in idx],
            latents=None if self.latents is None else {k: v[idx] for k, v in self.latents.items()},
            source=self.source,
            meta=dict(self.meta),
        )

    def fingerprint(self) -> str:
        """16 hex digits that change with any image, text, label or class name (the store's data key)."""
        h = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        h.update(json.dumps([self.texts, self.class_names]).encode())
        return h.hexdigest()[:16]

    @property
    def has_ground_truth(self) -> bool:
        """True when masks, evidence spans and latents exist (SynthScan, not user data)."""
        return self.masks is not None and self.evidence_spans is not None and self.latents is not None


def normalize_images(images):
    """uint8 scans (a tensor, N x C x H x W or C x H x W) -> the float input every model of the course takes."""
    return (images.float() / 255.0 - PIXEL_MEAN) / PIXEL_SCALE


def empty_note(tokenizer) -> list[int]:
    """The token ids of an empty note, ``[CLS] [SEP]``: what the tokenizer gives for "" (the "missing note")."""
    return [tokenizer.cls_token_id, tokenizer.sep_token_id]


def check_image_size(image_size: int, where: str = "IMAGE_SIZE") -> None:
    """A ``DataError`` when scans of ``image_size`` pixels are too small for the course's CNN."""
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise DataError(f"{where}={image_size!r}: images are resized to this side, and the CNN halves it three "
                        f"times; set it to at least {MIN_IMAGE_SIZE} (the profiles use 32 to 128).")


def load_data(data: str, n: int, seed: int = 0, image_size: int = 64, channels: int = 1,
              rule: str = "sum") -> MultimodalData:
    """What a notebook's ``DATA`` parameter names: ``"synthscan"`` or a CSV path (``userdata.load_csv``).

    ``channels`` (a notebook's ``CHANNELS``): 1 reads every image as grayscale, 3 as RGB; SynthScan is grayscale.
    ``rule``: SynthScan's label rule (``synthscan.make_synthscan``); a CSV brings its own labels.
    """
    check_image_size(image_size)
    if channels not in (1, 3):
        raise DataError(f"CHANNELS={channels!r}: set 1 (images read as grayscale) or 3 (RGB, for colour images).")
    if data.lower() == "synthscan":
        if channels != 1:
            raise DataError("CHANNELS=3 with DATA='synthscan': SynthScan's scans are grayscale; set CHANNELS = 1.")
        from .synthscan import synthscan_cached

        return synthscan_cached(n, seed=seed, image_size=image_size, rule=rule)
    if rule != "sum":
        raise DataError(f"rule={rule!r} with DATA={data!r}: the label rule chooses SynthScan's labels; your CSV's "
                        "labels are its own. Leave the rule at 'sum'.")
    from .userdata import load_csv

    return load_csv(data, image_size=image_size, channels=channels)


# ----------------------------------------------------------------------------- splits
def split_indices(labels: np.ndarray, class_names: list[str], source: str, val: float = 0.15, test: float = 0.15,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, val, test) positions of a stratified split of ``labels``: one rule for every kind of data."""
    from sklearn.model_selection import train_test_split

    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be fractions in (0, 1) with val + test < 1")
    idx = np.arange(len(labels))
    counts = np.bincount(labels, minlength=len(class_names))
    if counts[counts > 0].min() < 3:
        rare = [c for c, k in zip(class_names, counts) if 0 < k < 3]
        raise DataError(f"{source}: every class needs at least 3 samples to be split three ways; "
                        f"class counts are {dict(zip(class_names, counts.tolist()))}. Add samples of "
                        f"{', '.join(map(repr, rare))} or merge {'it' if len(rare) == 1 else 'them'} into another "
                        "class.")
    n_test, n_val = round(test * len(labels)), round(val * len(labels))
    n_classes = int((counts > 0).sum())
    if min(n_test, n_val) < n_classes:
        need = int(np.ceil(n_classes / min(val, test)))
        raise DataError(f"{source}: {len(labels)} samples are too few for a stratified split with {n_classes} "
                        f"classes: the validation and test shares ({val:.0%}, {test:.0%}) give {n_val} and {n_test} "
                        f"samples, fewer than one per class. Add samples (at least {need}) or merge classes.")
    rest, test_idx = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed)
    train_idx, val_idx = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed)
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)


def split(data: MultimodalData, val: float = 0.15, test: float = 0.15, seed: int = 0):
    """Stratified (train, val, test) split of ``data``."""
    parts = split_indices(data.labels, data.class_names, data.source, val, test, seed)
    return tuple(data.subset(p) for p in parts)


# ------------------------------------------------------------------------ torch Dataset
class MultimodalDataset:
    """Torch dataset over ``MultimodalData``; the texts are tokenized once, here.

    Items are dicts with ``image`` (float, normalised to mean 0 and unit scale),
    ``input_ids`` and ``attention_mask`` (unpadded; ``collate`` pads per batch) and
    ``label``. ``tokenizer=None`` gives image-only items.
    """

    def __init__(self, data: MultimodalData, tokenizer=None, max_length: int = MAX_LENGTH):
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

        item = {"image": normalize_images(self.images[i]), "label": self.labels[i], "index": i}
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
    train on loaders without a tokenizer, whose batches stay plainly random. The batch size is
    ``size``, not ``batch_size``: Accelerate's sharding reads a ``batch_size`` as "every batch but
    the last is full" and drops the pair of batches where a short one falls mid-epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator, group: int = 8):
        self.lengths, self.size, self.generator, self.group = list(lengths), batch_size, generator, group

    def __len__(self) -> int:
        n, window = len(self.lengths), self.size * self.group
        return sum(-(-min(window, n - s) // self.size) for s in range(0, n, window))

    def __iter__(self):
        import torch

        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        window = self.size * self.group
        batches = []
        for s in range(0, len(order), window):
            chunk = sorted(order[s:s + window], key=self.lengths.__getitem__)
            batches += [chunk[k:k + self.size] for k in range(0, len(chunk), self.size)]
        for j in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[j]


def make_loader(data: MultimodalData, tokenizer=None, batch_size: int = 64, shuffle: bool = False,
                seed: int = 0, device=None, max_length: int = MAX_LENGTH):
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
