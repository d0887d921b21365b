"""SynthScan generation, oracle bands, splits, caching, user CSVs and the torch Dataset."""
import numpy as np
import pytest
from PIL import Image

from visfuse_utils import data as D


@pytest.fixture(scope="module")
def big():
    return D.make_synthscan(3000, seed=0)


def test_deterministic_and_seed_dependent():
    a, b = D.make_synthscan(50, seed=3, image_size=32), D.make_synthscan(50, seed=3, image_size=32)
    assert a.images.tobytes() == b.images.tobytes() and a.texts == b.texts
    assert np.array_equal(a.masks, b.masks) and a.captions == b.captions
    c = D.make_synthscan(50, seed=4, image_size=32)
    assert a.images.tobytes() != c.images.tobytes() and a.texts != c.texts


def test_sample_fields(big):
    d = big.subset(np.arange(200))
    assert d.images.shape == (200, 1, 64, 64) and d.images.dtype == np.uint8
    assert d.masks.shape == (200, 64, 64) and d.masks.dtype == bool
    assert d.labels.dtype == np.int64 and set(np.unique(d.labels)) == {0, 1, 2}
    assert d.class_names == ["normal", "benign", "malignant"]
    grade = d.latents["image_grade"]
    assert not d.masks[grade == 0].any() and d.masks[grade > 0].any(axis=(1, 2)).all()
    for text, spans, caption in zip(d.texts, d.evidence_spans, d.captions):
        assert isinstance(text, str) and caption.endswith(".")
        for start, end in spans:
            piece = text[start:end]
            assert piece.endswith(".") and piece[0].isupper()
    # the number of affirmed cues in the note is the text latent
    affirmed = (d.latents["growth_cue"] == 1).astype(int) + (d.latents["family_cue"] == 1)
    assert np.array_equal(affirmed, d.latents["text_risk"])


def test_label_rule_and_noise(big):
    assert D.label_rule(np.array([0, 1, 0, 2, 1, 2]), np.array([1, 0, 2, 0, 2, 1])).tolist() == [0, 0, 1, 1, 2, 2]
    clean = D.label_rule(big.latents["image_grade"], big.latents["text_risk"])
    flipped = big.labels != clean
    assert np.array_equal(flipped, big.latents["label_flipped"])
    assert 0.005 < flipped.mean() < 0.04


def test_oracle_bands(big):
    both, image, text = (D.oracle_accuracy(big, m) for m in ("both", "image", "text"))
    assert both >= 0.97
    assert image <= 0.85 and text <= 0.85
    assert image > 0.45 and text > 0.45  # each modality helps, above the 1/3 of chance
    with pytest.raises(ValueError, match="modality"):
        D.oracle_accuracy(big, "audio")


def test_image_size_configurable():
    d = D.make_synthscan(10, seed=0, image_size=48)
    assert d.images.shape == (10, 1, 48, 48) and d.masks.shape == (10, 48, 48)
    with pytest.raises(ValueError, match="image_size"):
        D.make_synthscan(10, image_size=8)


def test_split_is_stratified_and_disjoint(big):
    tr, va, te = D.split(big, val=0.15, test=0.15, seed=0)
    assert len(tr) + len(va) + len(te) == len(big)
    assert len(te) == 450 and len(va) == 450
    for part in (tr, va, te):
        frac = np.bincount(part.labels, minlength=3) / len(part)
        assert np.allclose(frac, np.bincount(big.labels) / len(big), atol=0.01)
    assert te.masks.shape[0] == len(te) and len(te.evidence_spans) == len(te)


def test_cache_roundtrip_and_invalidation(tmp_path):
    a = D.synthscan_cached(30, seed=1, image_size=32, cache_dir=tmp_path)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 1
    b = D.synthscan_cached(30, seed=1, image_size=32, cache_dir=tmp_path)
    assert a.images.tobytes() == b.images.tobytes() and a.texts == b.texts
    assert a.evidence_spans == b.evidence_spans and np.array_equal(a.latents["radius"], b.latents["radius"], equal_nan=True)
    D.synthscan_cached(30, seed=2, image_size=32, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # new settings, new file


def test_loader_pads_dynamically():
    from visfuse_utils.text import load_text_model

    tok, _, _ = load_text_model()
    d = D.make_synthscan(8, seed=0, image_size=32)
    batch = next(iter(D.make_loader(d, tok, batch_size=8)))
    lengths = [len(tok(t)["input_ids"]) for t in d.texts]
    assert batch["input_ids"].shape == (8, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["image"].shape == (8, 1, 32, 32) and batch["image"].dtype.is_floating_point


def test_shuffled_text_batches_group_similar_lengths():
    from visfuse_utils.text import load_text_model

    tok, _, _ = load_text_model()
    d = D.make_synthscan(300, seed=0, image_size=16)
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


# ------------------------------------------------------------------------- user CSVs
def _write_csv(folder, rows, header="image,text,label", encoding="utf-8"):
    path = folder / "data.csv"
    path.write_bytes(("\n".join([header] + rows) + "\n").encode(encoding))
    return path


@pytest.fixture()
def images(tmp_path):
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a.png")
    Image.new("L", (20, 50), 90).save(tmp_path / "b.jpg")
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "c.png")
    return tmp_path


def test_load_csv_converts_and_resizes(images):
    path = _write_csv(images, ["a.png,red thing,cat", "b.jpg,grey thing,dog", "c.png,clear thing,dog"])
    d = D.load_csv(path, image_size=24)
    assert d.images.shape == (3, 1, 24, 24) and d.images.dtype == np.uint8
    assert d.class_names == ["cat", "dog"] and d.labels.tolist() == [0, 1, 1]
    assert d.images[2].min() == 255  # transparency flattened onto white
    assert d.masks is None and not d.has_ground_truth
    rgb = D.load_csv(path, image_size=24, channels=3)
    assert rgb.images.shape == (3, 3, 24, 24)


@pytest.mark.parametrize("rows, header, match", [
    (["a.png,x,cat", "b.jpg,y,dog"], "img,text,label", r"no column 'image'"),
    (["a.png,x,cat", "missing.png,y,dog"], "image,text,label", r"row 2 \(line 3\).*does not exist"),
    (["a.png,x,cat", "b.jpg,,dog"], "image,text,label", r"row 2.*'text'.*empty"),
    (["a.png,x,cat", "b.jpg,y,"], "image,text,label", r"row 2.*'label'.*missing"),
    (["a.png,x,cat", "b.jpg,y,cat"], "image,text,label", r"only one class"),
    (["a.png,x,cat", "../outside.png,y,dog"], "image,text,label", r"row 2.*outside the image root"),
    (["a.png,x,cat", ",y,dog"], "image,text,label", r"row 2.*no image file"),
])
def test_load_csv_errors_name_the_problem(images, rows, header, match):
    path = _write_csv(images, rows, header)
    with pytest.raises(D.DataError, match=match) as err:
        D.load_csv(path)
    assert str(path) in str(err.value)


def test_load_csv_corrupt_image_and_encoding(images):
    (images / "bad.png").write_bytes(b"not an image at all")
    path = _write_csv(images, ["a.png,x,cat", "bad.png,y,dog"])
    with pytest.raises(D.DataError, match=r"bad.png cannot be read as an image"):
        D.load_csv(path)
    path = _write_csv(images, ["a.png,caf\u00e9,cat", "b.jpg,y,dog"], encoding="latin-1")
    with pytest.raises(D.DataError, match="not valid UTF-8"):
        D.load_csv(path)
    with pytest.raises(D.DataError, match="does not exist"):
        D.load_csv(images / "nope.csv")
    assert issubclass(D.DataError, ValueError)


def test_load_data_dispatches(images):
    path = _write_csv(images, ["a.png,x,cat", "b.jpg,y,dog"])
    assert D.load_data(str(path), n=0, image_size=16).images.shape == (2, 1, 16, 16)
