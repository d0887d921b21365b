"""The artifact store: a trained model is kept under the settings that produced it, and reused when asked again.

``load_or_train(name, config, build, train)`` looks for a model called ``name`` whose ``config``
(every setting that changes the result: the data's fingerprint, the recipe, the seed, the
models it was built from) hashes to the same key. If one is stored it is loaded with
``weights_only=True`` after its checksum is verified; otherwise ``build()`` makes a fresh
model, ``train(model)`` trains it and the result is stored. Either way one line says which
happened and why, so notebook 04 can reuse notebook 03's text model and notebook 05 notebook
04's fusion without reading anyone's results file. Speed-only settings (device, progress bars,
workers) are refused in a config: they never change what is learnt, so they must not change
the key.

Files live in ``build/artifacts/``: ``NAME-KEY.pt`` (the weights) and ``NAME-KEY.json`` (the
manifest: name, key, config, what training reported, checksum, versions, date).
``VISFUSE_RETRAIN=1`` trains anew even when a stored model matches.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .pretrained import file_sha256

SPEED_ONLY = frozenset({"device", "progress", "num_workers", "pin_memory", "internal_batch_size", "desc"})


@dataclass
class Artifact:
    """What the store knows of one model: its key and config, and what its training reported."""

    name: str
    key: str
    config: dict
    info: dict = field(default_factory=dict)
    reused: bool = False
    reason: str = ""

    @property
    def train_seconds(self) -> float:
        """Seconds the original training took (also when this run reused it)."""
        return float(self.info.get("history", {}).get("seconds", self.info.get("train_seconds", 0.0)))

    def history(self):
        """The ``train.History`` that training returned, or None."""
        from .train import History

        return History.from_dict(self.info["history"]) if "history" in self.info else None


def artifacts_dir() -> Path:
    """``artifacts/`` inside ``visfuse_utils.build_dir()``."""
    from . import build_dir

    return build_dir() / "artifacts"


def config_key(config: dict) -> str:
    """16 hex digits of the sha256 of ``config`` as canonical JSON (sorted keys)."""
    speed = sorted(SPEED_ONLY & set(_all_keys(config)))
    if speed:
        raise ValueError(f"config holds speed-only settings {speed}: they do not change the result, so they "
                         "must not change the key; leave them out of the config")
    text = json.dumps(config, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_or_train(name: str, config: dict, build: Callable[[], nn.Module],
                  train: Callable[[nn.Module], object], *, retrain: bool | None = None,
                  verbose: bool = True) -> tuple[nn.Module, Artifact]:
    """The model ``name`` trained under ``config``: loaded from the store if there, else built, trained and stored.

    ``build()`` returns a fresh model; it must recreate every *frozen* parameter exactly (load the
    experts a model starts from, and put their keys in ``config``), because only what training
    can change is stored: the trainable parameters and the buffers. ``train(model)`` trains in
    place and returns a ``train.History``, a JSON-ready dict, or None. Returns the model (on the
    CPU, in eval mode) and its ``Artifact``.
    """
    key = config_key(config)
    folder = artifacts_dir()
    weights, manifest = folder / f"{name}-{key}.pt", folder / f"{name}-{key}.json"
    retrain = os.environ.get("VISFUSE_RETRAIN", "0") == "1" if retrain is None else retrain
    model = build()
    if manifest.is_file() and weights.is_file() and not retrain:
        saved = json.loads(manifest.read_text())
        _load_weights(model, weights, saved["sha256"])
        art = Artifact(name, key, saved["config"], saved.get("info", {}), reused=True,
                       reason=f"stored {saved['created'][:16].replace('T', ' ')} with the same settings")
    else:
        reason = "retrain requested" if retrain else _why_absent(name, config, folder)
        result = train(model)
        info = {"history": result.to_dict()} if hasattr(result, "to_dict") else dict(result or {})
        art = Artifact(name, key, json.loads(json.dumps(config, default=_json_default)), info, False, reason)
        _save(model, art, weights, manifest)
    if verbose:
        verb = "reused" if art.reused else "trained"
        print(f"{name}: {verb} [{key[:8]}] ({art.reason})")
    return model.cpu().eval(), art


def stored(name: str | None = None) -> list[dict]:
    """The manifests in the store (of ``name`` only, if given), newest first."""
    folder = artifacts_dir()
    paths = folder.glob(f"{name}-*.json" if name else "*.json") if folder.is_dir() else []
    found = [json.loads(p.read_text()) for p in paths]
    return sorted(found, key=lambda m: m["created"], reverse=True)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What training can change: parameters with ``requires_grad`` and every buffer (BatchNorm statistics)."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k not in frozen}


def _save(model: nn.Module, art: Artifact, weights: Path, manifest: Path) -> None:
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_name(weights.name + ".tmp")
    torch.save(trainable_state(model), tmp)
    os.replace(tmp, weights)
    record = {"name": art.name, "key": art.key, "config": art.config, "info": art.info,
              "sha256": file_sha256(weights), "created": _dt.datetime.now().isoformat(timespec="seconds"),
              "versions": {"visfuse_utils": _version(), "torch": torch.__version__}}
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=_json_default))
    os.replace(tmp, manifest)


def _load_weights(model: nn.Module, path: Path, sha256: str) -> None:
    actual = file_sha256(path)
    if actual != sha256:
        raise RuntimeError(f"{path} has sha256 {actual}, but its manifest records {sha256}: the file was changed "
                           "or truncated. Delete both files (or set VISFUSE_RETRAIN=1) to train it anew.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    if unexpected or set(missing) - frozen:
        raise RuntimeError(f"{path} does not fit the model that build() made (missing {sorted(set(missing) - frozen)}"
                           f", unexpected {sorted(unexpected)}); delete it or set VISFUSE_RETRAIN=1.")


def _why_absent(name: str, config: dict, folder: Path) -> str:
    """'first run', or which settings differ from the newest stored model of that name."""
    others = stored(name) if folder.is_dir() else []
    if not others:
        return "none stored yet"
    old, new = _flatten(others[0]["config"]), _flatten(json.loads(json.dumps(config, default=_json_default)))
    diff = [f"{k} {old.get(k, '-')!s:.20} -> {new.get(k, '-')!s:.20}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]
    return "stored ones differ in " + "; ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _all_keys(config: dict):
    for k, v in config.items():
        yield k
        if isinstance(v, dict):
            yield from _all_keys(v)


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (tuple, set)):
        return list(x)
    raise TypeError(f"config values must be JSON numbers, strings, lists or dicts; got {type(x).__name__}: {x!r}")


def _version() -> str:
    from . import __version__

    return __version__
