"""One training loop for every model in the course, any objective, and evaluation.

Any ``nn.Module`` whose ``forward(batch)`` takes a batch dict (``data.collate`` or
``features.FeatureSet.batches``) and returns class logits trains here with cross-entropy; a
model with an ``objective(batch)`` method (the contrastive model of notebook 06) trains on
that instead. Notebook 02 walks through the loop line by line.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class History:
    """Per-epoch training loss and validation measures of a ``fit`` run, and where the best epoch was."""

    train_loss: list[float] = field(default_factory=list)
    val: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = -1
    seconds: float = 0.0
    samples_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    samples_seen: int = 0  # by this process (under an accelerator, its shard)
    stopped: str = ""  # why training ended before its last epoch: "patience", "time limit", or ""

    @property
    def val_loss(self) -> list[float]:
        return self.val.get("loss", [])

    @property
    def val_accuracy(self) -> list[float]:
        return self.val.get("accuracy", [])

    def as_frame(self):
        """A long-format table (epoch, split, metric, value) for seaborn's learning curves."""
        import pandas as pd

        rows = [(e, "train", "loss", v) for e, v in enumerate(self.train_loss, start=1)]
        rows += [(e, "val", name, v) for name, vals in self.val.items() for e, v in enumerate(vals, start=1)]
        return pd.DataFrame(rows, columns=["epoch", "split", "metric", "value"])

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the artifact store keeps it beside the weights)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(**d)


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


def lr_groups(model: torch.nn.Module, lr: float, lrs: dict[str, float | dict] | None = None) -> list[dict]:
    """AdamW parameter groups: a parameter whose name starts with a key of ``lrs`` gets that learning rate
    (or those optimiser settings, for a dict; the longest matching key wins), every other one ``lr``.

    Frozen parameters (``requires_grad=False``) are left out. Example: fine-tune BERT slowly and a new
    head fast with ``lr_groups(model, 1e-3, {"encoder": 5e-5})``.
    """
    lrs = lrs or {}
    groups: dict[str, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = max((k for k in lrs if name.startswith(k)), key=len, default="")
            groups.setdefault(key, []).append(p)
    out = []
    for key, params in groups.items():
        setting = lrs.get(key, lr)
        out.append({"params": params, **(setting if isinstance(setting, dict) else {"lr": setting})})
    return out


def objective(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The model's own ``objective(batch)`` if it has one, else cross-entropy of its logits against the labels."""
    if hasattr(model, "objective"):
        return model.objective(batch)
    return F.cross_entropy(model(batch).float(), batch["label"])


class Objective(torch.nn.Module):
    """A model's training loss as a module's forward (see ``objective``): what DDP wraps, so that a model with its
    own ``objective`` (contrastive, a decoder) syncs its gradients across processes like a classifier does."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        return objective(self.model, batch)


def _loader_generators(loader) -> list[torch.Generator]:
    """The random generators that decide a loader's order (its own, its sampler's, its batch sampler's)."""
    found: dict[int, torch.Generator] = {}
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator):
            found[id(g)] = g
    return list(found.values())


def fit(model: torch.nn.Module, train_loader, val_loader, *, epochs: int, lr: float = 1e-3,
        lrs: dict[str, float | dict] | None = None, weight_decay: float = 0.01, warmup: float = 0.1,
        patience: int | None = 3, validate: Callable[[torch.nn.Module], dict] | None = None,
        monitor: str = "loss", device="cpu", desc: str = "train", progress: bool = True,
        accumulate: int = 1, accelerator=None, checkpoint: str | Path | None = None,
        time_limit: float | None = None) -> History:
    """Train with AdamW and a warm-up/cosine schedule; keep the best epoch by a validation measure.

    Validation after each epoch is ``validate(model)`` (a dict of measures) when given, else the
    loss and accuracy on ``val_loader``. ``monitor`` names the measure that picks the best epoch
    (lower is better when its name contains "loss", higher otherwise); training stops after
    ``patience`` epochs without a better one (None: never). The best epoch's weights are
    restored, so the returned model is the best one, not the last. On CUDA the forward pass runs
    under autocast (bf16, or fp16 with a gradient scaler). ``lrs``: see ``lr_groups``.

    ``accumulate``: optimiser steps every that many batches (a larger batch in the same memory).
    ``accelerator``: an ``accelerate.Accelerator``; then it places the model, shards the loaders over its
    processes (DDP), runs mixed precision and gathers validation from every process; ``device`` is ignored.
    ``checkpoint``: a file written after every epoch (by one process) and resumed from when it exists, so an
    interrupted run continues at the next epoch with the same data order and schedule. ``time_limit``: seconds
    after which training stops at the end of an epoch (a job's wall time; resume from ``checkpoint``).
    """
    from tqdm.auto import tqdm

    if epochs < 1 or accumulate < 1:
        raise ValueError(f"epochs and accumulate must be at least 1, got epochs={epochs}, accumulate={accumulate}")
    acc = accelerator
    device = acc.device if acc is not None else torch.device(device)
    model.to(device)
    opt = torch.optim.AdamW(lr_groups(model, lr, lrs), lr=lr, weight_decay=weight_decay)
    if acc is not None:  # each process gets every n-th batch; the accelerator decides how many to accumulate
        accumulate = acc.gradient_accumulation_steps
        per_process = math.ceil(len(train_loader) / acc.num_processes)
    else:
        per_process = len(train_loader)
    total = epochs * math.ceil(per_process / accumulate)  # optimiser steps, the same whatever the process count
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, int(warmup * total)))
    generators = _loader_generators(train_loader)
    net = model  # the model itself; under an accelerator ``model`` is the DDP wrapper of its objective
    if acc is not None:  # the schedule stays ours: it steps once per optimiser step
        model, opt, train_loader = acc.prepare(Objective(net), opt, train_loader)
        if val_loader is not None and validate is None:
            val_loader = acc.prepare(val_loader)
        amp, scaler = None, None  # the accelerator's own mixed precision
    else:
        amp = autocast_dtype(device)
        scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    lower_is_better = "loss" in monitor
    hist, best, best_state, bad, first = History(), None, None, 0, 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for g, s in zip(generators, state["generators"]):
            g.set_state(s)
        torch.set_rng_state(state["rng"])
        hist = History.from_dict(state["history"])
        best, best_state, bad = state["best"], state["best_state"], state["bad"]
        first = len(hist.train_loss)
    start, seen = time.perf_counter(), 0
    bar = tqdm(total=(epochs - first) * len(train_loader), desc=desc, leave=False,
               disable=not progress or (acc is not None and not acc.is_local_main_process))
    for epoch in range(first, epochs):
        if patience is not None and bad >= patience:
            hist.stopped = "patience"
            break
        model.train()
        running, count = 0.0, 0
        for k, batch in enumerate(train_loader):
            batch = batch if acc is not None else to_device(batch, device)
            if acc is not None:  # the accelerator skips the step and the gradient sync between accumulated batches
                with acc.accumulate(model):
                    loss = model(batch)
                    acc.backward(loss)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                if acc.sync_gradients:
                    sched.step()
            else:
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss = objective(model, batch)
                last = (k + 1) % accumulate == 0 or k + 1 == len(train_loader)
                (scaler.scale(loss / accumulate) if scaler is not None else loss / accumulate).backward()
                if last:
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
            n = len(batch["index"])
            running, count, seen = running + loss.item() * n, count + n, seen + n
            bar.update(1)
        measures = validate(net) if validate is not None else _validation_measures(net, val_loader, device, amp, acc)
        hist.train_loss.append(_mean_over_processes(running, count, acc))
        for name, value in measures.items():
            hist.val.setdefault(name, []).append(float(value))
        bar.set_postfix({f"val_{k}": f"{v:.3f}" for k, v in measures.items()})
        value = float(measures[monitor])
        if best is None or (value < best - 1e-4 if lower_is_better else value > best + 1e-4):
            best, bad, hist.best_epoch = value, 0, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
        if checkpoint is not None:
            _save_progress(checkpoint, acc, model=net.state_dict(), optimizer=opt.state_dict(),
                           scheduler=sched.state_dict(), generators=[g.get_state() for g in generators],
                           rng=torch.get_rng_state(), history=hist.to_dict(), best=best, best_state=best_state,
                           bad=bad)
        if epoch + 1 < epochs and time_limit is not None and _any_process(time.perf_counter() - start > time_limit,
                                                                         acc):
            hist.stopped = "time limit"
            break
    bar.close()
    hist.seconds = time.perf_counter() - start
    hist.samples_per_second = seen / hist.seconds
    hist.samples_seen = seen
    if device.type == "cuda":
        hist.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
    net.load_state_dict(best_state)
    return hist


def _any_process(flag: bool, acc) -> bool:
    """True when ``flag`` is true on any process of ``acc``, so every process takes the same branch."""
    if acc is None or acc.num_processes == 1:
        return flag
    return acc.reduce(torch.tensor([float(flag)], device=acc.device), reduction="sum").item() > 0


def _mean_over_processes(total: float, count: int, acc) -> float:
    """``total / count`` summed over every process of ``acc`` (the one process when None)."""
    if acc is not None and acc.num_processes > 1:
        both = acc.reduce(torch.tensor([total, float(count)], device=acc.device), reduction="sum")
        total, count = both.tolist()
    return total / max(1, count)


def _save_progress(path: str | Path, acc, **state) -> None:
    """The resumable state, written atomically by one process while the others wait."""
    if acc is not None:
        acc.wait_for_everyone()
    if acc is None or acc.is_main_process:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
    if acc is not None:
        acc.wait_for_everyone()


def _validation_measures(model, loader, device, amp, acc=None) -> dict[str, float]:
    probs, labels, loss = _predict(model, loader, device, amp, acc)
    return {"loss": loss, "accuracy": float((probs.argmax(1) == labels).mean())}


@torch.no_grad()
def _predict(model, loader, device, amp, acc=None):
    model.eval()
    probs, labels, loss_sum = [], [], 0.0
    for batch in loader:
        if acc is None:
            batch = to_device(batch, device)
        with acc.autocast() if acc is not None else torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(batch).float()
        label = batch["label"]
        if acc is not None:  # every process's share, the duplicates that even out the last batch dropped
            logits, label = acc.gather_for_metrics((logits, label))
        loss_sum += F.cross_entropy(logits, label, reduction="sum").item()
        probs.append(torch.softmax(logits, 1).cpu())
        labels.append(label.cpu())
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
