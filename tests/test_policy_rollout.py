"""Rollouts and the policy networks: prompt encoding, masks, log-probabilities, reward re-rendering,
running moments, critics, freezing and LoRA (tiny models of the smoke preset)."""

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from starling_lib.config import get_preset
from starling_lib.data.chat import LLAMA2_TEMPLATE
from starling_lib.data.tinyworld import generate_world
from starling_lib.models import build_tiny_assets, count_parameters, quiet_transformers
from starling_lib.policy.models import ActorCritic, add_lora, freeze_all_but_last, frozen_reference, reference_context
from starling_lib.policy.rollout import (RewardScorer, RunningMoments, decode_responses, encode_prompts,
                                         forward_tokens, position_ids, response_mask, sample_responses)
from starling_lib.reward.train import score_examples


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    preset = get_preset("smoke")
    paths = build_tiny_assets(preset, tmp_path_factory.mktemp("assets"))
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(paths["tokenizer"])
        policy = AutoModelForCausalLM.from_pretrained(paths["policy"])
        reward = AutoModelForSequenceClassification.from_pretrained(paths["reward"])
    prompts = [row["prompt"] for row in generate_world(preset.world)[:6]]
    return preset, tokenizer, policy, reward, prompts


def test_encode_prompts_left_pads_and_cuts_the_start(assets):
    _, tokenizer, _, _, prompts = assets
    ids, mask, cut = encode_prompts(tokenizer, prompts[:3], max_prompt_length=512)
    assert cut == 0 and ids.shape == mask.shape
    assert bool(mask[:, -1].all())  # left padding: every row ends with a real token
    assert (ids[mask == 0] == tokenizer.pad_token_id).all()
    full = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    assert full.startswith(tokenizer.bos_token)
    one, _, _ = encode_prompts(tokenizer, prompts[:1], max_prompt_length=512)
    short, short_mask, cut = encode_prompts(tokenizer, prompts[:1], max_prompt_length=10)
    assert cut == 1 and short.shape == (1, 10)
    assert short[0, 0] == tokenizer.bos_token_id  # bos kept ...
    assert short[0, 1:].tolist() == one[0, -9:].tolist()  # ... and the end of the prompt (the question)


def test_response_mask_stops_after_the_first_eos():
    ids = torch.tensor([[5, 6, 3, 7, 3], [5, 6, 7, 8, 9], [3, 4, 4, 4, 4]])
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(response_mask(ids, [3]), expected)
    assert torch.equal(response_mask(torch.tensor([[5, 2, 3]]), [2, 3]), torch.tensor([[True, True, False]]))


def test_position_ids_count_from_the_first_real_token():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 3]]


def test_logprobs_of_the_forward_pass_equal_the_samplers(assets):
    """The update's log π(a|s) must be the sampler's: same positions, same padding, same tokens."""
    _, tokenizer, policy, _, prompts = assets
    ids, mask, _ = encode_prompts(tokenizer, prompts, 256)
    torch.manual_seed(0)
    with torch.no_grad():
        out = policy.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=True, top_k=0,
                              top_p=1.0, temperature=1.0, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id, output_scores=True, return_dict_in_generate=True)
    response = out.sequences[:, ids.shape[1]:]
    rmask = response_mask(response, [tokenizer.eos_token_id])
    sampler = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], 1)  # (B, R, V)
    sampler = sampler.gather(2, response[..., None]).squeeze(-1)
    with torch.no_grad():
        ours = forward_tokens(policy, ids, mask, response.masked_fill(~rmask, tokenizer.pad_token_id), rmask).logprobs
    torch.testing.assert_close(ours[rmask], sampler[rmask], atol=2e-4, rtol=0)


def test_sample_responses_pads_after_eos_and_decodes(assets):
    _, tokenizer, policy, _, prompts = assets
    ids, mask, _ = encode_prompts(tokenizer, prompts, 256)
    torch.manual_seed(1)
    response, rmask = sample_responses(policy, tokenizer, ids, mask, max_new_tokens=16)
    assert response.shape[0] == len(prompts) and response.shape[1] <= 16
    assert (response[~rmask] == tokenizer.pad_token_id).all()
    texts = decode_responses(tokenizer, response, rmask)
    assert all(tokenizer.eos_token not in t for t in texts)
    torch.manual_seed(1)
    again, _ = sample_responses(policy, tokenizer, ids, mask, max_new_tokens=16)
    assert torch.equal(response, again)  # same seed, same samples


def test_reward_scorer_rerenders_in_the_reward_models_own_template(assets):
    """A reward model with another template (Llama-2 here) scores the decoded text in its own format:
    the scores equal scoring the same (prompt, answer) pairs directly with the reward stage."""
    preset, tokenizer, _, reward, prompts = assets
    rm_tokenizer = copy.deepcopy(tokenizer)
    rm_tokenizer.chat_template = LLAMA2_TEMPLATE
    answers = ["Bees make honey because pollen.", "I can't help with that.", "", "1. rails 2. station"] * 2
    answers = answers[:len(prompts)]
    scorer = RewardScorer(reward, rm_tokenizer, max_length=128, batch_size=4)
    scores = scorer(prompts, answers)
    direct = score_examples(reward, rm_tokenizer, [{"prompt": p, "answers": [a]} for p, a in zip(prompts, answers)],
                            max_length=128)["scores"][:, 0]
    np.testing.assert_allclose(scores.numpy(), direct, atol=1e-5)
    # ... and differ from the policy template's rendering, so the template really was used
    other = RewardScorer(reward, tokenizer, max_length=128)(prompts, answers)
    assert not torch.allclose(scores, other)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        scorer(prompts[:2], answers[:1])


def test_running_moments_match_numpy():
    rng = np.random.default_rng(0)
    moments = RunningMoments()
    seen = []
    for size in (5, 1, 17, 3):
        batch = rng.normal(2.0, 3.0, size)
        seen.extend(batch)
        moments.update(torch.tensor(batch))
        assert moments.mean == pytest.approx(np.mean(seen))
        assert moments.var == pytest.approx(np.var(seen))
    assert moments.count == 26 and moments.std == pytest.approx(np.std(seen))
    restored = RunningMoments()
    restored.load_state_dict(moments.state_dict())
    assert restored.state_dict() == moments.state_dict()


@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_actor_critic_values_and_logits(assets, critic):
    _, tokenizer, policy, _, prompts = assets
    model = ActorCritic(copy.deepcopy(policy), critic=critic)
    ids, mask, _ = encode_prompts(tokenizer, prompts[:2], 256)
    logits, values = model(ids, mask, position_ids(mask))
    assert logits.shape[:2] == values.shape == ids.shape
    assert torch.equal(values, torch.zeros_like(values))  # a zero head starts at V = 0
    torch.testing.assert_close(logits, policy(input_ids=ids, attention_mask=mask,
                                              position_ids=position_ids(mask)).logits)
    extra = count_parameters(model) - count_parameters(policy)
    hidden = policy.config.hidden_size
    if critic == "shared":
        assert extra == hidden + 1
    else:  # a whole trunk copy (every parameter but the LM head), not shared with the policy
        assert extra == count_parameters(policy.model) + hidden + 1
        assert model.critic_trunk.embed_tokens.weight.data_ptr() != policy.model.embed_tokens.weight.data_ptr()


def test_freeze_all_but_last_n_layers(assets):
    _, _, policy, _, _ = assets
    model = copy.deepcopy(policy)
    freeze_all_but_last(model, 1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.norm", "lm_head")) for n in trainable)
    assert any(n.startswith("model.layers.1.") for n in trainable)
    assert not model.model.embed_tokens.weight.requires_grad
    with pytest.raises(ValueError, match="has 2 layers"):
        freeze_all_but_last(copy.deepcopy(policy), 3)


def test_lora_reference_is_the_model_with_adapters_off(assets):
    _, tokenizer, policy, _, prompts = assets
    model = add_lora(copy.deepcopy(policy), r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    assert frozen_reference(model) is None
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # move the adapters so the tuned model differs from the start
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    ids, mask, _ = encode_prompts(tokenizer, prompts[:2], 256)
    kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask))
    ref_model, context = reference_context(model, None)
    with torch.no_grad(), context:
        ref_logits = ref_model(**kwargs).logits
    with torch.no_grad():
        tuned = model(**kwargs).logits
        start = policy(**kwargs).logits
    torch.testing.assert_close(ref_logits, start)
    assert not torch.allclose(tuned, start)
