"""Fusions in which one modality changes how the other is read: bilinear, FiLM and cross-attention.

Late fusion adds a score from the scan to a score from the note, and concatenation lets the
head add linear functions of both; neither can express a rule such as "the label is whether
the note's claim matches what the scan shows", where neither modality alone says anything.
These three multiply the modalities instead: a product of an image term and a text term
(``BilinearFusion``), text-chosen scales for the image features (``FiLMFusion``), or attention
weights from note tokens to image regions (``CrossAttentionFusion``). They plug into
``models.FusionClassifier`` like the others (``models.build_fusion_model``'s kinds).
"""
from __future__ import annotations

import torch
from torch import nn

from .models import masked_mean


class BilinearFusion(nn.Module):
    """Low-rank bilinear pooling (MLB, Kim et al. 2017): ``tanh(U h_img) * tanh(V h_txt)``, element by element.

    Each of the ``rank`` outputs is an image term times a text term, so a linear head on them can
    weigh *combinations* (a sign flip of one input flips the product: XOR). A full bilinear map
    needs ``d_img x d_txt`` weights per output; rank ``r`` needs ``r (d_img + d_txt)``.
    """

    def __init__(self, image_dim: int, text_dim: int, rank: int = 128):
        super().__init__()
        self.image_proj = nn.Linear(image_dim, rank)
        self.text_proj = nn.Linear(text_dim, rank)
        self.out_dim = rank

    def forward(self, h_img: torch.Tensor, h_txt: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.image_proj(h_img)) * torch.tanh(self.text_proj(h_txt))


class FiLMFusion(nn.Module):
    """FiLM (Perez et al. 2018): the note sets a scale and a shift for each projected image feature.

    ``relu((1 + gamma(h_txt)) * W h_img + beta(h_txt))``; ``1 + gamma`` starts near the identity. The
    original modulates the maps of every convolutional block; here the pooled features, so the
    same cached features serve every fusion.
    """

    def __init__(self, image_dim: int, text_dim: int, dim: int = 128):
        super().__init__()
        self.image_proj = nn.Linear(image_dim, dim)
        self.film = nn.Linear(text_dim, 2 * dim)
        self.out_dim = dim

    def forward(self, h_img: torch.Tensor, h_txt: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(h_txt).chunk(2, dim=1)
        return torch.relu((1 + gamma) * self.image_proj(h_img) + beta)


class CrossAttentionFusion(nn.Module):
    """Note tokens attend to image regions (one direction of ViLBERT's co-attention), one attention layer.

    Regions: the image encoder's last feature map max-pooled to ``grid x grid`` cells (as ``TokenFusion``; a
    smaller map, such as EfficientNet's 2 x 2 on a 64 px scan, is repeated to fill the grid), projected, with a
    learned position each. Every word's query weighs the regions, so what the scan contributes
    depends on what the note says. Output: the masked mean over the note's tokens of [word, what it read].
    Needs the encoders' feature maps and word states, not pooled features: computed here, or read from a
    batch of ``features.cache_features(..., maps=True)`` when both encoders are frozen.
    """

    needs_encoders = True

    def __init__(self, image_channels: int, text_dim: int, dim: int = 128, heads: int = 4, grid: int = 4):
        super().__init__()
        self.regions = nn.Linear(image_channels, dim)
        self.words = nn.Linear(text_dim, dim)
        self.region_pos = nn.Parameter(torch.zeros(1, grid * grid, dim))
        nn.init.normal_(self.region_pos, std=0.02)
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.grid, self.out_dim = grid, 2 * dim
        self.last_weights: torch.Tensor | None = None  # B x words x regions, averaged over heads: for plots

    def forward(self, image_encoder, text_encoder, batch: dict) -> torch.Tensor:
        fmap = batch["image_map"] if "image_map" in batch else image_encoder.feature_map(batch["image"])
        fmap = nn.functional.adaptive_max_pool2d(fmap, self.grid)
        regions = self.regions(fmap.flatten(2).transpose(1, 2)) + self.region_pos
        mask = batch["attention_mask"]
        states = batch["token_states"] if "token_states" in batch else text_encoder.token_states(batch["input_ids"],
                                                                                                  mask)
        words = self.words(states)
        read, weights = self.attend(words, regions, regions, need_weights=True)
        self.last_weights = weights.detach()
        return masked_mean(torch.cat([words, read], dim=-1), mask)
