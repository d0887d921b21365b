"""SynthScan: generation, the label rule, the oracle bands against their known answer, the cache."""
import numpy as np
import pytest

from visfuse_utils import synthscan as S


@pytest.fixture(scope="module")
def big():
    return S.make_synthscan(3000, seed=0)


def test_deterministic_and_seed_dependent():
    a, b = S.make_synthscan(50, seed=3, image_size=32), S.make_synthscan(50, seed=3, image_size=32)
    assert a.images.tobytes() == b.images.tobytes() and a.texts == b.texts
    assert np.array_equal(a.masks, b.masks) and a.captions == b.captions
    c = S.make_synthscan(50, seed=4, image_size=32)
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
    assert S.label_rule(np.array([0, 1, 0, 2, 1, 2]), np.array([1, 0, 2, 0, 2, 1])).tolist() == [0, 0, 1, 1, 2, 2]
    clean = S.label_rule(big.latents["image_grade"], big.latents["text_risk"])
    flipped = big.labels != clean
    assert np.array_equal(flipped, big.latents["label_flipped"])
    assert 0.005 < flipped.mean() < 0.04


def test_oracle_bands_match_the_known_answer(big):
    # Label noise e flips a label to one of the two others. One modality alone: in the two outer
    # cells (0 or 2 cues / grade 0 or 2) the best class has clean probability 2/3, in the middle cell
    # all tie at 1/3, so the Bayes rate is (2 (2/3 - e/2) + 1/3) / 3 = 5/9 - e/3; both: 1 - e.
    e, n = 0.02, len(big)
    for modality, expected in (("image", 5 / 9 - e / 3), ("text", 5 / 9 - e / 3), ("both", 1 - e)):
        measured = S.oracle_accuracy(big, modality)
        se = np.sqrt(expected * (1 - expected) / n)  # sampling error of a rate measured on n samples
        assert abs(measured - expected) < 4 * se, (modality, measured, expected, se)
    with pytest.raises(ValueError, match="modality"):
        S.oracle_accuracy(big, "audio")


def test_image_size_configurable():
    d = S.make_synthscan(10, seed=0, image_size=48)
    assert d.images.shape == (10, 1, 48, 48) and d.masks.shape == (10, 48, 48)
    with pytest.raises(ValueError, match="image_size"):
        S.make_synthscan(10, image_size=8)


def test_cache_roundtrip_and_invalidation(tmp_path):
    a = S.synthscan_cached(30, seed=1, image_size=32, cache_dir=tmp_path)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 1
    b = S.synthscan_cached(30, seed=1, image_size=32, cache_dir=tmp_path)
    assert a.images.tobytes() == b.images.tobytes() and a.texts == b.texts
    assert a.evidence_spans == b.evidence_spans
    assert np.array_equal(a.latents["radius"], b.latents["radius"], equal_nan=True)
    S.synthscan_cached(30, seed=2, image_size=32, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # new settings, new file


def test_caption_attributes_read_back_what_the_generator_wrote(big):
    d = big.subset(np.arange(300))
    lat = d.latents
    for i, caption in enumerate(d.captions):
        a = S.caption_attributes(caption)
        assert (a["ruler"] is not None) == bool(lat["ruler"][i]) and (a["hair"] is not None) == bool(lat["hair"][i])
        if lat["image_grade"][i] == 0:
            assert a["size"] is None and a["border"] is None
        else:
            assert a["border"] == ("irregular" if lat["image_grade"][i] == 2 else "smooth")
            y = lat["center_y"][i]
            assert a["row"] == ("top" if y < 0.43 else "bottom" if y > 0.57 else "middle")


def test_caption_finding_reads_the_key_finding_and_refuses_contradictions():
    from visfuse_utils.synthscan import caption_finding

    assert caption_finding("No focal lesion is visible; a ruler along the bottom edge.") == "none"
    assert caption_finding("A small faint lesion with a smooth border near the top centre.") == "smooth"
    assert caption_finding("A lesion with an irregular border.") == "irregular"
    assert caption_finding("A lesion with a smooth border and an irregular border.") is None
    assert caption_finding("A lesion near the top.") is None


def test_cache_written_by_two_processes_at_once(tmp_path):
    """The processes of a distributed run each generate a missing cache file; neither may fail on the other's."""
    import subprocess
    import sys

    code = ("import sys; from visfuse_utils.synthscan import synthscan_cached; "
            "print(synthscan_cached(3000, seed=5, image_size=32, cache_dir=sys.argv[1]).fingerprint())")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [r.communicate(timeout=300)[0].strip() for r in runs]
    assert [r.returncode for r in runs] == [0, 0] and outs[0] == outs[1]
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.iterdir()).name]  # one file, no leftovers


def test_the_sum_rule_is_unchanged_by_the_consistency_option():
    """The default data are byte-identical to the data before the rule option existed (fingerprint recorded then)."""
    d = S.make_synthscan(60, seed=3, image_size=32)
    assert d.fingerprint() == "4f51de2fd1cbc39e" and d.evidence_spans[0] == [(51, 96), (97, 125)]
    assert "rule" not in d.meta


def test_consistency_rule_needs_both_modalities():
    """Oracles: 1/2 from the scan or the note alone (the label is balanced given either), 1 - e from both."""
    d = S.make_synthscan(3000, seed=0, image_size=32, rule="consistency")
    plain = S.make_synthscan(3000, seed=0, image_size=32)
    assert d.class_names == ["consistent", "inconsistent"] and d.meta["rule"] == "consistency"
    assert np.array_equal(d.images, plain.images) and np.array_equal(d.latents["text_risk"], plain.latents["text_risk"])
    grade, claimed = d.latents["image_grade"], d.latents["claimed_grade"]
    assert np.array_equal(d.latents["clean_label"], (claimed != grade).astype(int))
    assert np.array_equal(d.labels != d.latents["clean_label"], d.latents["label_flipped"])
    e, n = 0.02, len(d)
    for modality, expected in (("image", 0.5), ("text", 0.5), ("both", 1 - e)):
        se = np.sqrt(expected * (1 - expected) / n)
        assert abs(S.oracle_accuracy(d, modality) - expected) < 4 * se, modality
    for k in range(3):  # given one modality's value, both labels stay equally likely
        for latent in (grade, claimed, d.latents["text_risk"]):
            share = d.latents["clean_label"][latent == k].mean()
            assert abs(share - 0.5) < 4 * np.sqrt(0.25 / (latent == k).sum())
    # the claim sentence sits right after the opening, is the note's only evidence span, and names the claimed grade
    for text, spans, c, risk_note in zip(d.texts[:200], d.evidence_spans, claimed, plain.texts):
        (start, end), = spans
        assert text[start:end] in S.CLAIMS[c] and text[:start - 1] == risk_note[:start - 1]
        assert text[:start - 1] + text[end:] == risk_note
    with pytest.raises(ValueError, match="rule must be one of sum, consistency"):
        S.make_synthscan(10, rule="xor")


def test_cache_keeps_the_rules_apart(tmp_path):
    a = S.synthscan_cached(40, seed=1, image_size=32, cache_dir=tmp_path)
    b = S.synthscan_cached(40, seed=1, image_size=32, cache_dir=tmp_path, rule="consistency")
    assert len(list(tmp_path.glob("*.npz"))) == 2 and a.class_names != b.class_names
    again = S.synthscan_cached(40, seed=1, image_size=32, cache_dir=tmp_path, rule="consistency")
    assert again.texts == b.texts and np.array_equal(again.latents["claimed_grade"], b.latents["claimed_grade"])
