"""Will it fit, and how long will it take? A memory and time estimate from the model's config alone.

Memory follows M = W + S + T·(A + G) + O (shared/notes/memory-and-time.md): weights, trainable
state (gradients and AdamW), tokens per micro-batch times activations and logits per token, and
framework overhead. Each term is kept, so a person sees *why* a job does not fit, and each
suggestion keeps the effective batch size (micro-batch × accumulation) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from training import grpo_estimate, jobdir
from training.sizes import ModelShape
from training.spec import JobSpec, sharding_problems

GB = 2**30
FITS, TIGHT, WONT_FIT = "Fits", "Tight", "Won't fit"
LOGIT_BYTES = 12  # bf16 logits upcast to fp32 in the loss, per vocabulary entry per token
# On a CPU the scored logits, the loss's fp32 log-softmax, TRL's entropy beside them and their gradients:
# 23-24 B per entry of an answer token, measured on a 1-layer model with the embedded vocabulary (where the
# logits are nearly all of the peak; 2 x 512 tokens, answer share 0.93) in fp32 (1109 MB) and under bf16
# autocast (1071 MB) alike
CPU_LOGIT_BYTES = 24
QLORA_LINEAR_BYTES = 0.52  # NF4 with double quantisation, per Linear parameter
# Dense bf16 peak TFLOP/s by GPU name fragment (fp16 for the T4), from the vendors' sheets
GPU_PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125, "4090": 165, "T4": 65}
CPU_GFLOPS_PER_CORE = {"bf16": 200.0, "fp32": 47.0}  # measured GEMM on this project's AVX-512-BF16 CPU


@dataclass(frozen=True)
class Device:
    """What the estimate is for: a GPU (name, memory) or the CPU (RAM)."""

    kind: str  # "cuda" or "cpu"
    name: str
    memory_gb: float  # free memory the job may use
    bf16: bool
    cores: int = 1


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    trainable_state: float
    activations: float
    logits: float
    overhead: float
    generation: float = 0.0  # GRPO: the KV cache of the answers it writes, and a reference model if kept

    @property
    def total(self) -> float:
        return self.weights + self.trainable_state + self.activations + self.logits + self.overhead + self.generation

    def lines(self) -> list[str]:
        parts = [
            ("weights", self.weights),
            ("gradients + optimizer", self.trainable_state),
            ("activations", self.activations),
            ("logits", self.logits),
            ("overhead", self.overhead),
        ]
        if self.generation:
            parts.append(("generation (KV cache of the answers, reference model)", self.generation))
        return [f"{name}: {value / GB:.2f} GB" for name, value in parts] + [f"total: {self.total / GB:.2f} GB"]


@dataclass(frozen=True)
class PrecisionPath:
    """How one way of computing keeps its numbers, in bytes; each measured on its own path
    (benchmarks/estimate_accuracy.py runs every configuration on `auto` and on forced fp32).

    weights: per base parameter as loaded; value: per saved activation value; logits: per vocabulary
    entry per answer token of the micro-batch (TRL's head scores only the tokens the loss trains on; the
    loss keeps fp32 copies and their gradients); overhead: share of the weights' bytes added to the peak;
    checkpointed_heap: per hidden value per layer, the memory adapter training with gradient checkpointing
    holds on the heap beyond its live tensors.
    """

    name: str
    weights: float
    value: float
    logits: float
    overhead: float = 0.0
    checkpointed_heap: float = 0.0


# Measured on the embedded model (benchmarks/estimate_accuracy.py, docs/benchmarks.md):
# - fp32: everything in 4 bytes, the loss's log-softmax, its gradient and the head's gradient beside the
#   fp32 logits.
# - CPU bf16 autocast: fp32 weights; autocast keeps fp32 inputs beside their bf16 casts, so a saved value
#   costs about 5 bytes, not 2; the logits come out bf16 and are upcast for the loss.
# - GPU bf16/fp16 weights: the model is loaded in the compute dtype.
# - 4-bit (QLoRA): NF4 Linear weights, 16-bit embeddings, bf16 compute.
PATHS = {
    # Per saved value, from the peaks of benchmarks/estimate_accuracy.py's seven configurations: autocast 5 B,
    # fitted to all seven (an fp32 input beside its bf16 cast; a padded micro-batch takes attention's masked
    # path: batch 8 x 424 tokens peaked at 6.1 GB padded, 5.5 GB unpadded); fp32 8 B, from that batch-8 job
    # (8.5 GB). fp32's overhead is a quarter of the weights (half over-counted the short jobs by 20%).
    # fp32 LoRA with checkpointing (batch 4 x 512) peaked at 4.0-4.3 GB over five runs, and at 2.7 GB with
    # glibc's MALLOC_MMAP_THRESHOLD_=65536 (which trains 34% slower): the rest is freed heap glibc can neither
    # reuse nor return, about 24 B per hidden value per layer (fitted to that job; autocast and full
    # fine-tuning with checkpointing did not show it; docs/benchmarks.md)
    "fp32": PrecisionPath("fp32", weights=4, value=8, logits=CPU_LOGIT_BYTES, overhead=0.25, checkpointed_heap=24),
    "bf16-autocast": PrecisionPath("bf16-autocast", weights=4, value=5, logits=CPU_LOGIT_BYTES, overhead=0.5),
    "bf16-weights": PrecisionPath("bf16-weights", weights=2, value=2, logits=LOGIT_BYTES),
    "4-bit": PrecisionPath("4-bit", weights=QLORA_LINEAR_BYTES, value=2, logits=LOGIT_BYTES),
}


def precision_of(spec: JobSpec, device: Device) -> str:
    """The precision the job computes in on this device: `auto` resolves as training/hardware.plan_for does."""
    precision = spec.hyperparameters.precision
    if precision == "auto":
        precision = "bf16" if device.bf16 or device.kind == "cuda" else "fp32"
    return precision


def precision_path(spec: JobSpec, device: Device) -> PrecisionPath:
    """Which of PATHS a job takes: QLoRA's 4-bit base; on a GPU 16-bit weights (or fp32); on a CPU fp32
    weights, computing in fp32 or under bf16 autocast."""
    precision = precision_of(spec, device)
    if spec.method.type == "qlora":
        path = PATHS["4-bit"]
        if device.kind == "cpu":  # the CPU computes QLoRA's adapters and activations like the rest of its path
            cpu = PATHS["fp32" if precision == "fp32" else "bf16-autocast"]
            return replace(cpu, name="4-bit", weights=path.weights)
        return path
    if precision == "fp32":
        return PATHS["fp32"]
    return PATHS["bf16-weights"] if device.kind == "cuda" else PATHS["bf16-autocast"]


def bytes_per_value(spec: JobSpec, device: Device) -> float:
    """Bytes per saved activation value on the job's precision path."""
    return precision_path(spec, device).value


def estimate_memory(
    spec: JobSpec, shape: ModelShape, device: Device, tokens_per_row: int | None = None, answer_share: float = 1.0
) -> MemoryEstimate:
    """Peak training memory. `tokens_per_row`: the padded length of a micro-batch's rows (default: the
    context length); `answer_share`: the share of tokens whose logits are scored (the rest are masked)."""
    method, hp = spec.method, spec.hyperparameters
    path = precision_path(spec, device)
    total = shape.parameters()
    weight_bytes = path.weights if method.type != "qlora" else (2 if device.kind == "cuda" else 4)
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)
    lora = shape.lora_parameters(method.lora_r, method.target_modules)
    if method.type == "full":
        # weights + gradients in the weights' dtype, and AdamW's two moments in it too
        weights, state = total * weight_bytes, total * weight_bytes * 3
    elif method.type == "qlora":
        weights = (total - embeddings) * QLORA_LINEAR_BYTES + embeddings * 2
        state = lora * 8  # TRL keeps QLoRA adapters in bf16: weight, gradient, two moments
    else:
        weights, state = total * weight_bytes, lora * 16  # fp32 adapters: 4 + 4 + 8
    if hp.distributed == "fsdp" and hp.devices > 1:
        weights, state = sharded(weights, state, shape, weight_bytes, hp.devices)
    tokens = hp.batch_size * min(tokens_per_row or hp.context_length, hp.context_length)
    generation = 0.0
    if spec.method.objective in ("dpo", "orpo", "cpo", "kto"):
        tokens *= 2  # pairs: the better and the worse answer go through together; KTO: the answer and its KL pair
    elif spec.method.objective == "grpo":  # rows are prompts; the trainer reads each with the answer it wrote
        prompt_tokens = min(tokens_per_row or hp.context_length, hp.context_length)
        tokens = hp.batch_size * grpo_estimate.training_row_tokens(spec, prompt_tokens)
        answer_share = spec.method.grpo_max_completion_length / grpo_estimate.training_row_tokens(spec, prompt_tokens)
        generation = grpo_estimate.generation_memory(spec, shape, device, prompt_tokens)
    value = path.value
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_heads * shape.head_dim
    per_layer = value * (6 * h + 2 * kv + 4 * i)
    if method.lora_dropout > 0 and method.type != "full":
        per_layer += value * (6 * h + i)  # PEFT keeps a dropped copy of each adapted input
    checkpointing = hp.gradient_checkpointing == "on" or (
        hp.gradient_checkpointing == "auto" and device.kind == "cuda" and total >= 1_000_000_000
    )
    if checkpointing:
        heap = path.checkpointed_heap * h * shape.layers if method.type != "full" else 0.0
        per_token = value * h * shape.layers + 2 * per_layer + heap
    else:
        per_token = shape.layers * per_layer
    activations = tokens * per_token
    logits = tokens * answer_share * shape.vocab * path.logits
    if device.kind == "cuda":
        overhead = 1.0 * GB + (0.5 * GB if method.type == "qlora" else 0)
    else:
        overhead = path.overhead * total * weight_bytes  # loading leaves part of a second copy in the peak
    return MemoryEstimate(weights, state, activations, logits, overhead, generation)


def sharded(weights: float, state: float, shape: ModelShape, weight_bytes: int, devices: int) -> tuple[float, float]:
    """Per-device weights and trainable state under FSDP full sharding: each device keeps 1/N of both,
    plus what is whole at a time: the root unit (embeddings, head, final norm), which stays gathered
    through the step, and two decoder layers (the one computing and the one prefetched)."""
    gathered = (shape.embedding_parameters() + 2 * shape.layer_parameters()) * weight_bytes
    return weights / devices + gathered, state / devices


def verdict(estimate: MemoryEstimate, device: Device) -> str:
    available = device.memory_gb * GB
    if estimate.total <= 0.85 * available:
        return FITS
    return TIGHT if estimate.total <= available else WONT_FIT


def suggestions(spec: JobSpec, shape: ModelShape, device: Device, **data) -> list[tuple[str, JobSpec, str]]:
    """Changes that keep the effective batch size, each with its new estimate and verdict, best first."""
    hp, options = spec.hyperparameters, []
    if hp.batch_size > 1:
        smaller = max(1, hp.batch_size // 2)
        options.append(
            (
                f"micro-batch {smaller} with accumulation {hp.gradient_accumulation * hp.batch_size // smaller}",
                {
                    "hyperparameters.batch_size": smaller,
                    "hyperparameters.gradient_accumulation": hp.gradient_accumulation * hp.batch_size // smaller,
                },
            )
        )
    if hp.gradient_checkpointing != "on":
        options.append(("gradient checkpointing on (~30% slower)", {"hyperparameters.gradient_checkpointing": "on"}))
    if hp.context_length > 256:
        options.append(
            (f"context length {hp.context_length // 2}", {"hyperparameters.context_length": hp.context_length // 2})
        )
    if spec.method.type != "qlora":
        options.append(("QLoRA (4-bit base)", {"method.type": "qlora", "output.merge_adapter": False}))
    if spec.method.type != "full" and spec.method.target_modules == "all-linear":
        options.append(("adapters on attention only", {"method.target_modules": "attention"}))
    if hp.devices > 1 and hp.distributed == "ddp" and not sharding_problems(spec, distributed="fsdp"):
        options.append(
            (f"shard the model over the {hp.devices} devices (fsdp)", {"hyperparameters.distributed": "fsdp"})
        )
    results, now = [], estimate_memory(spec, shape, device, **data).total
    for label, change in options:
        changed = spec.with_overrides(change)
        new = estimate_memory(changed, shape, device, **data)
        if new.total < 0.95 * now:  # a change that saves nothing here is not worth suggesting
            results.append((label, changed, f"{new.total / GB:.1f} GB, {verdict(new, device)}"))
    return sorted(results, key=lambda item: estimate_memory(item[1], shape, device, **data).total)


def flops_per_token(spec: JobSpec, shape: ModelShape) -> float:
    n = shape.parameters()
    flops = 6 * n if spec.method.type == "full" else 4 * n
    if spec.hyperparameters.gradient_checkpointing == "on":
        flops += 2 * n  # the forward runs again during the backward
    return flops


def efficiency_prior(spec: JobSpec, shape: ModelShape, device: Device) -> float:
    """The share of peak a run like this usually achieves, before a measurement replaces it."""
    if device.kind == "cpu":
        return 0.45  # our LoRA on the 135M model reached ~0.5 of the bf16 GEMM peak here (docs/benchmarks.md)
    prior = 0.20 if spec.method.type == "qlora" else 0.30
    if spec.hyperparameters.batch_size * spec.hyperparameters.context_length < 1024:
        prior /= 2
    return prior * (0.6 if shape.parameters() < 1_000_000_000 else 1.0)


def peak_flops(device: Device, spec: JobSpec) -> float:
    if device.kind == "cpu":
        # The GEMM speed follows the precision the job computes in (bf16 autocast or fp32), which is
        # not the bytes per *saved* value that bytes_per_value reports on a CPU
        chosen = spec.hyperparameters.precision
        precision = ("bf16" if device.bf16 else "fp32") if chosen == "auto" else chosen
        precision = precision if precision in CPU_GFLOPS_PER_CORE else "fp32"
        return CPU_GFLOPS_PER_CORE[precision] * 1e9 * device.cores
    peak = next((tf for fragment, tf in GPU_PEAK_TFLOPS.items() if fragment in device.name), 100)
    return peak * 1e12


def estimate_seconds(spec: JobSpec, shape: ModelShape, device: Device, tokens: int, efficiency: float | None = None):
    """Seconds to train `tokens` tokens: FLOPs ÷ (efficiency × peak). `efficiency` from a measurement, or the prior."""
    achieved = (efficiency or efficiency_prior(spec, shape, device)) * peak_flops(device, spec)
    return tokens * flops_per_token(spec, shape) / achieved / spec.hyperparameters.devices  # data parallel


def devices_found() -> list[Device]:
    """Every GPU with its free memory, or the CPU with its available RAM."""
    import psutil

    from training.hardware import detect_hardware

    hardware = detect_hardware()
    if hardware.gpus:
        return [Device("cuda", g.name, g.free_gb, g.bf16) for g in hardware.gpus]
    available = psutil.virtual_memory().available / GB
    return [Device("cpu", "CPU", available, hardware.cpu_bf16, hardware.cpu_cores)]


@dataclass(frozen=True)
class Preview:
    """Everything the GPU preview shows for one device."""

    device: Device
    memory: MemoryEstimate
    verdict: str
    suggestions: list[tuple[str, JobSpec, str]]
    seconds: float
    tokens: int
    measured_tokens_per_second: float | None = None
    generation_seconds: float = 0.0  # GRPO: the part of `seconds` spent writing answers

    def lines(self, price_per_hour: float | None = None) -> list[str]:
        where = f"{self.device.name} ({self.device.memory_gb:.1f} GB free)"
        lines = [f"{self.verdict} on {where}: about {self.memory.total / GB:.1f} GB needed"]
        lines += [f"  {line}" for line in self.memory.lines()]
        minutes = self.seconds / 60
        how = (
            f"measured here: {self.measured_tokens_per_second:.0f} tokens/s"
            if self.measured_tokens_per_second
            else "typical speed for such runs, not measured"
        )
        lines.append(f"time: about {minutes:.0f} min for {self.tokens:,} tokens ({how})")
        if self.generation_seconds:
            lines.append(f"  of which about {self.generation_seconds / 60:.0f} min writing answers (GRPO generation)")
        if price_per_hour:
            lines.append(f"cost: about {price_per_hour * self.seconds / 3600:.2f} at {price_per_hour:g} per hour")
        if self.verdict != FITS:
            lines.append("to make it fit, keeping the effective batch size:")
            lines += [f"  - {label}: {summary}" for label, _, summary in self.suggestions[:5]]
        return lines


def preview_job(
    spec: JobSpec,
    token: str | None = None,
    devices: list[Device] | None = None,
    measured_tokens_per_second: float | None = None,
) -> list[Preview]:
    """The estimate for the spec on each device found, from the model's config and the real data.
    A measured speed (`measure_speed`, on this machine) replaces the efficiency prior for the time."""
    from training.data.preview import summarize
    from training.errors import UserError
    from training.models import starting_point
    from training.sizes import read_shape

    reference = starting_point(spec)[0]
    shape = read_shape(reference)
    if shape is None:
        shape = fetch_shape(reference, spec.model.revision, token)
    if shape is None:
        raise UserError(
            "model.name_or_path: its config.json could not be read, so memory cannot be estimated. "
            "Check access in step 1 (a gated model needs your token), or use a local model."
        )
    summary = summarize(spec, token)
    row_tokens = min(summary.longest_tokens, spec.hyperparameters.context_length)
    previews = []
    for device in devices or devices_found():
        memory = estimate_memory(spec, shape, device, tokens_per_row=row_tokens)
        found = verdict(memory, device)
        options = suggestions(spec, shape, device, tokens_per_row=row_tokens) if found != FITS else []
        tokens, generating = summary.total_tokens, 0.0
        if spec.method.objective == "grpo":  # it trains on the answers it writes, and writing them takes time
            mean_prompt = summary.tokens_per_epoch / max(summary.train_rows, 1)
            tokens = grpo_estimate.training_tokens(spec, summary.steps, mean_prompt)
            generating = grpo_estimate.generation_seconds(spec, shape, device, summary.steps)
        seconds = estimate_seconds(spec, shape, device, tokens) + generating
        if measured_tokens_per_second:
            seconds = tokens / measured_tokens_per_second  # a measured GRPO step already includes its writing
        previews.append(
            Preview(device, memory, found, options, seconds, tokens, measured_tokens_per_second, generating)
        )
    return previews


def fetch_shape(repo_id: str, revision: str | None, token: str | None) -> ModelShape | None:
    """Download just config.json of a Hub model (a few KB, with the person's token) and read its shape."""
    import json
    from pathlib import Path

    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, "config.json", revision=revision, token=token or False)
        return ModelShape.from_config(json.loads(Path(path).read_text()))
    except Exception:  # noqa: BLE001 - any failure means "no estimate", which the caller explains
        return None


MEASURE_STEPS = 4  # the first step warms up (allocations, kernels); the rest give the speed


def measure_speed(manager, spec: JobSpec, token: str | None = None, timeout: float = 600.0) -> float:
    """Tokens per second of a few real steps of this job, run by a worker like any job (then deleted)."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from training.errors import UserError

    probe = spec.with_overrides(
        {
            "name": f"{spec.name}-measure",
            "hyperparameters.max_steps": MEASURE_STEPS,
            "output.merge_adapter": False,
            "output.evaluate": False,  # only the steps' speed is wanted: the evaluation would add minutes
        }
    )
    job_dir = Path(tempfile.mkdtemp(prefix="lathe-measure-"))
    try:
        job_id = manager.start(probe, secrets={"HF_TOKEN": token} if token else None, job_dir=job_dir)
        snapshot = manager.wait(job_id, timeout=timeout)
        if snapshot.state != jobdir.COMPLETED:
            manager.stop(job_id)
            raise UserError(f"The measuring run did not finish ({snapshot.state}): {snapshot.message}".strip())
        records = [json.loads(line) for line in (job_dir / jobdir.EVENTS).read_text().splitlines() if line]
        rates = [r["tokens_per_second"] for r in records if r["type"] == "progress" and r["step"] > 1]
        if not rates:
            raise UserError("The measuring run logged no speed; try again.")
        return sum(rates) / len(rates)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
