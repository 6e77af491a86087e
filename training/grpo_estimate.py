"""What GRPO adds to the memory and time estimate: it writes its own answers before it trains on them.

Memory: the KV cache of every answer generated at once (TRL generates a whole step's answers in one
batch: batch size × gradient accumulation of them, each prompt + max completion length long), and a
second copy of the weights as the reference model when the KL penalty is on for a full fine-tune
(with LoRA the reference is the base with the adapter switched off: no copy).
Time: decoding is one forward per generated token for the whole batch; at small batches that is bound
by reading the weights from memory, not by arithmetic, so each token costs the larger of the two.
"""

from __future__ import annotations

# Memory bandwidth in bytes/s by GPU name fragment, from the vendors' sheets; a CPU reads ~20 GB/s
GPU_BANDWIDTH = {
    "H200": 4.8e12,
    "H100": 3.35e12,
    "A100": 2.0e12,
    "L40S": 0.86e12,
    "L4": 0.3e12,
    "A10": 0.6e12,
    "4090": 1.0e12,
    "T4": 0.32e12,
}
CPU_BANDWIDTH = 20e9
DECODE_EFFICIENCY = 0.3  # share of peak FLOP/s a batched decode step reaches when it is compute-bound


def answers_per_step(spec) -> int:
    hp = spec.hyperparameters
    return hp.batch_size * hp.gradient_accumulation


def kv_cache_bytes(spec, shape, device, prompt_tokens: int) -> float:
    """The KV cache of one step's answers, generated together: keys and values per layer per token."""
    value = 2 if device.kind == "cuda" else 4  # generation runs in the weights' dtype
    tokens = answers_per_step(spec) * (prompt_tokens + spec.method.grpo_max_completion_length)
    return tokens * shape.layers * 2 * shape.kv_heads * shape.head_dim * value


def reference_bytes(spec, shape, device) -> float:
    if spec.method.grpo_beta == 0 or spec.method.type != "full":
        return 0.0
    return shape.parameters() * (2 if device.kind == "cuda" else 4)


def generation_memory(spec, shape, device, prompt_tokens: int) -> float:
    return kv_cache_bytes(spec, shape, device, prompt_tokens) + reference_bytes(spec, shape, device)


def training_row_tokens(spec, prompt_tokens: int) -> int:
    """A GRPO row as the trainer reads it: the prompt and the answer it wrote."""
    return prompt_tokens + spec.method.grpo_max_completion_length


def generation_seconds(spec, shape, device, steps: int) -> float:
    """Seconds spent writing answers over `steps` optimizer steps."""
    from training.estimate import peak_flops

    weight_bytes = shape.parameters() * (2 if device.kind == "cuda" else 4)
    if device.kind == "cuda":
        bandwidth = next((bw for name, bw in GPU_BANDWIDTH.items() if name in device.name), 1e12)
    else:
        bandwidth = CPU_BANDWIDTH
    compute = answers_per_step(spec) * 2 * shape.parameters() / (DECODE_EFFICIENCY * peak_flops(device, spec))
    per_token = max(weight_bytes / bandwidth, compute)
    return steps * spec.method.grpo_max_completion_length * per_token / spec.hyperparameters.devices


def training_tokens(spec, steps: int, prompt_tokens: float) -> int:
    """Tokens the policy trains on (each answer with its prompt); the KL penalty adds a reference forward."""
    tokens = steps * answers_per_step(spec) * (prompt_tokens + spec.method.grpo_max_completion_length)
    # The reference forward (2N FLOPs a token) beside LoRA's ~4N training pass: half as much again
    return round(tokens * (1.5 if spec.method.grpo_beta > 0 else 1.0))
