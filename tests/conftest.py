"""Shared fixtures: a project-local model cache and a tiny random model that trains in seconds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Converted models live inside the checkout (git-ignored) so tests never touch the user's cache.
os.environ.setdefault("LATHE_CACHE_DIR", str(ROOT / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes share the two cores: torch's default of one thread per core in each (and in every
    # worker they start, which inherits this) oversubscribes them, and OpenMP threads spinning against each
    # other made a training step ~15x slower here. One thread per process keeps both cores busy without it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# Chat tests measure transformers' path unless they ask for llama.cpp (tests/test_gguf.py does): once llama.cpp is
# installed, "auto" would make each job's GGUF on first chat, minutes across the suite
os.environ.setdefault("LATHE_CHAT_ENGINE", "transformers")


# `make test` runs the suite in two processes (pytest-xdist, whole files per process). Files are handed
# out in collection order, so the longest ones go first and the two processes finish together.
LONGEST_FIRST = [
    "test_kill_resume.py",
    "test_quickstart.py",
    "test_grpo.py",
    "test_wizard_e2e.py",
    "test_experiments.py",
    "test_gguf.py",
    "test_browser.py",
    "test_kto.py",
    "test_token_hygiene.py",
    "test_cli_signals.py",
    "test_trackers.py",
    "test_api_load.py",
    "test_preferences.py",
    "test_methods.py",
    "test_cli.py",
    "test_turns.py",
    "test_multiprocess.py",
    "test_gpu_check.py",
]


# Fixtures that train a model: a test that asks for one trains, so it is marked `trains` (left out of
# `make test-fast`) wherever it is, as tests that train in their own body are marked by hand.
TRAINING_FIXTURES = {"quickstart_job", "trained_job", "bundled_job", "app_with_a_finished_job", "tool_job", "cli_sweep"}


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order inside a file
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.trains)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder `build(folder)` fills once per test run, shared by every xdist process: the first to ask
    builds it under a file lock, the others wait and reuse it (a trained job is minutes on a CPU)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each process's own
    folder = root / f"shared-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".built").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    from training.models import embedded_model_dir as convert

    return convert()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_model_dir) -> Path:
    """A 2-layer Llama with the embedded model's tokenizer and chat template (random weights)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_spec(tiny_model_dir):
    """A valid spec over the tiny model and the identity demo, a few steps long."""
    from training.spec import JobSpec

    return JobSpec().with_overrides(
        {
            "name": "tiny",
            "model.name_or_path": str(tiny_model_dir),
            "hyperparameters.max_steps": 4,
            "hyperparameters.batch_size": 4,
            "hyperparameters.learning_rate": 1e-3,
            "hyperparameters.precision": "fp32",
            "output.evaluate": False,  # tests/test_evaluate.py covers the evaluation; the rest skip its minute
        }
    )


@pytest.fixture(scope="session")
def quickstart_job(tmp_path_factory, embedded_model_dir) -> Path:
    """The README's quickstart, trained once per run by `app.py train` (about two minutes of the real
    embedded model): tests of what a trained job can do share it instead of training their own."""
    import subprocess

    def train(folder: Path) -> None:
        job_dir = folder / "quickstart"
        trained = subprocess.run(
            [sys.executable, "app.py", "train", "presets/jobs/quickstart.yaml", "--job-dir", str(job_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert trained.returncode == 0, trained.stderr[-3000:]
        (folder / "train-stdout.txt").write_text(trained.stdout)

    return built_once(tmp_path_factory, "quickstart", train) / "quickstart"
