"""Shared fixtures: a project-local model cache and a tiny random model that trains in seconds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Converted models live inside the checkout (git-ignored) so tests never touch the user's cache.
os.environ.setdefault("LATHE_CACHE_DIR", str(ROOT / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Chat tests measure transformers' path unless they ask for llama.cpp (tests/test_gguf.py does): once llama.cpp is
# installed, "auto" would make each job's GGUF on first chat, minutes across the suite
os.environ.setdefault("LATHE_CHAT_ENGINE", "transformers")


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
