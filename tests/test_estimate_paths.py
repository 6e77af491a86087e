"""Each precision path has its own measured terms, and a job takes the path it will really run on."""

from __future__ import annotations

import pytest

from training.estimate import PATHS, Device, estimate_memory, precision_path
from training.sizes import ModelShape
from training.spec import JobSpec

SMOLLM2_135M = ModelShape(
    vocab=49152, hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, head_dim=64, tied_embeddings=True
)
CPU_BF16 = Device("cpu", "CPU", 20, bf16=True, cores=2)
CPU_AVX2 = Device("cpu", "CPU", 20, bf16=False, cores=2)
GPU = Device("cuda", "NVIDIA A100", 80, bf16=True)


def job(**changes) -> JobSpec:
    base = {"hyperparameters.batch_size": 8, "hyperparameters.context_length": 512, "method.lora_r": 16}
    return JobSpec().with_overrides({**base, **changes})


@pytest.mark.parametrize(
    ("device", "changes", "expected"),
    [
        (CPU_BF16, {}, "bf16-autocast"),
        (CPU_AVX2, {}, "fp32"),  # auto on a CPU without bf16
        (CPU_BF16, {"hyperparameters.precision": "fp32"}, "fp32"),  # forced: the same path as a CPU without bf16
        (GPU, {}, "bf16-weights"),
        (GPU, {"hyperparameters.precision": "fp32"}, "fp32"),
        (GPU, {"method.type": "qlora", "output.merge_adapter": False}, "4-bit"),
    ],
)
def test_a_job_takes_the_path_it_runs_on(device, changes, expected):
    assert precision_path(job(**changes), device).name == expected


def test_forced_fp32_on_a_bf16_cpu_is_estimated_like_a_cpu_without_bf16():
    forced = estimate_memory(job(**{"hyperparameters.precision": "fp32"}), SMOLLM2_135M, CPU_BF16)
    assert forced == estimate_memory(job(), SMOLLM2_135M, CPU_AVX2)
    assert forced.logits == 8 * 512 * SMOLLM2_135M.vocab * PATHS["fp32"].logits  # answer share 1 by default


def test_only_the_answer_tokens_logits_count():
    """TRL scores only the trained tokens: a job of long prompts and short answers needs little logits
    memory (measured: batch 8 x ~425 tokens at an answer share of 0.02 peaked at 3.5 GB, estimated 3.5)."""
    short_answers = estimate_memory(job(), SMOLLM2_135M, CPU_AVX2, tokens_per_row=512, answer_share=0.05)
    long_answers = estimate_memory(job(), SMOLLM2_135M, CPU_AVX2, tokens_per_row=512, answer_share=0.95)
    assert 0 < short_answers.logits < long_answers.logits / 10
