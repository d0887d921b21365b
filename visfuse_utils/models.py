"""The course's models: a small CNN, a BERT-family text encoder, and their classifiers.

Built by composition (as in MultiBench's ``MMDL``): encoders turn one modality into a
vector, a head turns vectors into class logits, and every classifier's ``forward``
takes the batch dict of ``data.collate``, so one training loop serves them all.
"""
from __future__ import annotations

import torch
from torch import nn

from .data import BLANK_PIXEL


class SmallCNN(nn.Module):
    """Three conv blocks and global max pooling: scan -> feature vector (notebook 02).

    Max, not average: a lesion's grade is a small local pattern (a ragged stretch of border,
    a mottled patch) in a few percent of the scan; an average dilutes it with background,
    the maximum reports whether it occurs anywhere. Inside the fusion of notebook 04 this
    took the fine-tuned model from 0.94 to 0.97 test accuracy.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, out_dim: int = 128):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(block(in_channels, width), block(width, 2 * width),
                                      block(2 * width, 4 * width))
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(4 * width, out_dim), nn.ReLU())
        self.out_dim = out_dim
        self.map_channels = 4 * width

    @property
    def last_conv(self) -> nn.Conv2d:
        """The last convolution, where Grad-CAM looks (notebook 05)."""
        return self.features[-1][0]

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """Spatial features, B x 4·width x H/8 x W/8: the image regions that token fusion uses."""
        return self.features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.feature_map(images).amax(dim=(2, 3)))


class ResNetEncoder(nn.Module):
    """torchvision's ResNet-18 without its classification layer: scan -> 512-number vector (notebook 02).

    For a gray scan the first convolution's kernel becomes the *sum* of the pretrained RGB kernels, which gives
    exactly what the original gives on a gray image copied into three channels; other channel counts average.
    """

    def __init__(self, in_channels: int = 1, weights=None):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=weights)
        if in_channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            with torch.no_grad():
                kernel = old.weight.sum(1, keepdim=True) if in_channels == 1 else old.weight.mean(1, keepdim=True)
                net.conv1.weight.copy_(kernel.repeat(1, in_channels, 1, 1))
        net.fc = nn.Identity()
        self.net, self.out_dim = net, 512

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class PretrainedImageEncoder(nn.Module):
    """A frozen ImageNet network (``pretrained.load_image_encoder``: EfficientNet-Lite0) as a scan encoder.

    Scans arrive normalised the course's way, ``(pixel/255 - 0.5) / 0.25``; Lite models were trained on
    ``(pixel/255 - 0.5) / 0.5``, so the input is halved, and a grey scan is copied into the three colour
    channels. Any size runs (the last map is averaged; sizes divisible by 32 pad exactly as in training).
    Its BatchNorm statistics stay frozen: ``train()`` leaves it in evaluation mode.
    """

    def __init__(self, net: nn.Module, in_channels: int = 1):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey, copied to RGB) or 3, got {in_channels}")
        self.net, self.in_channels = net, in_channels
        self.out_dim = self.map_channels = net._conv_head.out_channels
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PretrainedImageEncoder:
        return super().train(False)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The last convolution's map, B x 1280 x H/32 x W/32: regions for cross-attention."""
        x = images / 2
        return self.net.extract_features(x.expand(-1, 3, -1, -1) if self.in_channels == 1 else x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_map(images).mean(dim=(2, 3))


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's token states (B x T x H) over its attention mask (B x T): padding gets no weight, and a
    float mask weighs each token by its presence (notebook 03)."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-6)


class TextEncoder(nn.Module):
    """A Hugging Face encoder (``AutoModel``) -> mean of its token states over the attention mask.

    A floating-point mask is read as each token's *presence* in [0, 1]: attention to a token
    is scaled by it (an additive log-presence mask) and so is its weight in the mean. Presence 1
    or 0 gives exactly what the 0/1 mask gives; in between, a word fades out of the note
    (notebook 05 integrates gradients along that path).
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.config.hidden_size

    def token_states(self, input_ids=None, attention_mask=None, inputs_embeds=None,
                     token_type_ids=None) -> torch.Tensor:
        """Last-layer states, B x T x hidden (``inputs_embeds`` lets fusion or Captum feed embeddings;
        ``token_type_ids`` are BERT's segment ids, 0 for the first segment and 1 for the second)."""
        if attention_mask is not None and attention_mask.is_floating_point():
            present = attention_mask > 0  # log(presence), with absent tokens fully masked (and no inf gradients)
            log_p = torch.log(torch.where(present, attention_mask, torch.ones_like(attention_mask)))
            dtype = self.encoder.dtype
            attention_mask = torch.where(present, log_p, torch.finfo(dtype).min).to(dtype)[:, None, None, :]
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                            token_type_ids=token_type_ids).last_hidden_state

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, token_type_ids=None) -> torch.Tensor:
        return masked_mean(self.token_states(input_ids, attention_mask, inputs_embeds, token_type_ids), attention_mask)

    def freeze(self) -> TextEncoder:
        """Stop gradients into the encoder (linear probe / frozen features)."""
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        return self


class ImageClassifier(nn.Module):
    """Image encoder + linear head: the image-only rung of the ladder.

    A batch with ``image_features`` (``features.cache_features``) skips the encoder.
    """

    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, n_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        h = batch["image_features"] if "image_features" in batch else self.encoder(batch["image"])
        return self.head(h)


class TextClassifier(nn.Module):
    """Text encoder + dropout + linear head on the pooled representation: the text-only rung.

    A batch with ``text_features`` (``features.cache_features``) skips the encoder: a linear
    probe is this class with a frozen encoder, trained on cached features (notebook 03).
    """

    def __init__(self, encoder: TextEncoder, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_dim, n_classes))

    def forward(self, batch: dict) -> torch.Tensor:
        h = batch["text_features"] if "text_features" in batch else \
            self.encoder(batch["input_ids"], batch["attention_mask"])
        return self.head(h)


# ------------------------------------------------------------------------------ fusion
# A vector fusion takes the pooled image and text features (B x d_img, B x d_txt) and
# returns one vector per sample (late fusion: class logits). Token fusion instead needs
# the encoders themselves (``needs_encoders = True``). Notebook 04 swaps this one argument.

class LateFusion(nn.Module):
    """Average of per-modality logits; with ``learned=True`` a softmax-weighted average."""

    def __init__(self, image_dim: int, text_dim: int, n_classes: int, learned: bool = False):
        super().__init__()
        self.image_head = nn.Linear(image_dim, n_classes)
        self.text_head = nn.Linear(text_dim, n_classes)
        self.weight_logits = nn.Parameter(torch.zeros(2), requires_grad=learned)
        self.out_dim = n_classes

    def forward(self, h_img: torch.Tensor, h_txt: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.weight_logits, 0)
        return w[0] * self.image_head(h_img) + w[1] * self.text_head(h_txt)


class ConcatFusion(nn.Module):
    """Pooled image and text features side by side (ConcatBERT-style); the head mixes them."""

    def __init__(self, image_dim: int, text_dim: int):
        super().__init__()
        self.out_dim = image_dim + text_dim

    def forward(self, h_img: torch.Tensor, h_txt: torch.Tensor) -> torch.Tensor:
        return torch.cat([h_img, h_txt], dim=1)


class GatedFusion(nn.Module):
    """A learned per-sample gate g weighs the projected image (g) against the text (1 - g)."""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 128):
        super().__init__()
        self.image_proj = nn.Linear(image_dim, dim)
        self.text_proj = nn.Linear(text_dim, dim)
        self.gate = nn.Linear(image_dim + text_dim, 1)
        self.out_dim = dim
        self.last_gate: torch.Tensor | None = None  # kept for plotting

    def forward(self, h_img: torch.Tensor, h_txt: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([h_img, h_txt], dim=1)))
        self.last_gate = g.detach().squeeze(1)
        return g * torch.tanh(self.image_proj(h_img)) + (1 - g) * torch.tanh(self.text_proj(h_txt))


class TokenFusion(nn.Module):
    """Early fusion (MMBT-style): CNN feature-map cells enter BERT as extra input tokens.

    The sequence is a BERT sentence pair, ``[CLS] img_1 … img_k [SEP] word_1 … [SEP]``: the image is the
    first segment (segment id 0) and the note the second (segment id 1), as in MMBT. Image tokens are a
    learned projection of the CNN's cells plus their own learned position embedding; the separator is
    BERT's own ``[SEP]``. Every self-attention layer mixes words and image regions. Output: the masked
    mean of all states (MMBT pools with ``[CLS]``; the course's text encoder uses the mean throughout).
    """

    needs_encoders = True

    def __init__(self, image_channels: int, text_encoder: TextEncoder, grid: int = 4, sep_id: int = 102):
        super().__init__()
        hidden = text_encoder.out_dim
        self.project = nn.Linear(image_channels, hidden)
        self.grid, self.sep_id = grid, sep_id
        self.image_pos = nn.Parameter(torch.zeros(1, grid * grid, hidden))
        nn.init.normal_(self.image_pos, std=0.02)
        self.out_dim = hidden

    def image_tokens(self, image_encoder, images: torch.Tensor) -> torch.Tensor:
        """B x grid² x hidden: the CNN's last feature map, max-pooled to a grid (as ``SmallCNN``
        pools the whole map), one token per cell."""
        fmap = nn.functional.adaptive_max_pool2d(image_encoder.feature_map(images), self.grid)
        return self.project(fmap.flatten(2).transpose(1, 2)) + self.image_pos

    def joint_inputs(self, image_encoder, text_encoder, batch: dict, word_embeds: torch.Tensor | None = None):
        """(inputs_embeds, attention_mask, token_type_ids) of the joint sequence; ``word_embeds`` lets Captum
        substitute its own. The note's ``[SEP]`` (its last real token) ends the second segment."""
        lookup = text_encoder.encoder.get_input_embeddings()
        words = word_embeds if word_embeds is not None else lookup(batch["input_ids"])
        img = self.image_tokens(image_encoder, batch["image"]).to(words.dtype)
        # the [SEP] row read from the table, not through the layer: Captum hooks the layer's single call
        sep = lookup.weight[self.sep_id].to(words.dtype).expand(len(img), 1, -1)
        embeds = torch.cat([words[:, :1], img, sep, words[:, 1:]], dim=1)
        mask_in = batch["attention_mask"]
        ones = torch.ones((len(img), img.shape[1] + 1), dtype=mask_in.dtype, device=img.device)
        mask = torch.cat([mask_in[:, :1], ones, mask_in[:, 1:]], dim=1)
        types = torch.zeros(mask.shape, dtype=torch.long, device=img.device)
        types[:, 2 + img.shape[1]:] = 1
        return embeds, mask, types

    def forward(self, image_encoder, text_encoder, batch: dict) -> torch.Tensor:
        embeds, mask, types = self.joint_inputs(image_encoder, text_encoder, batch)
        return text_encoder(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types)


class FusionClassifier(nn.Module):
    """``head(fusion(image features, text features))``: one model, any fusion (MultiBench's MMDL).

    Batches may carry ``image_features`` / ``text_features`` precomputed by frozen encoders
    (``features.cache_features``); then the encoders are skipped and a fusion trains in seconds.
    ``modality_dropout`` (training only) blanks each sample's scan or empties its note with
    that probability, so the model learns to cope when one modality is missing.
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: TextEncoder, fusion: nn.Module,
                 head: nn.Module, modality_dropout: float = 0.0, cls_id: int = 101, sep_id: int = 102):
        super().__init__()
        self.image_encoder, self.text_encoder, self.fusion, self.head = image_encoder, text_encoder, fusion, head
        self.modality_dropout = modality_dropout
        self.cls_id, self.sep_id = cls_id, sep_id

    def check_cache(self, batch: dict) -> None:
        """Cached features come from frozen encoders; an encoder that trains (a CNN fine-tuned inside the
        fusion) has moved away from them, so a batch with its cached features is refused."""
        for key, modality in (("image_features", "image"), ("image_map", "image"), ("text_features", "text"),
                              ("token_states", "text")):
            encoder = self.image_encoder if modality == "image" else self.text_encoder
            if key in batch and any(p.requires_grad for p in encoder.parameters()):
                raise ValueError(f"this model trains its {modality} encoder, so cached {key} are stale "
                                 f"for it; give it the raw inputs (FeatureSet.without({key!r})).")

    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled (image, text) features: precomputed ones when the batch has them."""
        self.check_cache(batch)
        h_img = batch["image_features"] if "image_features" in batch else self.image_encoder(batch["image"])
        h_txt = batch["text_features"] if "text_features" in batch else \
            self.text_encoder(batch["input_ids"], batch["attention_mask"])
        return h_img, h_txt

    def forward(self, batch: dict) -> torch.Tensor:
        if self.training and self.modality_dropout > 0:
            batch = drop_modalities(batch, self.modality_dropout, self.sep_id)
        if getattr(self.fusion, "needs_encoders", False):
            self.check_cache(batch)
            return self.head(self.fusion(self.image_encoder, self.text_encoder, batch))
        return self.head(self.fusion(*self.encode(batch)))


def drop_modalities(batch: dict, p: float, sep_id: int = 102, generator: torch.Generator | None = None) -> dict:
    """Blank the scan of some samples and empty the note of others (never both), each with probability p.

    A blank scan is black (``data.BLANK_PIXEL``); an empty note keeps only ``[CLS] [SEP]``, exactly
    what the tokenizer gives for "". Cached features are replaced by the cache's features of a
    blank scan / an empty note, which ``features.FeatureSet.batches`` adds to every batch.
    """
    n = len(batch["label"])
    r = torch.rand(n, generator=generator).to(batch["label"].device)
    drop_img, drop_txt = r < p, (r >= p) & (r < 2 * p)
    out = dict(batch)
    for key in ("image_features", "text_features"):
        if key in batch and f"blank_{key}" not in batch:
            raise ValueError(f"modality dropout on cached {key} needs blank_{key} in the batch; "
                             "train on features.FeatureSet.batches(), which adds them")
    if "image_features" in batch:
        out["image_features"] = torch.where(drop_img[:, None], batch["blank_image_features"], batch["image_features"])
    else:
        out["image"] = batch["image"].masked_fill(drop_img[:, None, None, None], BLANK_PIXEL)
    if "text_features" in batch:
        out["text_features"] = torch.where(drop_txt[:, None], batch["blank_text_features"], batch["text_features"])
    else:
        ids, mask = batch["input_ids"].clone(), batch["attention_mask"].clone()
        ids[drop_txt, 1:] = 0
        mask[drop_txt, 2:] = 0
        ids[drop_txt, 1] = sep_id
        out["input_ids"], out["attention_mask"] = ids, mask
    return out


def mlp_head(in_dim: int, n_classes: int, hidden: int = 128, dropout: float = 0.1) -> nn.Sequential:
    """The classification head on fused features: one hidden layer."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


FUSIONS = ("late", "late_learned", "concat", "gated", "token", "bilinear", "film", "cross_attention")


def build_fusion_model(kind: str, text_model: nn.Module, n_classes: int, in_channels: int = 1,
                       modality_dropout: float = 0.0, cls_id: int = 101, sep_id: int = 102,
                       image_encoder: SmallCNN | None = None) -> FusionClassifier:
    """A fresh ``FusionClassifier`` of one of ``FUSIONS`` around a Hugging Face encoder.

    ``image_encoder`` defaults to a new ``SmallCNN(in_channels)``; pass an expert's to start from it.
    """
    image_encoder = image_encoder or SmallCNN(in_channels)
    text_encoder = TextEncoder(text_model)
    di, dt = image_encoder.out_dim, text_encoder.out_dim
    if kind in ("late", "late_learned"):
        fusion, head = LateFusion(di, dt, n_classes, learned=kind == "late_learned"), nn.Identity()
    elif kind == "concat":
        fusion = ConcatFusion(di, dt)
        head = mlp_head(fusion.out_dim, n_classes)
    elif kind == "gated":
        fusion = GatedFusion(di, dt)
        head = mlp_head(fusion.out_dim, n_classes)
    elif kind == "token":
        fusion = TokenFusion(image_encoder.map_channels, text_encoder, sep_id=sep_id)
        head = mlp_head(fusion.out_dim, n_classes)
    elif kind in ("bilinear", "film", "cross_attention"):  # the modalities multiply (visfuse_utils.interaction)
        from . import interaction

        fusion = (interaction.BilinearFusion(di, dt) if kind == "bilinear" else interaction.FiLMFusion(di, dt)
                  if kind == "film" else interaction.CrossAttentionFusion(image_encoder.map_channels, dt))
        head = mlp_head(fusion.out_dim, n_classes)
    else:
        raise ValueError(f"unknown fusion {kind!r}; choose one of {', '.join(FUSIONS)}")
    return FusionClassifier(image_encoder, text_encoder, fusion, head, modality_dropout=modality_dropout,
                            cls_id=cls_id, sep_id=sep_id)
