"""Every fusion: output shapes, gradients reach both encoders, missing modalities, the token mask."""
import pytest
import torch

from visfuse_utils import models as M

from conftest import make_batch


@pytest.mark.parametrize("kind", M.FUSIONS)
def test_fusion_shapes_and_gradients(kind, tiny_bert):
    model = M.build_fusion_model(kind, tiny_bert, n_classes=3, cls_id=101 % 120, sep_id=102 % 120)
    batch = make_batch()
    logits = model(batch)
    assert logits.shape == (6, 3)
    torch.nn.functional.cross_entropy(logits, batch["label"]).backward()
    cnn_grad = model.image_encoder.features[0][0].weight.grad
    bert_grad = model.text_encoder.encoder.embeddings.word_embeddings.weight.grad
    assert cnn_grad is not None and cnn_grad.abs().sum() > 0
    assert bert_grad is not None and bert_grad.abs().sum() > 0


@pytest.mark.parametrize("kind", M.FUSIONS)
def test_missing_modality_forward(kind, tiny_bert):
    model = M.build_fusion_model(kind, tiny_bert, n_classes=3, sep_id=102 % 120).eval()
    batch = make_batch()
    dropped = M.drop_modalities(batch, p=0.5, sep_id=102 % 120, generator=torch.Generator().manual_seed(1))
    blank_scan = (dropped["image"] == -2.0).flatten(1).all(1)
    empty_note = dropped["attention_mask"].sum(1) == 2
    assert blank_scan.any() and empty_note.any() and not (blank_scan & empty_note).any()
    assert (dropped["input_ids"][empty_note, 1] == 102 % 120).all()
    out = model(dropped)
    assert out.shape == (6, 3) and torch.isfinite(out).all()


def test_token_fusion_builds_an_image_then_note_sentence_pair(tiny_bert):
    model = M.build_fusion_model("token", tiny_bert, n_classes=3, cls_id=101 % 120, sep_id=102 % 120)
    batch = make_batch()
    embeds, mask, types = model.fusion.joint_inputs(model.image_encoder, model.text_encoder, batch)
    k = model.fusion.grid ** 2
    assert embeds.shape == (6, 10 + k + 1, 32) and mask.shape == types.shape == (6, 10 + k + 1)
    assert (mask[:, 1:2 + k] == 1).all()  # every image token and the separator are attended to
    assert torch.equal(mask[:, 2 + k:], batch["attention_mask"][:, 1:])  # text padding stays masked
    assert (types[:, :2 + k] == 0).all() and (types[:, 2 + k:] == 1).all()  # segment 0: image, 1: note
    sep = model.text_encoder.encoder.get_input_embeddings().weight[102 % 120]
    assert torch.allclose(embeds[:, 1 + k], sep.expand(6, -1))  # BERT's own [SEP] between the two
    # attention really mixes: changing the image changes the text positions' states
    states = model.text_encoder.token_states(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types)
    batch2 = dict(batch, image=batch["image"] + 1)
    e2, m2, t2 = model.fusion.joint_inputs(model.image_encoder, model.text_encoder, batch2)
    states2 = model.text_encoder.token_states(inputs_embeds=e2, attention_mask=m2, token_type_ids=t2)
    assert not torch.allclose(states[:, -1], states2[:, -1])


def test_text_encoder_ignores_padding(tiny_bert):
    enc = M.TextEncoder(tiny_bert).eval()
    ids = torch.tensor([[1, 7, 8, 9, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    assert torch.allclose(enc(ids, mask), enc(ids[:, :5], mask[:, :5]), atol=1e-5)


def test_unknown_fusion_is_a_clear_error(tiny_bert):
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        M.build_fusion_model("sum", tiny_bert, 3)


def test_small_cnn_features_of_a_small_lesion_do_not_fade_in_a_larger_scan():
    torch.manual_seed(0)
    cnn = M.SmallCNN().eval()
    patch = torch.rand(1, 1, 8, 8) * 4
    small, large = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 128, 128)
    small[..., 24:32, 24:32] = patch  # well inside the receptive field's reach of the borders
    large[..., 24:32, 24:32] = patch  # same neighbourhood, four times the background
    with torch.no_grad():
        assert torch.allclose(cnn(small), cnn(large), atol=1e-5)
        pooled_mean = [cnn.feature_map(x).mean(dim=(2, 3)) for x in (small, large)]
    assert not torch.allclose(*pooled_mean, atol=1e-3)  # an average would have diluted it


def test_modality_dropout_blanks_one_modality_per_sample_from_the_batchs_blanks():
    batch = {"image_features": torch.zeros(50, 4), "text_features": torch.zeros(50, 3), "label": torch.zeros(50),
             "blank_image_features": torch.full((1, 4), 7.0), "blank_text_features": torch.full((1, 3), -7.0)}
    out = M.drop_modalities(batch, 0.3, generator=torch.Generator().manual_seed(0))
    img_dropped = (out["image_features"] == 7.0).all(1)
    txt_dropped = (out["text_features"] == -7.0).all(1)
    assert img_dropped.any() and txt_dropped.any() and not (img_dropped & txt_dropped).any()
    assert 0.15 < img_dropped.float().mean() < 0.45 and 0.15 < txt_dropped.float().mean() < 0.45
    del batch["blank_text_features"]
    with pytest.raises(ValueError, match="blank_text_features"):
        M.drop_modalities(batch, 0.3)


def test_modality_dropout_on_scans_with_cached_text():
    batch = {"image": torch.zeros(50, 1, 8, 8), "text_features": torch.zeros(50, 3), "label": torch.zeros(50),
             "blank_text_features": torch.full((1, 3), -7.0)}
    out = M.drop_modalities(batch, 0.3, generator=torch.Generator().manual_seed(0))
    img_dropped = (out["image"] == -2.0).flatten(1).all(1)
    txt_dropped = (out["text_features"] == -7.0).all(1)
    assert img_dropped.any() and txt_dropped.any() and not (img_dropped & txt_dropped).any()
    assert "image_features" not in out and "input_ids" not in out


def test_a_model_that_trains_an_encoder_refuses_that_encoders_cached_features(tiny_bert):
    model = M.build_fusion_model("concat", tiny_bert, n_classes=3, cls_id=101 % 120, sep_id=102 % 120).eval()
    model.text_encoder.requires_grad_(False)  # the text side frozen, the CNN still training
    batch = make_batch(n=4)
    with torch.no_grad():
        h_img = model.image_encoder(batch["image"])
        h_txt = model.text_encoder(batch["input_ids"], batch["attention_mask"])
        model({**batch, "text_features": h_txt})  # frozen text encoder: its cache is fine
        with pytest.raises(ValueError, match="trains its image encoder"):
            model({**batch, "image_features": h_img})
