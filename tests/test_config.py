"""Presets are dataclass instances; overrides are typed; every field documents itself."""

import ast
import dataclasses
import inspect

import pytest

from starling_lib import config
from starling_lib.config import PRESETS, get_preset


def test_presets_are_fresh_copies():
    a, b = get_preset("tiny"), get_preset("tiny")
    a.world.n_prompts = 3
    assert b.world.n_prompts != 3


def test_smoke_is_smaller_than_tiny_and_full_reads_the_hub():
    smoke, tiny, full = (get_preset(n) for n in ("smoke", "tiny", "full"))
    assert smoke.world.n_prompts < tiny.world.n_prompts
    assert smoke.policy_model.hidden_size < tiny.policy_model.hidden_size
    assert smoke.tokenizer.vocab_size < tiny.tokenizer.vocab_size
    assert full.data.source == "berkeley-nest/Nectar"
    assert full.policy_model.name_or_path == "openchat/openchat_3.5"
    assert tiny.data.source == "tinyworld" and tiny.policy_model.name_or_path is None


def test_overrides_convert_types_and_name_bad_keys():
    p = get_preset("smoke", ["world.n_prompts=12", "world.temperature=0.25", "runtime.bf16=false",
                             "data.max_prompts=none", "policy_model.arch=mistral"])
    assert (p.world.n_prompts, p.world.temperature, p.runtime.bf16, p.data.max_prompts) == (12, 0.25, False, None)
    assert p.policy_model.arch == "mistral"
    assert get_preset("smoke", ["runtime.dtype=bf16"]).runtime.dtype == "bf16"
    with pytest.raises(ValueError, match="no field 'n_prompt'"):
        get_preset("smoke", ["world.n_prompt=3"])
    with pytest.raises(ValueError, match="no config section 'wrld'"):
        get_preset("smoke", ["wrld.n_prompts=3"])
    with pytest.raises(ValueError, match="cannot read 'many' as int"):
        get_preset("smoke", ["world.n_prompts=many"])
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("huge")


def test_every_config_field_has_a_docstring():
    tree = ast.parse(inspect.getsource(config))
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and dataclasses.is_dataclass(getattr(config, node.name))):
            continue
        body = node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                assert documented, f"{node.name}.{stmt.target.id} has no docstring"


def test_presets_serialise():
    for name in PRESETS:
        d = get_preset(name).to_dict()
        assert d["name"] == name and "world" in d and "runtime" in d
