"""The one feature cache: same logits as the encoders, blanks included, BERT run once, no model changed."""
import pytest
import torch

from visfuse_utils import features as F
from visfuse_utils import models as M
from visfuse_utils.data import collate

from conftest import make_batch

EMPTY = [101 % 120, 102 % 120]  # [CLS] [SEP] in the tiny vocabulary


def loader(n=12, seed=0):
    b = make_batch(n=n, seed=seed)
    items = [{"image": b["image"][i], "input_ids": b["input_ids"][i], "label": b["label"][i], "index": i}
             for i in range(n)]
    return torch.utils.data.DataLoader(items, batch_size=4, collate_fn=collate)


def concat_model(tiny_bert, train_cnn=False):
    """Concat fusion with frozen encoders (what a cache is for); ``train_cnn`` leaves the CNN trainable."""
    model = M.build_fusion_model("concat", tiny_bert, n_classes=3, cls_id=EMPTY[0], sep_id=EMPTY[1]).eval()
    model.text_encoder.requires_grad_(False)
    model.image_encoder.requires_grad_(train_cnn)
    return model


def test_cached_features_give_the_same_logits_and_leave_the_model_alone(tiny_bert):
    model = concat_model(tiny_bert)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cached = F.cache_features({"test": loader()}, model.image_encoder, model.text_encoder, empty_note=EMPTY)["test"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not hasattr(model, "blank_features")
    with torch.no_grad():
        raw = torch.cat([model(b) for b in loader()])
        fast = torch.cat([model(b) for b in cached.batches(5)])
    torch.testing.assert_close(raw, fast, atol=1e-5, rtol=1e-4)
    assert cached.blank["image"].shape == (1, 128) and cached.blank["text"].shape == (1, 32)
    assert cached.index.tolist() == list(range(12))  # the split's order


def test_blank_features_are_the_encoders_view_of_a_black_scan_and_an_empty_note(tiny_bert):
    model = concat_model(tiny_bert)
    cached = F.cache_features({"test": loader()}, model.image_encoder, model.text_encoder, empty_note=EMPTY)["test"]
    with torch.no_grad():
        black = model.image_encoder(torch.full((1, 1, 32, 32), -2.0))
        empty = model.text_encoder(torch.tensor([EMPTY]), torch.ones(1, 2, dtype=torch.long))
    torch.testing.assert_close(cached.blank["image"], black)
    torch.testing.assert_close(cached.blank["text"], empty)
    with pytest.raises(ValueError, match="empty_note"):
        F.cache_features({"test": loader()}, text_encoder=model.text_encoder)


def test_kept_scans_train_the_cnn_on_cached_text(tiny_bert):
    model = concat_model(tiny_bert, train_cnn=True)
    cached = F.cache_features({"test": loader()}, model.image_encoder, model.text_encoder, empty_note=EMPTY,
                              keep_images=True)["test"].without("image_features")
    first = next(iter(cached.batches(4)))
    assert {"image", "text_features", "label", "index"} <= set(first) and "image_features" not in first
    with torch.no_grad():
        torch.testing.assert_close(torch.cat([model(b) for b in loader()]),
                                   torch.cat([model(b) for b in cached.batches(4)]), atol=1e-5, rtol=1e-4)
    model.train()
    torch.nn.functional.cross_entropy(model(first), first["label"]).backward()
    assert model.image_encoder.features[0][0].weight.grad.abs().sum() > 0
    assert model.text_encoder.encoder.embeddings.word_embeddings.weight.grad is None  # BERT never ran
    with pytest.raises(ValueError, match="stale"):  # the training CNN cannot use the cached image features
        model(next(iter(F.cache_features({"test": loader()}, model.image_encoder)["test"].batches(4))))


def test_a_second_cache_from_the_first_skips_bert_and_keeps_the_blanks(tiny_bert, monkeypatch):
    model = concat_model(tiny_bert)
    first = F.cache_features({"test": loader()}, text_encoder=model.text_encoder, empty_note=EMPTY,
                             keep_images=True)
    calls, encode = [], model.text_encoder.forward
    monkeypatch.setattr(model.text_encoder, "forward", lambda *a, **k: calls.append(1) or encode(*a, **k))
    second = F.cache_features({"test": first["test"].batches(5)}, image_encoder=model.image_encoder)["test"]
    assert calls == []  # the notes were not encoded again
    assert torch.equal(second.text_features, first["test"].text_features)
    assert set(second.blank) == {"image", "text"}
    direct = F.cache_features({"test": loader()}, model.image_encoder, empty_note=EMPTY)["test"]
    torch.testing.assert_close(second.image_features, direct.image_features)


def test_with_missing_gives_the_logits_of_empty_notes(tiny_bert):
    model = concat_model(tiny_bert)
    cached = F.cache_features({"test": loader()}, model.image_encoder, model.text_encoder, empty_note=EMPTY)["test"]
    no_note = cached.with_missing("text")
    assert (no_note.text_features == cached.blank["text"]).all()
    assert torch.equal(no_note.image_features, cached.image_features) and torch.equal(no_note.labels, cached.labels)
    images = torch.cat([b["image"] for b in loader()])
    empty = {"image": images, "input_ids": torch.tensor([EMPTY] * len(images)),
             "attention_mask": torch.ones(len(images), 2, dtype=torch.long)}
    with torch.no_grad():
        torch.testing.assert_close(model(empty), torch.cat([model(b) for b in no_note.batches()]), atol=1e-5,
                                   rtol=1e-4)
    with pytest.raises(ValueError, match="'image' or 'text'"):
        cached.with_missing("audio")


def test_shuffled_batches_cover_every_sample_once_with_a_new_order_each_epoch(tiny_bert):
    cached = F.FeatureSet(labels=torch.arange(10), index=torch.arange(10), image_features=torch.randn(10, 3))
    batches = cached.batches(4, shuffle=True, seed=0)
    epochs = [torch.cat([b["index"] for b in batches]).tolist() for _ in range(2)]
    assert len(batches) == 3 and all(sorted(e) == list(range(10)) for e in epochs) and epochs[0] != epochs[1]


def test_encode_texts_encodes_each_distinct_text_once(tiny_bert, monkeypatch):
    def tokenizer(texts, **kw):  # one word piece per text, its id from the text's length
        ids = torch.tensor([[EMPTY[0], 5 + len(t), EMPTY[1]] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    enc = M.TextEncoder(tiny_bert)
    seen = []
    forward = enc.forward
    monkeypatch.setattr(enc, "forward", lambda ids, mask: seen.append(len(ids)) or forward(ids, mask))
    texts = ["a", "bb", "a", "a", "bb", "ccc"]
    out = F.encode_texts(enc, tokenizer, texts)
    assert sum(seen) == 3 and out.shape == (6, 32)
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[4]) and not torch.equal(out[0], out[1])


def varied_loader(n=10):
    """Notes of 4 to 13 word pieces, so that every batch of 4 is padded to its own longest note."""
    g = torch.Generator().manual_seed(1)
    items = []
    for i in range(n):
        ids = torch.randint(5, 120, (4 + i,), generator=g)
        ids[0], ids[-1] = EMPTY
        items.append({"image": torch.randn(1, 32, 32, generator=g), "input_ids": ids, "label": i % 3, "index": i})
    return torch.utils.data.DataLoader(items, batch_size=4, collate_fn=collate)


def cross_model(tiny_bert):
    model = M.build_fusion_model("cross_attention", tiny_bert, n_classes=3, cls_id=EMPTY[0], sep_id=EMPTY[1]).eval()
    return model.requires_grad_(False)


def test_cached_maps_and_word_states_give_cross_attention_the_same_logits(tiny_bert):
    model = cross_model(tiny_bert)
    cached = F.cache_features({"test": varied_loader()}, model.image_encoder, model.text_encoder, empty_note=EMPTY,
                              maps=True)["test"]
    assert cached.token_states.shape == (10, 13, 32) and cached.token_mask.sum(1).tolist() == list(range(4, 14))
    assert cached.image_maps.shape[:2] == (10, model.image_encoder.map_channels)
    plain = F.cache_features({"test": varied_loader()}, model.image_encoder, model.text_encoder,
                             empty_note=EMPTY)["test"]
    torch.testing.assert_close(cached.text_features, plain.text_features, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        raw = torch.cat([model(b) for b in varied_loader()])
        fast = torch.cat([model(b) for b in cached.without("image_features", "text_features").batches(3)])
    torch.testing.assert_close(raw, fast, atol=1e-5, rtol=1e-4)


def test_cached_maps_are_refused_by_a_model_whose_encoder_trains(tiny_bert):
    model = cross_model(tiny_bert)
    cached = F.cache_features({"test": varied_loader()}, model.image_encoder, model.text_encoder, empty_note=EMPTY,
                              maps=True)["test"]
    model.image_encoder.requires_grad_(True)
    with pytest.raises(ValueError, match="trains its image encoder, so cached image_map are stale"):
        model(next(iter(cached.without("image_features", "text_features").batches(4))))


def test_probe_accuracy_reads_a_linear_label_and_not_a_random_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    x[:, 2] += torch.sign(x[:, 2])  # a margin of 2 around the boundary
    y = (x[:, 2] > 0).long()
    assert F.probe_accuracy(x[:300], y[:300], x[300:], y[300:]) == 1.0
    noise = torch.randint(0, 2, (400,), generator=g)
    assert F.probe_accuracy(x[:300], noise[:300], x[300:], noise[300:]) < 0.65
