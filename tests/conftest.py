"""Shared test set-up: offline hub, headless plotting, the optional published data, a fake
OpenAI-compatible server with a judge client for it, and a saved tiny policy."""

import os

# Before any test module imports datasets/transformers: never try the network (it retries for
# ~25 s here before failing) and never open a window.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No progress bars in test output (notebook kernels started by tests inherit this too).
os.environ.setdefault("STARLING_PROGRESS", "0")
# Everything a test writes under the runs folder (built tiny assets, executed notebooks) goes to a
# fresh folder per test process, never the repository's runs/: a test run neither depends on what an
# earlier one left there nor collides with a concurrent one (or with `make reproduce`).
if "STARLING_RUNS" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["STARLING_RUNS"] = tempfile.mkdtemp(prefix="starling-test-runs-")
    atexit.register(shutil.rmtree, os.environ["STARLING_RUNS"], ignore_errors=True)

# Under pytest-xdist (`make test` runs two workers) each worker gets its share of the cores. Set
# before torch is imported (it reads OMP_NUM_THREADS once) and inherited by the notebook kernels and
# torchrun processes a test starts: oversubscribed OpenMP threads spin and slow every process down.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))

import pytest  # noqa: E402

from starling_lib.paths import shared_data  # noqa: E402

RATING_STRATEGIES = (
    "no_pairwise", "pairwise_no_given_order", "pairwise_not_random",
    "baseline_no_tiebreak", "tiebreak_order_given", "tiebreak_order_given_static_2",
)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` first (a stable sort): with xdist's ``worksteal`` the many short tests
    then end the run and are shared out, so both workers finish at about the same time."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _shared_or_skip(name: str, what: str):
    path = shared_data(name)
    if path is None:
        pytest.skip(f"{what} not present (../shared/data/{name})")
    return path


@pytest.fixture(scope="session")
def ratings_dir():
    """``../shared/data/starling_ratings`` (real GPT-4 rating logs); skips when absent."""
    return _shared_or_skip("starling_ratings", "published rating logs")


@pytest.fixture(scope="session")
def experiments_dir():
    """``../shared/data/starling_experiments`` (the authors' other GPT-4 judge logs); skips when absent."""
    return _shared_or_skip("starling_experiments", "published judge-experiment logs")


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    """The smoke preset's (untrained) tiny policy saved as a model folder (read it, don't write to it)."""
    from starling_lib.config import get_preset
    from starling_lib.policy.pipeline import load_policy

    root = tmp_path_factory.mktemp("policy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STARLING_RUNS", str(root / "runs"))
        model, tokenizer = load_policy(get_preset("smoke"))
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model"


# A key that must never leak (the judge-client tests look for it in caches, logs and reports).
JUDGE_TEST_KEY = "sk-test-LEAKCANARY-7f3a9c2e51b04d86"


@pytest.fixture
def serve():
    """``serve(responder, **kwargs)`` starts a FakeOpenAIServer that stops at the end of the test."""
    from fake_server import FakeOpenAIServer

    servers = []

    def start(*args, server_class=FakeOpenAIServer, **kwargs):
        server = server_class(*args, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_client(tmp_path):
    """``make_client(server, cache="cache.sqlite", **JudgeConfig fields)``: a quiet client with tiny backoffs."""
    from starling_lib.judge import JudgeClient

    clients = []

    def make(server, cache="cache.sqlite", **kwargs):
        kwargs.setdefault("api_key", JUDGE_TEST_KEY)
        kwargs.setdefault("backoff_base_s", 0.001)
        kwargs.setdefault("backoff_max_s", 0.01)
        client = JudgeClient(base_url=server.base_url, cache_path=tmp_path / cache, progress=False,
                             log=lambda line: None, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
