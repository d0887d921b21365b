"""The course's models: a small CNN, a BERT-family text encoder, and their classifiers.

Built by composition (as in MultiBench's ``MMDL``): encoders turn one modality into a
vector, a head turns vectors into class logits, and every classifier's ``forward``
takes the batch dict of ``data.collate``, so one training loop serves them all.
"""
from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Three conv blocks and global average pooling: scan -> feature vector (notebook 02)."""

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
        return self.project(self.feature_map(images).mean(dim=(2, 3)))


class TextEncoder(nn.Module):
    """A Hugging Face encoder (``AutoModel``) -> mean of its token states over the attention mask."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.config.hidden_size

    def token_states(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> torch.Tensor:
        """Last-layer states, B x T x hidden (``inputs_embeds`` lets fusion or Captum feed embeddings)."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                            inputs_embeds=inputs_embeds).last_hidden_state

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> torch.Tensor:
        states = self.token_states(input_ids, attention_mask, inputs_embeds)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def freeze(self) -> "TextEncoder":
        """Stop gradients into the encoder (linear probe / frozen features)."""
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        return self


class ImageClassifier(nn.Module):
    """Image encoder + linear head: the image-only rung of the ladder."""

    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, n_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encoder(batch["image"]))


class TextClassifier(nn.Module):
    """Text encoder + dropout + linear head on the pooled representation: the text-only rung."""

    def __init__(self, encoder: TextEncoder, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_dim, n_classes))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.encoder(batch["input_ids"], batch["attention_mask"]))
