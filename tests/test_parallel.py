"""map_runs: independent runs side by side (starling_lib.parallel), and the studies that use it."""

import copy
import operator

import pytest
import torch

from starling_lib.config import get_preset
from starling_lib.parallel import map_runs, workers_for


def test_one_worker_runs_in_order_and_reports_each_result():
    seen = []
    out = map_runs(operator.pow, [(2, 3), (3, 2), (5, 0)], workers=1, on_result=lambda i, r: seen.append((i, r)),
                   order=[2, 0, 1])
    assert out == [8, 9, 1]  # results in the jobs' order
    assert seen == [(2, 1), (0, 8), (1, 9)]  # reported as they finish, in the given starting order
    with pytest.raises(ValueError, match="each of the 3 job indices once"):
        map_runs(operator.pow, [(2, 3), (3, 2), (5, 0)], order=[0, 0, 1])
    with pytest.raises(ZeroDivisionError) as error:
        map_runs(operator.truediv, [(1, 1), (1, 0)])
    assert "(in job 1 of map_runs)" in error.value.__notes__


def test_workers_for_follows_the_setting_the_threads_and_the_device(monkeypatch):
    preset = get_preset("smoke", ["runtime.device=cpu"])
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert workers_for(preset, 10) == 4 and workers_for(preset, 3) == 3 and workers_for(preset, 0) == 1
    preset.runtime.parallel_runs = 2
    assert workers_for(preset, 10) == 2 and workers_for(preset, 1) == 1
    preset.runtime.parallel_runs = 0
    with pytest.raises(ValueError, match="runtime.parallel_runs: 0"):
        workers_for(preset, 10)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    preset.runtime.parallel_runs = None
    assert workers_for(preset, 10) == 1  # one thread (a pytest-xdist worker, one core): one after another


def fail_in_a_worker(parent_pid: int) -> int:
    """A job that succeeds in the calling process (slowly, so a spawned worker gets a job) and fails in any other."""
    import os
    import time

    if os.getpid() != parent_pid:
        raise RuntimeError("failed in a spawned worker")
    time.sleep(0.5)
    return parent_pid


def test_a_failing_job_in_a_spawned_worker_is_raised_here_with_its_index():
    import os

    with pytest.raises(RuntimeError, match="failed in a spawned worker") as error:
        map_runs(fail_in_a_worker, [(os.getpid(),)] * 4, workers=2)
    assert any(note.startswith("(in job ") for note in error.value.__notes__)


def hidden_states_where_run(parent_pid: int, model) -> tuple[bool, bool]:
    """(ran in a spawned worker, the model returned hidden states); slow in the caller so the worker gets a job."""
    import os
    import time

    if os.getpid() == parent_pid:
        time.sleep(1.0)
    out = model(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    return os.getpid() != parent_pid, out.hidden_states is not None


def test_a_transformers_model_sent_to_a_spawned_worker_still_returns_hidden_states():
    """transformers 5 learns what a model class can record in __init__, which unpickling skips; a
    shared-critic policy (P3O) reads the last hidden state, so a worker must restore it."""
    import os

    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    model = LlamaForCausalLM(config).eval()
    out = map_runs(hidden_states_where_run, [(os.getpid(), model), (os.getpid(), model)], workers=2)
    assert sorted(out) == [(False, True), (True, True)]  # one job in each process, hidden states in both


def progress_where_run(parent_pid: int) -> tuple[bool, bool, bool]:
    """(ran in a spawned worker, the library's progress bars on, transformers' bars on)."""
    import os
    import time

    from transformers.utils import logging as hf_logging

    from starling_lib.progress import progress_enabled

    if os.getpid() == parent_pid:
        time.sleep(1.0)
    return os.getpid() != parent_pid, progress_enabled(), hf_logging.is_progress_bar_enabled()


def test_spawned_workers_draw_no_progress_bars(monkeypatch):
    """A worker's bars would go to the parent's raw stderr, interleaved with the other workers'."""
    import os

    monkeypatch.setenv("STARLING_PROGRESS", "1")
    out = map_runs(progress_where_run, [(os.getpid(),)] * 2, workers=2)
    in_worker = [bars for bars in out if bars[0]]
    assert in_worker, "no job reached the spawned worker"
    assert all(bars == (True, False, False) for bars in in_worker)
    assert all(bars[1] for bars in out if not bars[0])  # this process keeps its setting
