"""One training loop for every model in the course (CNN, text, fusion), and evaluation.

Any ``nn.Module`` whose ``forward(batch)`` takes the batch dict of
``data.collate`` and returns class logits can be trained here. Notebook 02 walks
through the loop line by line.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class History:
    """Per-epoch curves of a ``fit`` run, plus where the best epoch was."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    samples_per_second: float = 0.0
    peak_memory_mb: float = 0.0

    def as_frame(self):
        """A long-format table (epoch, split, metric, value) for seaborn's learning curves."""
        import pandas as pd

        rows = []
        for e, (tl, vl, va) in enumerate(zip(self.train_loss, self.val_loss, self.val_accuracy), start=1):
            rows += [(e, "train", "loss", tl), (e, "val", "loss", vl), (e, "val", "accuracy", va)]
        return pd.DataFrame(rows, columns=["epoch", "split", "metric", "value"])


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def to_device(batch: dict, device) -> dict:
    """Move every tensor of a batch; ``non_blocking`` overlaps copies from pinned memory on CUDA."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def autocast_dtype(device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16; None (full precision) off CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def save_checkpoint(model: torch.nn.Module, path: str | Path) -> Path:
    """Write the state_dict atomically (temp file, then rename), so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(model: torch.nn.Module, path: str | Path, device="cpu") -> torch.nn.Module:
    """Load a state_dict with ``weights_only=True``: tensors only, no pickled code runs."""
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Learning-rate factor: linear warm-up, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def fit(model: torch.nn.Module, train_loader, val_loader, *, epochs: int, lr: float = 1e-3,
        weight_decay: float = 0.01, warmup: float = 0.1, patience: int = 3, device="cpu",
        checkpoint: str | Path | None = None, desc: str = "train", progress: bool = True,
        param_groups: list[dict] | None = None) -> History:
    """Train with AdamW, warm-up/cosine schedule, early stopping on validation loss.

    The best epoch's weights are saved to ``checkpoint`` (or kept in memory when None)
    and restored at the end, so the returned model is the best one, not the last.
    On CUDA the forward pass runs under autocast (bf16, or fp16 with a gradient scaler).
    ``param_groups`` lets a caller give parts of the model their own learning rate.
    """
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = torch.device(device)
    model.to(device)
    params = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, int(warmup * total)))
    amp = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    hist, best, best_state, bad = History(), float("inf"), None, 0
    start, seen = time.perf_counter(), 0
    bar = tqdm(total=total, desc=desc, leave=False, disable=not progress)
    for epoch in range(epochs):
        model.train()
        running, count = 0.0, 0
        for batch in train_loader:
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(model(batch).float(), batch["label"])
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            n = len(batch["label"])
            running, count, seen = running + loss.item() * n, count + n, seen + n
            bar.update(1)
        val_probs, val_labels, val_loss = _predict(model, val_loader, device, amp)
        hist.train_loss.append(running / count)
        hist.val_loss.append(val_loss)
        hist.val_accuracy.append(float((val_probs.argmax(1) == val_labels).mean()))
        bar.set_postfix(val_loss=f"{val_loss:.3f}", val_acc=f"{hist.val_accuracy[-1]:.3f}")
        if val_loss < best - 1e-4:
            best, bad, hist.best_epoch = val_loss, 0, epoch
            if checkpoint is not None:
                save_checkpoint(model, checkpoint)
            else:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    bar.close()
    hist.seconds = time.perf_counter() - start
    hist.samples_per_second = seen / hist.seconds
    if device.type == "cuda":
        hist.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, device)
    elif best_state is not None:
        model.load_state_dict(best_state)
    return hist


@torch.no_grad()
def _predict(model, loader, device, amp):
    model.eval()
    probs, labels, loss_sum = [], [], 0.0
    for batch in loader:
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(batch).float()
        loss_sum += F.cross_entropy(logits, batch["label"], reduction="sum").item()
        probs.append(torch.softmax(logits, 1).cpu())
        labels.append(batch["label"].cpu())
    probs_np, labels_np = torch.cat(probs).numpy(), torch.cat(labels).numpy()
    return probs_np, labels_np, loss_sum / max(1, len(labels_np))


def predict(model: torch.nn.Module, loader, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and true labels over a loader, in loader order."""
    device = torch.device(device)
    model.to(device)
    probs, labels, _ = _predict(model, loader, device, autocast_dtype(device))
    return probs, labels


def evaluate(model: torch.nn.Module, loader, device="cpu") -> dict[str, float]:
    """``metrics.classification_metrics`` of the model on a loader."""
    from .metrics import classification_metrics

    probs, labels = predict(model, loader, device)
    return classification_metrics(labels, probs)


@torch.no_grad()
def cache_features(model, loaders: dict, device="cpu", batch_size: int = 128, seed: int = 0,
                   keep_images: bool = False) -> dict:
    """Run a ``FusionClassifier``'s (frozen) encoders once per split; loaders of the pooled features.

    Returns ``{split: DataLoader}`` whose batches hold ``image_features``, ``text_features``,
    ``label`` and ``index``; training a fusion head on them skips the encoders entirely.
    ``keep_images=True`` keeps the scans instead of their features, so the (cheap) image
    encoder can still train inside the fusion while the (costly) text encoder runs once.
    Batches that already carry ``text_features`` (such a cache) skip the text encoder, so
    one pass of BERT serves both kinds of cache.
    Also sets ``model.blank_features`` (features of a blank scan and an empty note) for
    modality dropout. Only valid while the cached encoders stay frozen.
    """
    device = torch.device(device)
    model.to(device).eval()
    image_key = "image" if keep_images else "image_features"
    out = {}
    for split, loader in loaders.items():
        rows = {image_key: [], "text_features": [], "label": [], "index": []}
        for batch in loader:
            batch = to_device(batch, device)
            h_img = batch["image"] if keep_images else model.image_encoder(batch["image"])
            h_txt = batch["text_features"] if "text_features" in batch else \
                model.text_encoder(batch["input_ids"], batch["attention_mask"])
            for key, val in zip(rows, (h_img, h_txt, batch["label"], batch["index"])):
                rows[key].append(val.float().cpu() if val.is_floating_point() else val.cpu())
        tensors = {k: torch.cat(v) for k, v in rows.items()}
        items = [{k: t[i] for k, t in tensors.items()} for i in range(len(tensors["label"]))]
        out[split] = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=split == "train",
                                                 generator=torch.Generator().manual_seed(seed))
    first = next(iter(next(iter(loaders.values()))))
    blank = {"image": torch.full_like(first["image"][:1], model.blank_image_value),
             "input_ids": torch.tensor([[model.cls_id, model.sep_id]]),
             "attention_mask": torch.ones(1, 2, dtype=torch.long)}
    h_img, h_txt = model.encode(to_device(blank, device))
    model.blank_features = {"image": h_img.float().cpu(), "text": h_txt.float().cpu()}
    return out


def with_modality_missing(cached, modality: str, blank_features: dict[str, torch.Tensor]) -> list[dict]:
    """The batches of a feature cache with one modality missing in every row.

    ``modality`` is ``"image"`` or ``"text"``; its features become those of a blank scan or an
    empty note (``model.blank_features``), exactly what ``models.drop_modalities`` trains on.
    """
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    key = f"{modality}_features"
    return [dict(b, **{key: blank_features[modality].expand_as(b[key])}) for b in cached]
