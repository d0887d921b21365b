"""The shared data layer: split, fingerprint, normalisation constants, Dataset and loaders."""
import numpy as np
import pytest
import torch

from visfuse_utils import data as D
from visfuse_utils.synthscan import make_synthscan


@pytest.fixture(scope="module")
def big():
    return make_synthscan(3000, seed=0)


def test_split_is_stratified_and_disjoint(big):
    tr, va, te = D.split(big, val=0.15, test=0.15, seed=0)
    assert len(tr) + len(va) + len(te) == len(big)
    assert len(te) == 450 and len(va) == 450
    for part in (tr, va, te):
        frac = np.bincount(part.labels, minlength=3) / len(part)
        assert np.allclose(frac, np.bincount(big.labels) / len(big), atol=0.01)
    assert te.masks.shape[0] == len(te) and len(te.evidence_spans) == len(te)


def test_loader_pads_dynamically():
    from visfuse_utils.pretrained import load_text_model

    tok, _, _ = load_text_model()
    d = make_synthscan(8, seed=0, image_size=32)
    batch = next(iter(D.make_loader(d, tok, batch_size=8)))
    lengths = [len(tok(t)["input_ids"]) for t in d.texts]
    assert batch["input_ids"].shape == (8, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["image"].shape == (8, 1, 32, 32) and batch["image"].dtype.is_floating_point


def test_shuffled_text_batches_group_similar_lengths():
    from visfuse_utils.pretrained import load_text_model

    tok, _, _ = load_text_model()
    d = make_synthscan(300, seed=0, image_size=16)
    loader = D.make_loader(d, tok, batch_size=16, shuffle=True, seed=0)
    epochs = [[b["index"].tolist() for b in loader] for _ in range(2)]
    assert len(epochs[0]) == len(loader)
    for batches in epochs:  # every sample exactly once per epoch
        assert sorted(i for b in batches for i in b) == list(range(300))
    assert epochs[0] != epochs[1]  # a new order each epoch
    lengths = np.array([len(t) for t in tok(d.texts)["input_ids"]])
    padded = sum(lengths[b].max() * len(b) for b in epochs[0])
    rng = np.random.default_rng(0)
    random_order = rng.permutation(300)
    random_padded = sum(lengths[random_order[k:k + 16]].max() * 16 for k in range(0, 288, 16)) + \
        lengths[random_order[288:]].max() * 12
    assert padded < 0.9 * random_padded  # far less padding than random batches
    again = [b["index"].tolist() for b in D.make_loader(d, tok, batch_size=16, shuffle=True, seed=0)]
    assert again == epochs[0]  # the seed fixes the order


def test_fingerprint_changes_with_any_sample_and_only_then():
    d = make_synthscan(20, seed=0, image_size=16)
    assert d.fingerprint() == make_synthscan(20, seed=0, image_size=16).fingerprint()
    for change in (lambda x: x.images.__setitem__((3, 0, 5, 5), x.images[3, 0, 5, 5] ^ 1),
                   lambda x: x.texts.__setitem__(7, x.texts[7] + " "),
                   lambda x: x.labels.__setitem__(0, (x.labels[0] + 1) % 3),
                   lambda x: x.class_names.__setitem__(0, "healthy")):
        other = d.subset(np.arange(len(d)))
        change(other)
        assert other.fingerprint() != d.fingerprint()


def test_normalisation_and_the_blank_scan():
    pixels = torch.tensor([0, 255, 128], dtype=torch.uint8)
    x = D.normalize_images(pixels)
    assert x[0] == D.BLANK_PIXEL == -2.0 and x[1] == 2.0  # black and white sit symmetric about zero
    assert abs(x[2] - (128 / 255 - 0.5) / 0.25) < 1e-6


def test_empty_note_is_what_the_tokenizer_gives_for_nothing():
    from visfuse_utils.pretrained import load_text_model

    tok, _, _ = load_text_model()
    assert D.empty_note(tok) == tok("")["input_ids"]
