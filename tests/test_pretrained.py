"""Text-model resolution (notebook 03) and the masked-mean text encoder.

The real default model is loaded once per module (about 10 s on a 2-core CPU); every
other test uses a tiny BERT saved into a temporary folder.
"""
from pathlib import Path

import pytest
import torch

from visfuse_utils import models
from visfuse_utils import pretrained as text
from visfuse_utils.pretrained import TextModelError

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "change", "in", "size", "since", "the",
         "last", "visit", ".", "denies", "any", "recent", "growth", "##s"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No hub and an empty hub cache: resolution falls through to the local folder or the offline package."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(text, "_in_hub_cache", lambda name: False)
    text.hub_reachable.cache_clear()
    yield
    text.hub_reachable.cache_clear()


@pytest.fixture(scope="module")
def minilm():
    """(tokenizer, TextEncoder, how) of the offline default model, loaded once for the module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(text, "_in_hub_cache", lambda name: False)
    text.hub_reachable.cache_clear()
    try:
        tokenizer, encoder, how = text.load_text_model()
    finally:
        mp.undo()
        text.hub_reachable.cache_clear()
    return tokenizer, models.TextEncoder(encoder).eval(), how


@pytest.fixture
def tiny_bert_dir(tmp_path: Path) -> Path:
    """A saved BERT with a 19-word vocabulary and hidden size 8 (save_pretrained output)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    folder = tmp_path / "tiny-bert"
    BertTokenizer(str(vocab)).save_pretrained(folder)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def test_default_model_resolves_to_checked_offline_package():
    where, how = text.resolve_text_model()
    assert how == "offline package"
    assert (Path(where) / "config.json").is_file()
    assert text.file_sha256(Path(where) / "model.safetensors") == text.DEFAULT_MODEL_SHA256


def test_checksum_mismatch_is_a_clear_error():
    with pytest.raises(TextModelError, match="Checksum") as err:
        text.offline_model_path(expected_sha256="0" * 64)
    assert "reinstall" in str(err.value)


def test_unknown_model_offline_says_what_to_do():
    with pytest.raises(TextModelError) as err:
        text.resolve_text_model("no-such-org/no-such-bert")
    message = str(err.value)
    assert "no-such-org/no-such-bert" in message
    assert "not reachable" in message
    assert "set TEXT_MODEL to its folder" in message


@pytest.mark.parametrize("name", ["", None])
def test_empty_model_name_is_rejected(name):
    with pytest.raises(TextModelError, match="TEXT_MODEL"):
        text.resolve_text_model(name)


def test_folder_without_config_is_rejected(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(TextModelError, match="config.json"):
        text.resolve_text_model(str(tmp_path))


def test_local_folder_loads_and_pools(tiny_bert_dir):
    where, how = text.resolve_text_model(str(tiny_bert_dir))
    assert (where, how) == (str(tiny_bert_dir), "local folder")
    tokenizer, encoder, how = text.load_text_model(str(tiny_bert_dir))
    assert how == "local folder"
    batch = tokenizer(["no change in size .", "denies any recent growths ."], padding=True, return_tensors="pt")
    assert tokenizer.unk_token_id not in batch["input_ids"].tolist()[0]
    pooled = models.TextEncoder(encoder.eval())(batch["input_ids"], batch["attention_mask"])
    assert pooled.shape == (2, 8)


def test_minilm_pooled_vector_has_384_dims(minilm):
    tokenizer, encoder, how = minilm
    assert how == "offline package"
    assert encoder.out_dim == 384
    enc = tokenizer(["Denies any recent growth of the lump."], return_tensors="pt")
    with torch.no_grad():
        pooled = encoder(enc["input_ids"], enc["attention_mask"])
    assert pooled.shape == (1, 384)
    assert torch.isfinite(pooled).all()


def test_mean_pooling_ignores_padding(minilm):
    tokenizer, encoder, _ = minilm
    short = "No change in size since the last visit."
    longer = ("Patient, woman, aged 52, seen for follow-up imaging. Mother was diagnosed with cancer at 61. "
              "Blood pressure 135/82 mmHg.")
    alone = tokenizer([short], return_tensors="pt")
    padded = tokenizer([short, longer], padding=True, return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # the short one is padded
    with torch.no_grad():
        v_alone = encoder(alone["input_ids"], alone["attention_mask"])[0]
        v_padded = encoder(padded["input_ids"], padded["attention_mask"])[0]
    assert torch.allclose(v_alone, v_padded, atol=1e-5)
