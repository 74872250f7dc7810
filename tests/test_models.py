"""Model factories: tokenizer round trips, tiny LM / RM build-save-reload, the MiniLM reward model,
cached tiny assets, and the device helpers. Everything offline, on the smoke preset where possible."""

import dataclasses
import json
import math
import string

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from starling_lib import models
from starling_lib.config import RuntimeConfig, get_preset
from starling_lib.data.chat import render_chat
from starling_lib.data.tinyworld import corpus_texts
from starling_lib.precision import resolve_device

CONVERSATION = [
    {"role": "user", "content": "Tell me about bees."},
    {"role": "assistant", "content": "Let me explain bees. Think of honey."},
    {"role": "user", "content": "Thanks. Write a short poem about it."},
]


@pytest.fixture(scope="module")
def smoke():
    return get_preset("smoke")


@pytest.fixture(scope="module")
def texts(smoke):
    return corpus_texts(dataclasses.replace(smoke.world, n_prompts=smoke.tokenizer.n_corpus_prompts))


@pytest.fixture(scope="module")
def tokenizer(smoke, texts):
    return models.train_tokenizer(texts, smoke.tokenizer)


def _batch(tokenizer, texts, side="right"):
    tokenizer.padding_side = side
    try:
        return tokenizer(texts, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "left"


def test_tokenizer_specials_template_and_padding_side(tokenizer):
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in models.SPECIAL_TOKENS}
    assert ids == {"<unk>": 0, "<s>": 1, "</s>": 2, "<|end_of_turn|>": 3, "<pad>": 4}
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "<|end_of_turn|>", "<pad>")
    assert "</s>" in tokenizer.all_special_tokens
    assert tokenizer.padding_side == "left"
    assert len(tokenizer) == 512  # the smoke corpus has enough pairs to fill the vocabulary
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat(CONVERSATION, "openchat", add_generation_prompt=True)
    ids = tokenizer(rendered)["input_ids"]
    assert ids[0] == 1 and ids.count(3) == 3  # bos from the template, one end_of_turn per message


def test_tokenizer_training_is_deterministic(smoke, texts, tokenizer):
    assert models.train_tokenizer(texts, smoke.tokenizer).get_vocab() == tokenizer.get_vocab()


def test_tokenizer_save_and_autotokenizer_reload_are_equal(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    sample = "Let me explain bees.\nThink of honey, hive and wings!"
    assert reloaded(sample)["input_ids"] == tokenizer(sample)["input_ids"]
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id, reloaded.unk_token_id) == (1, 3, 4, 0)
    assert reloaded.all_special_tokens == tokenizer.all_special_tokens
    assert reloaded.padding_side == "left"
    assert reloaded.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True) == (
        render_chat(CONVERSATION, "openchat", add_generation_prompt=True))


def test_llama2_template_makes_plain_eos_the_eos(smoke, texts):
    tok = models.train_tokenizer(texts[:400], smoke.tokenizer, chat_template="llama2")
    assert tok.eos_token == "</s>" and "<|end_of_turn|>" in tok.all_special_tokens
    convo = CONVERSATION[:2]
    assert tok.apply_chat_template(convo, tokenize=False) == render_chat(convo, "llama2")


def test_decoding_round_trips_ascii_text(tokenizer):
    text = string.printable + "  double  spaces,\n\nHuman: a prompt\n\nAssistant: "
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_tiny_lm_forward_generate_and_reload(smoke, tokenizer, tmp_path):
    lm = models.tiny_causal_lm(smoke.policy_model, tokenizer).eval()
    prompt = tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    logits = lm(**prompt).logits
    assert logits.shape == (1, prompt["input_ids"].shape[1], len(tokenizer))
    out = lm.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] <= prompt["input_ids"].shape[1] + 4 and torch.equal(out[:, :prompt["input_ids"].shape[1]], prompt["input_ids"])
    lm.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(reloaded(**prompt).logits, logits)


def test_tiny_init_is_seeded_and_leaves_global_rng_alone(smoke, tokenizer):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = models.tiny_causal_lm(smoke.policy_model, tokenizer, seed=5)
    assert torch.equal(torch.rand(1), expected_next)
    b = models.tiny_causal_lm(smoke.policy_model, tokenizer, seed=5)
    c = models.tiny_causal_lm(smoke.policy_model, tokenizer, seed=6)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight) and not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_mistral_arch_builds_a_mistral(smoke, tokenizer):
    lm = models.tiny_causal_lm(dataclasses.replace(smoke.policy_model, arch="mistral"), tokenizer)
    assert type(lm).__name__ == "MistralForCausalLM"
    with pytest.raises(ValueError, match="unknown tiny arch"):
        models.tiny_causal_lm(dataclasses.replace(smoke.policy_model, arch="gpt2"), tokenizer)


def test_tiny_reward_model_scores_shape_and_reload(smoke, tokenizer, tmp_path):
    rm = models.tiny_reward_model(smoke.reward_model, tokenizer).eval()
    batch = _batch(tokenizer, ["Think of honey.", "Let me explain bees. Think of honey, hive and wings."])
    scores = rm(**batch).logits
    assert scores.shape == (2, 1)
    rm.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert reloaded.config.pad_token_id == tokenizer.pad_token_id
    assert torch.equal(reloaded(**batch).logits, scores)


def test_reward_is_read_at_the_last_non_pad_token(smoke, tokenizer):
    rm = models.tiny_reward_model(smoke.reward_model, tokenizer).eval()
    short, long = "Think of honey.", "Let me explain bees. Think of honey, hive and wings."
    alone = rm(**tokenizer([short], return_tensors="pt")).logits[0]
    right = _batch(tokenizer, [short, long], side="right")
    assert right["input_ids"][0, -1] == tokenizer.pad_token_id  # the short one really is padded
    torch.testing.assert_close(rm(**right).logits[0], alone, rtol=0, atol=1e-5)
    left = _batch(tokenizer, [short, long], side="left")  # RoPE is relative: a shift changes nothing
    torch.testing.assert_close(rm(**left).logits[0], alone, rtol=0, atol=1e-4)


def test_parameter_counts_of_the_presets(smoke, tokenizer):
    tiny = get_preset("tiny")
    tiny_tok = models.train_tokenizer(corpus_texts(dataclasses.replace(tiny.world, n_prompts=tiny.tokenizer.n_corpus_prompts)),
                                      tiny.tokenizer)
    tiny_counts = [models.count_parameters(models.tiny_causal_lm(tiny.policy_model, tiny_tok)),
                   models.count_parameters(models.tiny_reward_model(tiny.reward_model, tiny_tok))]
    smoke_counts = [models.count_parameters(models.tiny_causal_lm(smoke.policy_model, tokenizer)),
                    models.count_parameters(models.tiny_reward_model(smoke.reward_model, tokenizer))]
    vocab = len(tiny_tok)

    def by_hand(cfg, head):  # Llama: attention q,o (h x h) and k,v (h x kv*d), gated MLP (3 h x m), 2 norms per block
        h, d = cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads
        block = 2 * h * h + 2 * h * cfg.num_key_value_heads * d + 3 * h * cfg.intermediate_size + 2 * h
        return cfg.num_hidden_layers * block + vocab * h + h + head * h  # + embeddings, final norm, head

    # tiny: a 2-block policy at width 256 (untied lm_head: vocab x 256) and a 4-block RM at width 128 (scalar head)
    assert tiny_counts == [by_hand(tiny.policy_model, vocab), by_hand(tiny.reward_model, 1)]
    assert vocab == 999 and tiny_counts == [1_962_752, 854_144]  # BPE runs out of merges at 999
    assert all(50_000 <= n <= 300_000 for n in smoke_counts), smoke_counts


def test_count_parameters_trainable_only(smoke, tokenizer):
    lm = models.tiny_causal_lm(smoke.policy_model, tokenizer)
    lm.model.embed_tokens.weight.requires_grad_(False)
    frozen = lm.model.embed_tokens.weight.numel()
    assert frozen == 512 * 64
    assert models.count_parameters(lm, trainable_only=True) == models.count_parameters(lm) - frozen


def test_load_functions_use_a_local_folder_or_build_tiny(smoke, tokenizer, tmp_path):
    lm = models.tiny_causal_lm(smoke.policy_model, tokenizer, seed=3)
    lm.save_pretrained(tmp_path / "lm")
    ids = tokenizer(["Think of honey."], return_tensors="pt")
    from_folder = models.load_causal_lm(dataclasses.replace(smoke.policy_model, name_or_path=str(tmp_path / "lm")))
    assert torch.equal(from_folder(**ids).logits, lm.eval()(**ids).logits)
    assert torch.equal(models.load_causal_lm(smoke.policy_model, tokenizer, seed=3).lm_head.weight, lm.lm_head.weight)
    # A causal-LM folder read as a reward model: trunk from the folder, a new head seeded by `seed`.
    rm_cfg = dataclasses.replace(smoke.reward_model, name_or_path=str(tmp_path / "lm"))
    rm_a, rm_b = models.load_reward_model(rm_cfg, tokenizer), models.load_reward_model(rm_cfg, tokenizer)
    assert rm_a.config.num_labels == 1 and torch.equal(rm_a.score.weight, rm_b.score.weight)
    assert torch.equal(rm_a.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    with pytest.raises(ValueError, match="needs the tokenizer"):
        models.load_reward_model(smoke.reward_model)


def test_minilm_reward_model_loads_offline_and_scores_texts():
    model, tok = models.minilm_reward_model()
    convo = [{"role": "user", "content": "Tell me about bees."}, {"role": "assistant", "content": "Bees make honey."}]
    assert tok.apply_chat_template(convo, tokenize=False) == "user: Tell me about bees.\nassistant: Bees make honey.\n"
    texts = [tok.apply_chat_template(convo, tokenize=False),
             tok.apply_chat_template(convo[:1] + [{"role": "assistant", "content": "I can't help."}], tokenize=False)]
    with torch.no_grad():
        scores = model(**tok(texts, padding=True, return_tensors="pt")).logits
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()
    assert not math.isclose(scores[0, 0].item(), scores[1, 0].item(), abs_tol=1e-6)
    again, _ = models.minilm_reward_model()
    assert torch.equal(again.classifier.weight, model.classifier.weight)  # the new head is seeded


def test_build_tiny_assets_builds_once_and_rebuilds_on_change(smoke, tmp_path):
    paths = models.build_tiny_assets(smoke, tmp_path)
    tokenizer_file = paths["tokenizer"] / "tokenizer.json"
    first_mtime = tokenizer_file.stat().st_mtime_ns
    assert json.loads(paths["assets"].read_text())["tokenizer"] == dataclasses.asdict(smoke.tokenizer)
    tok = AutoTokenizer.from_pretrained(paths["tokenizer"])
    assert tok.model_max_length == smoke.policy_model.max_position_embeddings
    assert AutoModelForCausalLM.from_pretrained(paths["policy"]).config.vocab_size == len(tok)
    assert AutoModelForSequenceClassification.from_pretrained(paths["reward"]).config.pad_token_id == tok.pad_token_id

    assert models.build_tiny_assets(smoke, tmp_path) == paths
    assert tokenizer_file.stat().st_mtime_ns == first_mtime  # reused, not retrained

    changed = get_preset("smoke", ["tokenizer.vocab_size=400"])
    models.build_tiny_assets(changed, tmp_path)
    assert len(AutoTokenizer.from_pretrained(paths["tokenizer"])) == 400
    assert json.loads(paths["assets"].read_text())["tokenizer"]["vocab_size"] == 400


def test_build_tiny_assets_refuses_pretrained_presets(tmp_path):
    with pytest.raises(ValueError, match="tiny models only"):
        models.build_tiny_assets(get_preset("full"), tmp_path)


def test_device_helpers():
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == expected == resolve_device(RuntimeConfig())
    assert resolve_device(RuntimeConfig(device="cpu")) == torch.device("cpu")
    models.seed_everything(7)
    first = torch.rand(3)
    models.seed_everything(7)
    assert torch.equal(torch.rand(3), first)
