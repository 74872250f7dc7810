"""Independent runs side by side: the seeds, curve points and sweep settings of a study on the CPU's cores.

What it is for: a study trains many small models that do not depend on each other (notebook 02's
learning curve, notebook 03's algorithms x seeds, notebook 06's sweep). One run of a tiny model
keeps two cores only partly busy: sampling a token at a time is mostly Python and small
kernels, so torch's second thread adds little. On a 2-core AMD EPYC Zen 3 (fp32) an APA iteration
took 2.60 s on one thread and 1.79 s on two: two runs on one thread each finish 1.38x sooner than
the same runs one after another on two threads. So :func:`map_runs` gives each of ``workers``
runs one share of the threads torch has (``torch.get_num_threads() // workers``, at least one).

How: this process is one of the workers (it starts at once, with its objects unpickled); the others
are ``spawn``-ed processes (a fresh interpreter: no fork of a process holding OpenMP threads, a
Jupyter kernel's sockets or a CUDA context), each taking the next job when it finishes one. A
spawned worker pays the imports once (~10 s here, while this process is already working). Jobs
carry their own seeds, so which worker ran a job does not change its result; results come back in
the jobs' order. ``fn`` must be importable (a module-level function) and its arguments picklable.

``workers``: ``runtime.parallel_runs`` (:func:`workers_for`). ``None`` (auto): one worker per
torch thread, only where the runs are on the CPU, never more than there are jobs; so under
pytest-xdist (one thread per test process) and on one core, runs go one after another, as before.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import os
import queue
import threading
from typing import Any, Callable, Sequence

import torch


def workers_for(preset, jobs: int) -> int:
    """How many runs of ``preset`` go side by side when there are ``jobs`` of them (at least 1)."""
    from starling_lib.precision import resolve_device

    requested = getattr(preset.runtime, "parallel_runs", None)
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"runtime.parallel_runs: {requested!r}; give a number of workers >= 1, or null for auto")
        return max(1, min(int(requested), jobs))
    if resolve_device(preset.runtime).type != "cpu":
        return 1  # one accelerator: its runs take turns on it
    return max(1, min(torch.get_num_threads(), jobs))


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for any process a job starts
    # No progress bars from workers: they write to the parent's raw stderr (not a notebook's output),
    # interleaved with each other; the parent reports each job as it ends.
    os.environ["STARLING_PROGRESS"] = "0"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' save/load bars read it at import
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def map_runs(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int = 1,
             on_result: Callable[[int, Any], None] | None = None, order: Sequence[int] | None = None) -> list:
    """``[fn(*job) for job in jobs]``, with up to ``workers`` jobs at a time (see the module docstring).

    ``order``: the job indices in the order they start (default: as given); longest first finishes
    sooner when the jobs differ in size.
    ``on_result(index, result)`` is called in this process's main thread as each job finishes (in
    finishing order): for progress lines or appending a results file. An exception in any job
    stops further jobs from starting and is raised here once the running ones end, with the job's
    index in its notes.
    """
    jobs = list(jobs)
    results: list = [None] * len(jobs)
    workers = max(1, min(int(workers), len(jobs)))
    order = list(range(len(jobs)) if order is None else order)
    if sorted(order) != list(range(len(jobs))):
        raise ValueError(f"order must list each of the {len(jobs)} job indices once")

    def done(index: int, result) -> None:
        results[index] = result
        if on_result is not None:
            on_result(index, result)

    if workers == 1:
        for index in order:
            done(index, _call(fn, jobs[index], index))
        return results

    threads = max(1, torch.get_num_threads() // workers)
    pending = collections.deque(order)
    lock = threading.Lock()
    finished: queue.Queue = queue.Queue()
    errors: list[BaseException] = []

    def take() -> int | None:
        with lock:
            return pending.popleft() if pending and not errors else None

    def fail(error: BaseException, index: int) -> None:
        _note(error, index)
        with lock:
            errors.append(error)
            pending.clear()

    def dispatch(pool) -> None:  # one thread per spawned worker: a job at a time, so none waits behind a busy one
        while (index := take()) is not None:
            try:
                finished.put((index, pool.submit(_run_in_worker, fn, jobs[index]).result()))
            except concurrent.futures.process.BrokenProcessPool as error:
                fail(RuntimeError(
                    "a worker process of map_runs died. If this runs from a script, keep its top level under "
                    "`if __name__ == '__main__':` (spawned workers import the main module again); if the machine "
                    "ran out of memory, run fewer at a time (runtime.parallel_runs=1 runs one after another)"), index)
                errors[-1].__cause__ = error
            except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
                fail(error, index)

    def drain() -> None:
        while True:
            try:
                index, result = finished.get_nowait()
            except queue.Empty:
                return
            done(index, result)

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_init_worker,
                                                initargs=(threads,)) as pool, _threads(threads):
        dispatchers = [threading.Thread(target=dispatch, args=(pool,), daemon=True) for _ in range(workers - 1)]
        for thread in dispatchers:
            thread.start()
        try:
            while (index := take()) is not None:  # this process is a worker too
                done(index, fn(*jobs[index]))
                drain()
        except BaseException as error:  # noqa: BLE001 - an interrupt too: no further job starts
            fail(error, index)
        for thread in dispatchers:
            thread.join()  # the spawned workers' current jobs end first
    if not errors:
        drain()
    if errors:
        raise errors[0]
    return results


def _run_in_worker(fn, job):
    for model in _modules(job):
        _register_output_capturing(model)
    return fn(*job)


def _modules(value, depth: int = 0):
    """The torch modules in a job's arguments (inside tuples, lists and dicts)."""
    if isinstance(value, torch.nn.Module):
        yield value
    elif depth < 4 and isinstance(value, (tuple, list)):
        for item in value:
            yield from _modules(item, depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for item in value.values():
            yield from _modules(item, depth + 1)


def _register_output_capturing(module: torch.nn.Module) -> None:
    """An unpickled transformers model in a fresh process returns no ``hidden_states``: transformers 5
    learns what a model class can record (``_can_record_outputs``) in ``PreTrainedModel.__init__``,
    which unpickling skips, and keeps it per process. Register each model class here as ``__init__``
    would have (a shared-critic policy reads its last hidden state)."""
    try:
        from transformers import PreTrainedModel
        from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY
    except ImportError:  # another transformers: nothing to restore
        return
    for sub in module.modules():
        if isinstance(sub, PreTrainedModel) and not _CAN_RECORD_REGISTRY.get(sub):
            _CAN_RECORD_REGISTRY[sub] = sub._can_record_outputs


def _call(fn, job, index):
    try:
        return fn(*job)
    except BaseException as error:
        _note(error, index)
        raise


def _note(error: BaseException, index: int) -> None:
    if hasattr(error, "add_note"):
        error.add_note(f"(in job {index} of map_runs)")
