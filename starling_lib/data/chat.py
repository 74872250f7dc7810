"""Chat formats: Nectar's prompt string as messages, and the Starling models' chat templates.

Nectar (like Anthropic HH) stores a conversation as one string,
``"\\n\\nHuman: ...\\n\\nAssistant: ..."``; :func:`prompt_to_messages` and
:func:`messages_to_prompt` convert it to and from chat messages, which the templates below render.
Chat templates, as Jinja strings usable with any tokenizer:

- ``OPENCHAT_TEMPLATE``: OpenChat 3.5 / Starling-LM-7B-alpha ("GPT4 Correct" format), the
  template shipped in ``openchat/openchat_3.5``'s ``tokenizer_config.json``.
- ``LLAMA2_TEMPLATE``: Llama-2 chat (``[INST] ... [/INST]``), the format of Starling-RM-7B-alpha,
  whose trunk is Llama-2-7b-chat; the template of ``meta-llama/Llama-2-7b-chat-hf``. (The
  Starling-RM model card's own inference example builds its strings by hand with the same
  ``[INST]`` markers; the reward-model loader handles that checkpoint's specifics.)

Set one on a tokenizer (``tokenizer.chat_template = OPENCHAT_TEMPLATE``) and use
``tokenizer.apply_chat_template``, or call :func:`render_chat` with no tokenizer at all.
Messages are ``[{"role": "user"|"assistant"|"system", "content": str}, ...]``.
"""

from __future__ import annotations

import functools
import re

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from starling_lib.data.schema import ASSISTANT, HUMAN, NectarFormatError

_TURN_MARKER = re.compile(f"({re.escape(HUMAN)}|{re.escape(ASSISTANT)})")


# ---------------------------------------------------------------------------------- prompt format

def prompt_to_messages(prompt: str) -> list[dict[str, str]]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: "`` -> user a, assistant b, user c.

    Content is the exact text between turn markers. A final empty Assistant turn (the generation
    point) is dropped; a final non-empty one is kept as a partial assistant message. A prompt may open
    with ``"Human: "`` without the blank line; it parses the same, but converts back to the canonical
    form, so only canonical prompts (opening with ``"\\n\\nHuman: "`` and ending with a generation
    point or an assistant turn) round-trip exactly through :func:`messages_to_prompt`.
    """
    if prompt.startswith(HUMAN.lstrip("\n")):
        prompt = "\n\n" + prompt
    pieces = _TURN_MARKER.split(prompt)  # [preamble, marker, content, marker, content, ...]
    if pieces[0] or len(pieces) == 1 or pieces[1] != HUMAN:
        raise NectarFormatError("no_human_turn", f"prompt does not open with a {HUMAN.strip()!r} turn: "
                                f"{prompt[:60]!r}", field="prompt")
    messages = [{"role": "user" if marker == HUMAN else "assistant", "content": content}
                for marker, content in zip(pieces[1::2], pieces[2::2])]
    if messages[-1] == {"role": "assistant", "content": ""}:
        messages.pop()
    return messages


def messages_to_prompt(messages: list[dict[str, str]]) -> str:
    """Inverse of :func:`prompt_to_messages`: a conversation ending on a user turn gets the
    generation point ``"\\n\\nAssistant: "``; one ending on an assistant turn is left open after it."""
    markers = {"user": HUMAN, "assistant": ASSISTANT}
    for i, message in enumerate(messages):
        if message.get("role") not in markers:
            raise ValueError(f"message {i}: role must be 'user' or 'assistant', got {message.get('role')!r}")
    prompt = "".join(markers[m["role"]] + m["content"] for m in messages)
    return prompt + ASSISTANT if messages and messages[-1]["role"] == "user" else prompt


# ---------------------------------------------------------------------------------- chat templates

OPENCHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}"
)

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

# Special tokens each template expects (what the published tokenizers define).
TEMPLATE_TOKENS = {
    "openchat": {"template": OPENCHAT_TEMPLATE, "bos_token": "<s>", "eos_token": "<|end_of_turn|>"},
    "llama2": {"template": LLAMA2_TEMPLATE, "bos_token": "<s>", "eos_token": "</s>"},
}


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    # The same environment settings transformers uses, so both paths render identically.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(template)


def render_chat(messages: list[dict], template: str = "openchat", *, add_generation_prompt: bool = False,
                bos_token: str | None = None, eos_token: str | None = None) -> str:
    """Render ``messages`` with a template name (``openchat``, ``llama2``) or a Jinja string."""
    if template in TEMPLATE_TOKENS:
        spec = TEMPLATE_TOKENS[template]
        template = spec["template"]
        bos_token = spec["bos_token"] if bos_token is None else bos_token
        eos_token = spec["eos_token"] if eos_token is None else eos_token
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
            raise ValueError(f"message {i} must be a dict with 'role' and string 'content', got {message!r:.80}")
    return _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     bos_token=bos_token or "", eos_token=eos_token or "")
