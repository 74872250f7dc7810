"""Nectar's prompt string converts to chat messages and back; chat templates render exactly the
published formats, standalone and through a tokenizer."""

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from starling_lib.data.chat import (
    LLAMA2_TEMPLATE, OPENCHAT_TEMPLATE, messages_to_prompt, prompt_to_messages, render_chat,
)
from starling_lib.data.schema import NectarFormatError

ONE_TURN = [{"role": "user", "content": "Hello"}]
MULTI_TURN = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi"},
    {"role": "user", "content": "How are you today?"},
]


# ---------------------------------------------------------------------------------- prompt format

TWO_TURNS = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Name a colour.\n\nAssistant: "


def test_prompt_to_messages_two_turns():
    assert prompt_to_messages(TWO_TURNS) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a colour."},
    ]
    assert messages_to_prompt(prompt_to_messages(TWO_TURNS)) == TWO_TURNS


def test_prompt_variants():
    # No leading blank line: parsed leniently, written back in the canonical form.
    assert prompt_to_messages("Human: Hi\n\nAssistant: ") == [{"role": "user", "content": "Hi"}]
    assert messages_to_prompt([{"role": "user", "content": "Hi"}]) == "\n\nHuman: Hi\n\nAssistant: "
    # A started assistant turn stays open rather than gaining a generation point.
    partial = "\n\nHuman: Hi\n\nAssistant: Sure, here"
    assert prompt_to_messages(partial)[-1] == {"role": "assistant", "content": "Sure, here"}
    assert messages_to_prompt(prompt_to_messages(partial)) == partial
    # Marker-like text without the blank line is content, not a turn.
    assert prompt_to_messages("\n\nHuman: say 'Human: x'\n\nAssistant: ")[0]["content"] == "say 'Human: x'"
    with pytest.raises(ValueError, match="role must be 'user' or 'assistant'"):
        messages_to_prompt([{"role": "system", "content": "Be brief."}])


@pytest.mark.parametrize("prompt", ["Tell me a joke.", "\n\nAssistant: hi", "intro\n\nHuman: hi\n\nAssistant: "])
def test_prompt_without_opening_human_turn_is_rejected(prompt):
    with pytest.raises(NectarFormatError) as caught:
        prompt_to_messages(prompt)
    assert (caught.value.reason, caught.value.field) == ("no_human_turn", "prompt")
    assert str(caught.value).startswith("field 'prompt': ")


# ---------------------------------------------------------------------------------- chat templates

def test_openchat_single_turn_with_generation_prompt():
    assert render_chat(ONE_TURN, "openchat", add_generation_prompt=True) == (
        "<s>GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant:")


def test_openchat_multi_turn_matches_the_model_card_example():
    # openchat/openchat_3.5 README: "GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant:
    # Hi<|end_of_turn|>GPT4 Correct User: How are you today?<|end_of_turn|>GPT4 Correct Assistant:"
    assert render_chat(MULTI_TURN, "openchat", add_generation_prompt=True) == (
        "<s>GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant: Hi<|end_of_turn|>"
        "GPT4 Correct User: How are you today?<|end_of_turn|>GPT4 Correct Assistant:")


def test_openchat_scored_conversation_ends_with_end_of_turn():
    convo = ONE_TURN + [{"role": "assistant", "content": "Hi there"}]
    assert render_chat(convo, "openchat") == (
        "<s>GPT4 Correct User: Hello<|end_of_turn|>GPT4 Correct Assistant: Hi there<|end_of_turn|>")


def test_llama2_single_and_multi_turn():
    assert render_chat(ONE_TURN, "llama2") == "<s>[INST] Hello [/INST]"
    assert render_chat(MULTI_TURN, "llama2") == (
        "<s>[INST] Hello [/INST] Hi </s><s>[INST] How are you today? [/INST]")


def test_llama2_system_prompt_goes_inside_first_instruction():
    convo = [{"role": "system", "content": "Be brief."}] + MULTI_TURN[:2]
    assert render_chat(convo, "llama2") == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi </s>")


def test_llama2_rejects_non_alternating_roles():
    with pytest.raises(Exception, match="alternate"):
        render_chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "llama2")


def test_bad_message_is_named():
    with pytest.raises(ValueError, match="message 1"):
        render_chat([{"role": "user", "content": "a"}, {"role": "assistant"}], "openchat")


def _word_tokenizer(bos: str, eos: str) -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, bos: 1, eos: 2}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                   bos_token=bos, eos_token=eos, unk_token="[UNK]")


@pytest.mark.parametrize("name,template,bos,eos", [
    ("openchat", OPENCHAT_TEMPLATE, "<s>", "<|end_of_turn|>"),
    ("llama2", LLAMA2_TEMPLATE, "<s>", "</s>"),
])
def test_any_tokenizer_renders_the_same_string(name, template, bos, eos):
    tokenizer = _word_tokenizer(bos, eos)
    tokenizer.chat_template = template
    for convo in (ONE_TURN, MULTI_TURN):
        via_tokenizer = tokenizer.apply_chat_template(convo, tokenize=False, add_generation_prompt=True)
        assert via_tokenizer == render_chat(convo, name, add_generation_prompt=True)
