"""The course's reusable models, each made by one recipe and kept in the artifact store.

A model that more than one notebook needs is defined here once: notebook 02 trains the CNN
expert and notebook 04 reuses it, notebook 03 fine-tunes the text expert and notebook 04
reuses it, notebook 04 trains the fusions that notebook 05 explains, notebook 06 the
contrastive model. Each function builds the store's config from every setting that changes
the result (data fingerprint, recipe, seed, the models it starts from) and calls
``store.load_or_train``: whichever notebook asks first trains, the others reuse. The ``recipe``
entry carries a version: bump it when a recipe's code changes what it trains (fusion/2: token
fusion reads the scan and the note as a sentence pair).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from . import Profile, set_seed, store
from .data import MAX_LENGTH, MultimodalData, empty_note, make_loader
from .features import FeatureSet, cache_features, encode_texts
from .models import (
    FUSIONS,
    FusionClassifier,
    ImageClassifier,
    SmallCNN,
    TextClassifier,
    TextEncoder,
    build_fusion_model,
    mlp_head,
)
from .train import History, fit

FUSION_RECIPES = ("late", "late_learned", "concat", "gated", "concat_ft", "token")


def data_key(train_set: MultimodalData, val_set: MultimodalData) -> dict:
    """The data part of a config: the fingerprints of the training and validation splits."""
    return {"train": train_set.fingerprint(), "val": val_set.fingerprint()}


def image_expert(train_set: MultimodalData, val_set: MultimodalData, *, seed: int, epochs: int, width: int = 32,
                 lr: float = 3e-3, batch_size: int = 32, patience: int = 4, device="cpu",
                 progress: bool = True) -> tuple[ImageClassifier, store.Artifact]:
    """Notebook 02's CNN: ``SmallCNN`` + a linear head, trained on the scans alone with ``train.fit``."""
    config = {"recipe": "image_expert/1", "data": data_key(train_set, val_set), "seed": seed, "epochs": epochs,
              "width": width, "lr": lr, "batch_size": batch_size, "patience": patience}

    def build():
        set_seed(seed)
        return ImageClassifier(SmallCNN(train_set.images.shape[1], width=width), len(train_set.class_names))

    def train(model):
        loader = make_loader(train_set, None, batch_size, shuffle=True, seed=seed, device=device)
        val = make_loader(val_set, None, 256, device=device)
        return fit(model, loader, val, epochs=epochs, lr=lr, patience=patience, device=device,
                   desc=f"CNN seed {seed}", progress=progress)

    return store.load_or_train("image_expert", config, build, train)


def text_expert(train_set: MultimodalData, val_set: MultimodalData, tokenizer, hf_encoder: nn.Module, *,
                text_model: str, seed: int, epochs: int, lr: float = 5e-5, head_lr: float = 1e-3,
                batch_size: int = 32, max_length: int = MAX_LENGTH, device="cpu",
                progress: bool = True) -> tuple[TextClassifier, store.Artifact]:
    """Notebook 03's fine-tuned text classifier: the pretrained encoder at ``lr``, the new head at ``head_lr``."""
    config = {"recipe": "text_expert/1", "data": data_key(train_set, val_set), "text_model": text_model,
              "seed": seed, "epochs": epochs, "lr": lr, "head_lr": head_lr, "batch_size": batch_size,
              "max_length": max_length}

    def build():
        set_seed(seed)
        return TextClassifier(TextEncoder(copy.deepcopy(hf_encoder)), len(train_set.class_names))

    def train(model):
        loader = make_loader(train_set, tokenizer, batch_size, shuffle=True, seed=seed, device=device,
                             max_length=max_length)
        val = make_loader(val_set, tokenizer, batch_size, device=device, max_length=max_length)
        return fit(model, loader, val, epochs=epochs, lr=head_lr, lrs={"encoder": lr}, device=device,
                   desc="fine-tune", progress=progress)

    return store.load_or_train("text_expert", config, build, train)


@dataclass
class Experts:
    """The two unimodal experts that every fusion of notebook 04 starts from, with their store keys."""

    image: ImageClassifier
    text: TextClassifier
    image_art: store.Artifact
    text_art: store.Artifact

    @property
    def keys(self) -> dict:
        return {"image": self.image_art.key, "text": self.text_art.key}


def experts(train_set: MultimodalData, val_set: MultimodalData, tokenizer, hf_encoder: nn.Module, *,
            text_model: str, profile: Profile, seed: int, device="cpu", progress: bool = True) -> Experts:
    """Both experts by the course's recipes (stored ones if there): notebook 02's CNN, notebook 03's text model."""
    img, img_art = image_expert(train_set, val_set, seed=seed, epochs=profile.epochs, device=device,
                                progress=progress)
    txt, txt_art = text_expert(train_set, val_set, tokenizer, hf_encoder, text_model=text_model, seed=seed,
                               epochs=profile.text_epochs, device=device, progress=progress)
    return Experts(img, txt, img_art, txt_art)


def fusion_from_experts(kind: str, ex: Experts, hf_encoder: nn.Module, tokenizer, modality_dropout: float = 0.0,
                        freeze: bool = True) -> FusionClassifier:
    """A fusion model (``models.FUSIONS``) whose encoders start from the experts' (frozen unless ``freeze=False``)."""
    model = build_fusion_model(kind, copy.deepcopy(hf_encoder), ex.image.head.out_features,
                               modality_dropout=modality_dropout, cls_id=tokenizer.cls_token_id,
                               sep_id=tokenizer.sep_token_id, image_encoder=copy.deepcopy(ex.image.encoder))
    model.text_encoder.load_state_dict(ex.text.encoder.state_dict())
    if freeze:
        model.image_encoder.requires_grad_(False)
        model.text_encoder.requires_grad_(False)
    return model


def expert_features(ex: Experts, splits: dict[str, MultimodalData], tokenizer, device="cpu",
                    batch_size: int = 64) -> dict[str, FeatureSet]:
    """The frozen experts' features of every split, plus the scans themselves (for a CNN that still trains).

    One pass: the costly text encoder reads every note once; heads train on ``without("images")``,
    the fine-tuned CNN on ``without("image_features")``.
    """
    loaders = {k: make_loader(s, tokenizer, batch_size, device=device) for k, s in splits.items()}
    return cache_features(loaders, ex.image.encoder, ex.text.encoder, empty_note=empty_note(tokenizer),
                          keep_images=True, device=device)


def fusion(kind: str, ex: Experts, train_set: MultimodalData, val_set: MultimodalData, tokenizer,
           hf_encoder: nn.Module, *, profile: Profile, seed: int, modality_dropout: float = 0.0,
           epochs: int | None = None, features: dict[str, FeatureSet] | None = None, device="cpu",
           progress: bool = True) -> tuple[FusionClassifier, store.Artifact]:
    """Notebook 04's fusions of ``FUSION_RECIPES`` from the experts; ``features``: ``expert_features`` if at hand.

    Heads (late, late_learned, concat, gated) train on frozen features, ``profile.head_epochs``
    (half of them with modality dropout, which memorises training scans when run longer);
    ``concat_ft`` also fine-tunes the CNN (``profile.finetune_epochs``); ``token`` feeds image
    regions into BERT and trains end to end (``profile.token_epochs``).
    """
    if kind not in FUSION_RECIPES:
        raise ValueError(f"unknown fusion recipe {kind!r}; choose one of {', '.join(FUSION_RECIPES)}")
    head = kind not in ("concat_ft", "token")
    default = {"concat_ft": profile.finetune_epochs, "token": profile.token_epochs}.get(
        kind, max(1, profile.head_epochs // 2) if modality_dropout else profile.head_epochs)
    lr, lrs, patience, batch = {"concat_ft": (2e-3, {"image_encoder": 1e-3}, 4, 64),
                                "token": (1e-3, {"text_encoder": 5e-5}, 3, 32)}.get(kind, (2e-3, None, 6, 128))
    config = {"recipe": "fusion/2", "kind": kind, "experts": ex.keys, "data": data_key(train_set, val_set),
              "seed": seed, "epochs": epochs or default, "lr": lr, "lrs": lrs, "patience": patience,
              "batch_size": batch, "modality_dropout": modality_dropout}

    def build():
        set_seed(seed)
        model = fusion_from_experts("concat" if kind == "concat_ft" else kind, ex, hf_encoder, tokenizer,
                                    modality_dropout, freeze=kind != "token")
        if kind == "concat_ft":
            model.image_encoder.requires_grad_(True)
        return model

    def train(model):
        common = dict(epochs=config["epochs"], lr=lr, lrs=lrs, patience=patience, device=device, desc=kind,
                      progress=progress)
        if kind == "token":
            loaders = [make_loader(s, tokenizer, batch, shuffle=sh, seed=seed, device=device)
                       for s, sh in ((train_set, True), (val_set, False))]
            return fit(model, *loaders, **common)
        feats = features if features is not None else expert_features(ex, {"train": train_set, "val": val_set},
                                                                      tokenizer, device)
        drop = "images" if head else "image_features"
        tr, va = (feats[k].without(drop) for k in ("train", "val"))
        return fit(model, tr.batches(batch, shuffle=True, seed=seed), va.batches(256), **common)

    return store.load_or_train(f"fusion_{kind}", config, build, train)


class _OneModality(nn.Module):
    """A "fusion" that passes one modality's pooled features on: the unimodal rung of a frozen-feature ladder."""

    def __init__(self, modality: str, dim: int):
        super().__init__()
        self.modality, self.out_dim = modality, dim

    def forward(self, h_img: torch.Tensor, h_txt: torch.Tensor) -> torch.Tensor:
        return h_img if self.modality == "image" else h_txt


def frozen_features(splits: dict[str, MultimodalData], tokenizer, hf_encoder: nn.Module, image_encoder: nn.Module,
                    device="cpu", batch_size: int = 64,
                    text_from: dict[str, FeatureSet] | None = None) -> dict[str, FeatureSet]:
    """Every split's features from ``image_encoder`` and the text model as pretrained (no task training), frozen,
    with feature maps and token states for cross-attention: the feature source of notebook 04's section 8.

    ``text_from``: an earlier result whose text columns are reused; then only the image encoder runs (pooled
    features, no maps: for comparing image encoders under one text encoder).
    """
    if text_from is not None:
        loaders = {k: make_loader(s, None, 256, device=device) for k, s in splits.items()}
        images = cache_features(loaders, image_encoder, device=device)
        return {k: replace(text_from[k], image_features=images[k].image_features, image_maps=None,
                           blank={**text_from[k].blank, "image": images[k].blank["image"]}) for k in splits}
    text_encoder = TextEncoder(copy.deepcopy(hf_encoder)).freeze()
    loaders = {k: make_loader(s, tokenizer, batch_size, device=device) for k, s in splits.items()}
    return cache_features(loaders, image_encoder, text_encoder, empty_note=empty_note(tokenizer), maps=True,
                          device=device)


def frozen_fusion(kind: str, feats: dict[str, FeatureSet], image_encoder: nn.Module, hf_encoder: nn.Module,
                  tokenizer, n_classes: int, *, seed: int, epochs: int, device="cpu",
                  progress: bool = False) -> tuple[FusionClassifier, History]:
    """A head on ``frozen_features``: ``"image"`` or ``"text"`` alone, or a fusion of ``models.FUSIONS`` but token.

    Both encoders stay frozen, so the head trains on the cached vectors (maps and token states for
    cross-attention) in seconds, as notebook 04's heads do (lr 2e-3, patience 6); not stored.
    """
    if kind == "token" or kind not in (*FUSIONS, "image", "text"):
        raise ValueError(f"frozen_fusion trains a head on frozen features; kind must be 'image', 'text' or one of "
                         f"{', '.join(k for k in FUSIONS if k != 'token')}, got {kind!r}")
    set_seed(seed)
    model = build_fusion_model("concat" if kind in ("image", "text") else kind, copy.deepcopy(hf_encoder), n_classes,
                               cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
                               image_encoder=image_encoder)
    if kind in ("image", "text"):
        dim = model.image_encoder.out_dim if kind == "image" else model.text_encoder.out_dim
        model.fusion, model.head = _OneModality(kind, dim), mlp_head(dim, n_classes)
    model.image_encoder.requires_grad_(False)
    model.text_encoder.requires_grad_(False)
    drop = ("images",) if kind == "cross_attention" else ("images", "image_maps", "token_states", "token_mask")
    tr, va = (feats[k].without(*drop) for k in ("train", "val"))
    history = fit(model, tr.batches(128, shuffle=True, seed=seed), va.batches(256), epochs=epochs, lr=2e-3,
                  patience=6, device=device, desc=kind, progress=progress)
    return model, history


def contrastive(train_set: MultimodalData, val_set: MultimodalData, tokenizer, hf_encoder: nn.Module, *,
                text_model: str, seed: int, epochs: int, batch_size: int = 128, dim: int = 64, grid: int = 3,
                width: int = 16, lr: float = 2e-3, temperature: float | None = None, device="cpu",
                progress: bool = True):
    """Notebook 06's CLIP-style model: scans and captions aligned with InfoNCE; the epoch with the best
    validation text -> scan Recall@10 is kept. The temperature's log learns 10x faster, without weight
    decay; ``temperature`` fixes it instead (solution 06, exercise 3)."""
    from .retrieval import ContrastiveModel, recall_at_k, text_image_similarity

    config = {"recipe": "contrastive/1", "data": data_key(train_set, val_set), "text_model": text_model,
              "seed": seed, "epochs": epochs, "batch_size": batch_size, "dim": dim, "grid": grid, "width": width,
              "lr": lr, "temperature": temperature}

    def build():
        set_seed(seed)
        image_tower = SmallCNN(train_set.images.shape[1], width=width)
        model = ContrastiveModel(image_tower, TextEncoder(copy.deepcopy(hf_encoder)), dim=dim, grid=grid,
                                 **({"init_temperature": temperature} if temperature else {}))
        model.log_scale.requires_grad_(temperature is None)
        return model

    def train(model):
        feats = caption_features(model.text_encoder, tokenizer, {"train": train_set, "val": val_set}, device)

        def validate(m):
            sim = text_image_similarity(m, val_set, feats["val"].text_features, device=device)
            return {"R@10": recall_at_k(sim, 10), "temperature": float(1 / m.logit_scale.detach())}

        return fit(model, feats["train"].batches(batch_size, shuffle=True, seed=seed), None, epochs=epochs, lr=lr,
                   lrs={"log_scale": {"lr": 10 * lr, "weight_decay": 0.0}}, patience=None, validate=validate,
                   monitor="R@10", device=device, desc="contrastive", progress=progress)

    return store.load_or_train("contrastive", config, build, train)


def caption_features(text_encoder: nn.Module, tokenizer, splits: dict[str, MultimodalData],
                     device="cpu") -> dict[str, FeatureSet]:
    """Scans paired with the frozen features of their captions (each distinct caption encoded once)."""
    from .data import normalize_images

    out = {}
    for name, s in splits.items():
        out[name] = FeatureSet(labels=torch.from_numpy(s.labels), index=torch.arange(len(s)),
                               images=normalize_images(torch.from_numpy(s.images)),
                               text_features=encode_texts(text_encoder, tokenizer, s.captions, device=device))
    return out


# Notebook 07. What stage 1 teaches: the key finding alone, in the words of the captions.
KEY_CLAUSE = {"none": "No focal lesion is visible.", "smooth": "A lesion with a smooth border.",
              "irregular": "A lesion with an irregular border."}
FINDINGS_PROMPT, DIAGNOSIS_PROMPT = "Findings:", "Note: {}\nDiagnosis:"
REPORT_STEPS = {"smoke": (3, 3, 3), "full": (80, 60, 130), "large": (400, 300, 650)}  # (stage 1, stage 2, diagnosis)
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


def writer_model(llm_name: str, feature_dim: int, n_tokens: int = 4, rank: int = 16):
    """The decoder, frozen, with a fresh projector to ``n_tokens`` image tokens and fresh LoRA adapters (rank
    ``rank``, alpha 2 x rank) on every attention projection: the model notebook 07's two stages train."""
    from peft import LoraConfig, get_peft_model

    from . import llm

    tokenizer, lm, _ = llm.load_llm(llm_name)
    lm.requires_grad_(False)
    model = llm.VisualPrefixLM(lm, tokenizer, feature_dim, n_tokens)
    model.lm = get_peft_model(lm, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=ATTENTION, lora_dropout=0.0))
    return model


def with_diagnosis_adapter(model, first_layer: int, rank: int = 16):
    """``model`` with a second LoRA adapter, "diagnosis", on the decoder's layers from ``first_layer`` up; it is
    the active one and the only part that learns (the projector and the caption adapter stay as they are)."""
    from peft import LoraConfig

    layers = list(range(first_layer, model.lm.config.num_hidden_layers))
    model.lm.add_adapter("diagnosis", LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=ATTENTION,
                                                 lora_dropout=0.0, layers_to_transform=layers))
    model.lm.set_adapter("diagnosis")
    for name, p in model.named_parameters():
        p.requires_grad_(".diagnosis." in name)
    return model


def report_writer(ex: Experts, train_set: MultimodalData, val_set: MultimodalData, *, llm_name: str, seed: int,
                  steps: tuple[int, int], n_tokens: int = 4, rank: int = 16, batch_size: int = 16,
                  lr: tuple[float, float] = (1e-3, 5e-4), projector_lr: float = 1e-4, device="cpu",
                  progress: bool = True):
    """Notebook 07's report writer: the CNN expert's pooled features -> ``n_tokens`` image tokens -> the decoder.

    Stage 1 trains the projector alone to write the key finding (``KEY_CLAUSE``); stage 2 switches on LoRA adapters
    (rank ``rank`` on the attention projections) and trains them on whole findings captions, the projector at
    ``projector_lr``. The decoder's own weights never change.
    """
    from . import llm, synthscan

    config = {"recipe": "report_writer/1", "data": data_key(train_set, val_set), "image_expert": ex.image_art.key,
              "llm": llm_name, "seed": seed, "steps": list(steps), "n_tokens": n_tokens, "rank": rank,
              "batch_size": batch_size, "lr": list(lr), "projector_lr": projector_lr}
    feats = {k: llm.image_features(ex.image.encoder, s.images) for k, s in (("train", train_set), ("val", val_set))}

    def build():
        set_seed(seed)
        return writer_model(llm_name, feats["train"].shape[1], n_tokens, rank)

    def train(model):
        def stage(split, key_only):
            s = train_set if split == "train" else val_set
            targets = [" " + (KEY_CLAUSE[synthscan.caption_finding(c)] if key_only else c) for c in s.captions]
            return llm.PromptSet(model.tokenizer, feats[split], [model.image_prompt(FINDINGS_PROMPT)] * len(s),
                                 targets)

        lora = [p for p in model.lm.parameters() if p.requires_grad]
        for p in lora:
            p.requires_grad_(False)
        kw = {"batch_size": batch_size, "seed": seed, "device": device, "progress": progress}
        h1 = llm.train_stage(model, stage("train", True), stage("val", True).head(64), steps=steps[0], lr=lr[0],
                             desc="stage 1", **kw)
        for p in lora:
            p.requires_grad_(True)
        h2 = llm.train_stage(model, stage("train", False), stage("val", False).head(64), steps=steps[1], lr=lr[1],
                             lrs={"projector": projector_lr}, desc="stage 2", **kw)
        both = History(train_loss=h1.train_loss + h2.train_loss, val={"loss": h1.val_loss + h2.val_loss},
                       best_epoch=1, seconds=h1.seconds + h2.seconds,
                       samples_per_second=sum(steps) * batch_size / (h1.seconds + h2.seconds))
        return {"history": both.to_dict(), "stage1": h1.to_dict(), "stage2": h2.to_dict()}  # the two stages as epochs

    return store.load_or_train("report_writer", config, build, train)


def diagnosis_writer(writer, writer_art: store.Artifact, ex: Experts, train_set: MultimodalData,
                     val_set: MultimodalData, *,
                     seed: int, steps: int, first_layer: int, rank: int = 16, batch_size: int = 8, lr: float = 1e-3,
                     device="cpu", progress: bool = True):
    """Notebook 07's diagnosis line: a second LoRA adapter, on the decoder's layers from ``first_layer`` up, reads
    the image tokens and the note and writes the class; the projector and the caption adapter stay frozen, so the
    backward pass stops at ``first_layer`` and a step costs a fraction of stage 2's."""
    from . import llm

    config = {"recipe": "diagnosis_writer/1", "writer": writer_art.key, "data": data_key(train_set, val_set),
              "seed": seed, "steps": steps, "first_layer": first_layer, "rank": rank, "batch_size": batch_size,
              "lr": lr}
    feats = {k: llm.image_features(ex.image.encoder, s.images) for k, s in (("train", train_set), ("val", val_set))}

    def build():
        set_seed(seed)
        return with_diagnosis_adapter(copy.deepcopy(writer), first_layer, rank)

    def train(model):
        def data(split):
            s = train_set if split == "train" else val_set
            prompts = [model.image_prompt(DIAGNOSIS_PROMPT.format(t)) for t in s.texts]
            return llm.PromptSet(model.tokenizer, feats[split], prompts, [f" {s.class_names[y]}." for y in s.labels])

        return llm.train_stage(model, data("train"), data("val").head(64), steps=steps, batch_size=batch_size,
                               lr=lr, seed=seed, device=device, desc="diagnosis", progress=progress)

    return store.load_or_train("diagnosis_writer", config, build, train)
