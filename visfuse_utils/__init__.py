"""VisFuse: the shared memory of the course notebooks.

Every notebook starts with ``import visfuse_utils as vf``. This module holds what
all of them need first and last: the run profile, seeding and device choice, and
``Claims`` (each result sentence checked on the run) and ``save_results`` (the ``results`` schema)
that every notebook ends with.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .results import Claims, save_results

__version__ = "0.1.0"
__all__ = ["Claims", "PROFILES", "Profile", "build_dir", "describe_run", "get_device", "get_profile", "save_results",
           "set_seed"]

PROFILES = ("smoke", "full", "large")


@dataclass(frozen=True)
class Profile:
    """Sizes that a notebook's parameters cell takes its defaults from.

    ``smoke`` proves that every cell runs (tests, CI); ``full`` gives the numbers the
    text discusses and keeps the whole series near 20 minutes on a 2-core CPU; ``large``
    (10x the scans, twice the side, more epochs) is for a GPU, and for the command
    ``train_cli`` it also means a larger text model (bert-base).
    """

    name: str
    n_samples: int
    image_size: int
    epochs: int
    text_epochs: int
    seeds: tuple[int, ...]
    ig_steps: int
    n_explain: int
    head_epochs: int  # fusion heads on frozen features (notebook 04)
    finetune_epochs: int  # the CNN fine-tuned inside concat fusion (notebook 04)
    token_epochs: int  # token fusion, end to end (notebook 04)


_PROFILES = {
    "smoke": Profile("smoke", n_samples=240, image_size=32, epochs=1, text_epochs=1, seeds=(0,), ig_steps=8,
                     n_explain=4, head_epochs=2, finetune_epochs=1, token_epochs=1),
    "full": Profile("full", n_samples=2000, image_size=64, epochs=12, text_epochs=2, seeds=(0, 1, 2), ig_steps=50,
                    n_explain=32, head_epochs=40, finetune_epochs=6, token_epochs=3),
    "large": Profile("large", n_samples=20000, image_size=128, epochs=20, text_epochs=3, seeds=(0, 1, 2),
                     ig_steps=50, n_explain=64, head_epochs=40, finetune_epochs=10, token_epochs=4),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile named by ``name``, else by ``$VISFUSE_PROFILE``, else ``full``."""
    name = name or os.environ.get("VISFUSE_PROFILE", "full")
    if name not in _PROFILES:
        raise ValueError(
            f"Unknown profile {name!r} (from VISFUSE_PROFILE or the PROFILE parameter); "
            f"use one of {', '.join(PROFILES)}."
        )
    return _PROFILES[name]


def build_dir() -> Path:
    """Where runs write results and checkpoints: ``$VISFUSE_BUILD``, else ``build/`` in the repository.

    Outside a repository checkout (a pip install on Colab) it is ``build/`` in the working folder.
    """
    if os.environ.get("VISFUSE_BUILD"):
        return Path(os.environ["VISFUSE_BUILD"])
    repo = Path(__file__).resolve().parent.parent
    return (repo if (repo / "pyproject.toml").is_file() else Path.cwd()) / "build"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a CPU run repeats exactly."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def get_device(prefer: str | None = None):
    """``prefer`` if given (``"cpu"``, ``"cuda"``…), else CUDA, Apple MPS or the CPU."""
    import torch

    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_run(profile: Profile, device) -> str:
    """One line naming the profile, device and versions; every notebook prints it once."""
    import torch

    dev = str(device)
    if getattr(device, "type", str(device)) == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return (f"profile={profile.name} device={dev} visfuse_utils={__version__} "
            f"torch={torch.__version__} threads={torch.get_num_threads()}")
