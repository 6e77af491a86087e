"""The estimator reproduces published memory figures on paper, and its suggestions keep the batch."""

from __future__ import annotations

import pytest

from training.estimate import (
    FITS,
    GB,
    WONT_FIT,
    Device,
    estimate_memory,
    estimate_seconds,
    suggestions,
    verdict,
)
from training.sizes import ModelShape
from training.spec import JobSpec

# Llama-2-7B's shape (the model behind LLaMA-Factory's README memory table)
LLAMA_7B = ModelShape(
    vocab=32000, hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32, head_dim=128, tied_embeddings=False
)
A100 = Device(kind="cuda", name="NVIDIA A100-SXM4-80GB", memory_gb=80, bf16=True)
T4 = Device(kind="cuda", name="Tesla T4", memory_gb=15, bf16=False)


def spec(**changes) -> JobSpec:
    base = {"hyperparameters.batch_size": 1, "hyperparameters.context_length": 512, "method.lora_r": 8}
    return JobSpec().with_overrides({**base, **changes})


@pytest.mark.parametrize(
    ("method", "published_gb"),
    [("qlora", 6), ("lora", 16), ("full", 60)],
)
def test_a_7b_model_matches_the_published_table_within_20_percent(method, published_gb):
    """LLaMA-Factory's README: 7B QLoRA 4-bit ≈ 6 GB, LoRA 16-bit ≈ 16 GB, full bf16 ≈ 60 GB (short context)."""
    estimate = estimate_memory(spec(**{"method.type": method}), LLAMA_7B, A100)
    assert estimate.total / GB == pytest.approx(published_gb, rel=0.20), estimate.lines()


def test_the_breakdown_explains_where_memory_goes():
    lora = estimate_memory(spec(), LLAMA_7B, A100)
    assert lora.weights > 10 * lora.trainable_state  # LoRA: the frozen base dominates
    long = estimate_memory(
        spec(
            **{
                "hyperparameters.context_length": 8192,
                "hyperparameters.batch_size": 8,
                "hyperparameters.gradient_checkpointing": "off",
            }
        ),
        LLAMA_7B,
        A100,
    )
    assert long.activations > long.weights  # at long context activations take over (peft#1514)
    checkpointed = estimate_memory(
        spec(
            **{
                "hyperparameters.context_length": 8192,
                "hyperparameters.batch_size": 8,
                "hyperparameters.gradient_checkpointing": "on",
            }
        ),
        LLAMA_7B,
        A100,
    )
    assert checkpointed.activations < long.activations / 5


def test_wont_fit_comes_with_changes_that_keep_the_effective_batch():
    heavy = spec(
        **{
            "method.type": "full",
            "hyperparameters.batch_size": 8,
            "hyperparameters.gradient_accumulation": 2,
            "hyperparameters.gradient_checkpointing": "off",
        }
    )
    assert verdict(estimate_memory(heavy, LLAMA_7B, T4), T4) == WONT_FIT
    options = suggestions(heavy, LLAMA_7B, T4)
    labels = [label for label, _, _ in options]
    assert "QLoRA (4-bit base)" in labels and "micro-batch 4 with accumulation 4" in labels
    assert "gradient checkpointing on (~30% slower)" in labels
    for _label, changed, _ in options:
        hp = changed.hyperparameters
        assert hp.batch_size * hp.gradient_accumulation == 16
    sizes = [float(summary.split(" GB")[0]) for _, _, summary in options]
    assert sizes == sorted(sizes)  # the biggest saving first
    light = spec(**{"method.type": "qlora"})  # QLoRA at micro-batch 1 fits a 15 GB T4
    assert verdict(estimate_memory(light, LLAMA_7B, T4), T4) == FITS


def test_time_follows_flops_over_achieved_throughput():
    lora, full = spec(), spec(**{"method.type": "full"})
    tokens = 1_000_000
    assert estimate_seconds(full, LLAMA_7B, A100, tokens) > estimate_seconds(lora, LLAMA_7B, A100, tokens)
    measured = estimate_seconds(lora, LLAMA_7B, A100, tokens, efficiency=0.6)
    assert measured == pytest.approx(estimate_seconds(lora, LLAMA_7B, A100, tokens, efficiency=0.3) / 2)


def test_fsdp_divides_weights_and_optimizer_state_by_the_devices_and_keeps_the_rest():
    """Full sharding keeps 1/N of the weights, gradients and AdamW states on each device, plus what is whole at a
    time (embeddings and head, two decoder layers); activations, logits and overhead are per device as before."""
    ddp = estimate_memory(spec(**{"method.type": "full", "hyperparameters.devices": 4}), LLAMA_7B, A100)
    fsdp = estimate_memory(
        spec(**{"method.type": "full", "hyperparameters.devices": 4, "hyperparameters.distributed": "fsdp"}),
        LLAMA_7B,
        A100,
    )
    gathered = (LLAMA_7B.embedding_parameters() + 2 * LLAMA_7B.layer_parameters()) * 2  # bf16 on the GPU
    assert fsdp.weights == pytest.approx(ddp.weights / 4 + gathered)
    assert fsdp.trainable_state == pytest.approx(ddp.trainable_state / 4)
    assert (fsdp.activations, fsdp.logits, fsdp.overhead) == (ddp.activations, ddp.logits, ddp.overhead)
    # 7B full bf16: 8 bytes per parameter of weights + gradients + AdamW (50 GiB), a quarter each (12.6 GiB),
    # plus 1.2 GiB whole at a time
    assert (fsdp.weights + fsdp.trainable_state) / GB == pytest.approx(13.8, rel=0.05)
    assert fsdp.total < 0.4 * ddp.total


def test_a_full_fine_tune_that_wont_fit_on_each_device_is_offered_fsdp():
    big = spec(**{"method.type": "full", "hyperparameters.devices": 4})
    options = {label: changed for label, changed, _ in suggestions(big, LLAMA_7B, T4)}
    sharded = options["shard the model over the 4 devices (fsdp)"]
    assert sharded.hyperparameters.distributed == "fsdp"
    assert estimate_memory(sharded, LLAMA_7B, T4).total < 0.5 * estimate_memory(big, LLAMA_7B, T4).total
    # one device cannot shard, and qlora is not offered fsdp
    assert not any("fsdp" in label for label, _, _ in suggestions(spec(**{"method.type": "full"}), LLAMA_7B, T4))
    qlora = spec(**{"method.type": "qlora", "hyperparameters.devices": 4, "hyperparameters.batch_size": 64})
    assert not any("fsdp" in label for label, _, _ in suggestions(qlora, LLAMA_7B, T4))
