"""Shared fixtures: a tiny random BERT (fast, offline) for model tests, and fusion models around it."""
import copy
import types

import pytest
import torch


@pytest.fixture()
def tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg, add_pooling_layer=False)


def make_batch(n=6, length=10, image_size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (n, length), generator=g)
    ids[:, 0], ids[:, -1] = 101 % 120, 102 % 120
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, 6:] = 0
    return {"image": torch.randn(n, 1, image_size, image_size, generator=g), "input_ids": ids,
            "attention_mask": mask, "label": torch.arange(n) % 3}


def _stub_tokenizer():
    return types.SimpleNamespace(pad_token_id=0)


@pytest.fixture()
def tiny_fusion(tiny_bert):
    """build(kind) -> (a fusion model around the tiny BERT, its FusionExplainer)."""
    from visfuse_utils import interpret, models

    def build(kind):
        torch.manual_seed(0)
        model = models.build_fusion_model(kind, copy.deepcopy(tiny_bert), n_classes=3, cls_id=101 % 120,
                                          sep_id=102 % 120).eval()
        if kind != "token":  # as trained in notebook 04: the text encoder frozen, its features cacheable
            model.text_encoder.requires_grad_(False)
        return model, interpret.FusionExplainer(model, _stub_tokenizer(), internal_batch_size=7)
    return build
