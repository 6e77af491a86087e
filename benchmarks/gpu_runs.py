"""The pieces `benchmarks/gpu_check.py` is made of: models from shipped config.json files with random
weights, synthetic token rows of controlled lengths, one measured training run, and the FLOP count.

Speed and memory do not depend on the weights' values, so no download is needed: a config.json from
`benchmarks/gpu_configs/` (the published values) builds the real architecture with random weights, and
rows of random token ids of chosen lengths stand in for data. Every run goes through our engine's
`build_trainer` (or, for the baseline, plain `SFTTrainer` with TRL's defaults), so what is measured is
what a Lathe job runs.
"""

from __future__ import annotations

import gc
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

CONFIG_DIR = Path(__file__).resolve().parent / "gpu_configs"
PROMPT_SHARE = 0.2  # the first fifth of each row is "prompt": masked out of the loss, as in a chat row
SMOKE_LAYERS = 2  # the CPU smoke keeps each architecture's widths and vocabulary but only this many layers


def model_config(name: str, layers: int | None = None, vocab: int | None = None) -> dict:
    """The published config.json of `name` (a file in gpu_configs/); the CPU smoke cuts it to `layers` layers
    and a `vocab` no larger than the tokenizer's (the widths stay the published ones)."""
    config = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    if layers:
        config["num_hidden_layers"] = layers
        config["max_window_layers"] = min(layers, config.get("max_window_layers", layers))
    if vocab:
        config["vocab_size"] = min(vocab, config["vocab_size"])
    return config


def build_model(config: dict, dtype: torch.dtype, device: str, attention: str | None = None):
    """The architecture of `config` with random weights, created directly on `device` (no CPU copy of an 8B)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.for_model(**config)
    extra = {"attn_implementation": attention} if attention else {}
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(hf_config, dtype=dtype, **extra)


def synthetic_rows(count: int, shortest: int, longest: int, vocab: int, seed: int = 0):
    """`count` rows of random token ids, lengths uniform in [shortest, longest]; the prompt part is masked (-100)."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows = {"input_ids": [], "labels": []}
    for _ in range(count):
        length = rng.randint(shortest, longest)
        ids = [rng.randrange(3, vocab) for _ in range(length)]  # 0-2 are the tokenizer's special tokens
        prompt = int(length * PROMPT_SHARE)
        rows["input_ids"].append(ids)
        rows["labels"].append([-100] * prompt + ids[prompt:])
    return Dataset.from_dict(rows)


def row_statistics(rows) -> dict:
    """What the FLOP count and the estimate need from the rows: mean length, Σn²/Σn, scored share, longest."""
    lengths = [len(ids) for ids in rows["input_ids"]]
    scored = sum(sum(label != -100 for label in labels) for labels in rows["labels"])
    return {
        "mean_length": sum(lengths) / len(lengths),
        "attention_length": sum(n * n for n in lengths) / sum(lengths),
        "answer_share": scored / sum(lengths),
        "longest": max(lengths),
    }


def train_flops(shape, method: str, tokens: float, stats: dict, lora_parameters: int = 0) -> float:
    """Model FLOPs of training on `tokens` real (non-padding) tokens, recomputation not counted (MFU, not HFU).

    Per token, a matmul of a d_in × d_out weight costs 2·d_in·d_out forward and twice that backward for the
    input's gradient; full fine-tuning adds as much again for the weight's gradient. So, with
    N_body = L · Σ(d_in·d_out) over the 7 projections of a block, and N_head = vocab · hidden:

        FLOPs = k · N_body · tokens + k · N_head · scored_tokens + 6 · L · d_q · Σ n² + 6 · N_lora · tokens

    with k = 6 for full fine-tuning and 4 for LoRA/QLoRA (the frozen weights get no gradient), the LM head
    applied only to scored (answer) positions (TRL projects only those on a GPU), causal attention costing
    2·n²·d_q per layer forward for a row of n tokens (QKᵀ and AV, half of each masked) and 3× that with its
    backward, and the adapters' own matmuls (6 per parameter per token). Embedding lookups, norms and
    activations are not counted: they are a few percent and not matmul work.
    """
    k = 6 if method == "full" else 4
    body = shape.layers * sum(n_in * n_out for n_in, n_out in shape.linear_shapes().values())
    head = shape.vocab * shape.hidden
    attention = 6 * shape.layers * shape.heads * shape.head_dim * stats["attention_length"] * tokens
    adapters = 6 * lora_parameters * tokens if method != "full" else 0
    return k * body * tokens + k * head * tokens * stats["answer_share"] + attention + adapters


class MemoryMeter:
    """Peak memory of one run. On a GPU: the caching allocator's peaks (allocated and reserved).
    On the CPU (the smoke): the process's peak RSS above its level before the run, sampled every 10 ms."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self) -> MemoryMeter:
        if self.device == "cuda":
            gc.collect()  # cycles (trainer <-> callbacks) can hold an earlier run's tensors
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            # Tensors still alive from an earlier run (there should be none) are not this run's: taken off below
            self.leftover = torch.cuda.memory_allocated()
        else:
            self.leftover = 0
            import psutil

            self._process = psutil.Process()
            self.baseline = self._process.memory_info().rss
            self._peak, self._stop = self.baseline, threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.allocated = torch.cuda.max_memory_allocated() - self.leftover
            self.reserved = torch.cuda.max_memory_reserved() - self.leftover
        else:
            self._stop.set()
            self._thread.join()
            self.allocated = self.reserved = self._peak - self.baseline


class StepClock(TrainerCallback):
    """When training began and each optimizer step ended (after the device finished it), the real tokens trained
    so far (TRL's `num_tokens`, which counts non-padding tokens) and the logged losses."""

    def __init__(self, device: str):
        self.device = device
        self.began = 0.0
        self.ends: list[float] = []
        self.tokens: dict[int, int] = {0: 0}
        self.losses: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.device == "cuda":
            torch.cuda.synchronize()  # the step's kernels are queued, not done, when the callback fires
        self.ends.append(time.monotonic())
        # transformers saves a checkpoint after the last step of a save_strategy="steps" run: a few GB of
        # writes for a full fine-tune that the check neither times nor needs (callbacks after the defaults win)
        control.should_save = False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "num_tokens" in logs:
            self.tokens[state.global_step] = int(logs["num_tokens"])
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


@dataclass
class RunResult:
    """What one measured training run gives back."""

    began: float
    step_ends: list[float]
    tokens_at: dict[int, int]
    losses: list[float]
    allocated: int
    reserved: int
    build_seconds: float
    notes: list[str] = field(default_factory=list)

    def seconds(self, first: int, last: int) -> float:
        """Wall time of steps first+1 .. last (steps are numbered from 1; first=0 counts from the train start)."""
        start = self.began if first == 0 else self.step_ends[first - 1]
        return self.step_ends[last - 1] - start

    def tokens(self, first: int, last: int) -> int:
        return self.tokens_at[last] - self.tokens_at[first]

    def rate(self, first: int, last: int) -> float:
        return self.tokens(first, last) / max(self.seconds(first, last), 1e-9)


def free_memory(device: str) -> None:
    """Let the next run start from an empty GPU. (On the CPU smoke a full collection costs ~0.4 s and the
    RSS it measures means little, so it is left to Python.)"""
    if device == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def quiet(trainer):
    """No per-step log dicts on stdout: the check prints its own table (and a GPU run's output tail is short)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def train_ours(spec, model, tokenizer, rows, work: Path, config_override=None) -> RunResult:
    """Our engine's trainer (`training.engine.build_trainer`) over an already built model.
    `config_override(args) -> args` changes the TRL config the engine made (the Liger comparison uses it)."""
    from training import engine
    from training.hardware import plan_for

    plan = plan_for(spec)
    clock = StepClock(plan.device)
    original = engine.CONFIG_FOR["sft"]
    if config_override:
        engine.CONFIG_FOR["sft"] = lambda *a, **k: config_override(original(*a, **k))
    try:
        started = time.monotonic()
        trainer = quiet(engine.build_trainer(spec, plan, model, tokenizer, rows, None, [clock], work))
        built = time.monotonic() - started
    finally:
        engine.CONFIG_FOR["sft"] = original
    trainer.train()
    del trainer
    return RunResult(clock.began, clock.ends, clock.tokens, clock.losses, 0, 0, built)


def train_plain(model, tokenizer, rows, work: Path, steps: int, batch: int, context: int, lora_config, device: str):
    """The plain TRL recipe of the tutorials: `SFTTrainer` with `SFTConfig`'s defaults (bf16 on a GPU,
    gradient checkpointing on, random batches padded to their longest row). Only what a tutorial sets is set,
    plus logging every step so that the clock has tokens at each step (ours logs every step too)."""
    from trl import SFTConfig, SFTTrainer

    clock = StepClock(device)
    cpu = {"use_cpu": True, "bf16": False} if device == "cpu" else {}  # TRL refuses bf16 defaults on most CPUs
    args = SFTConfig(
        output_dir=str(work),
        per_device_train_batch_size=batch,
        max_steps=steps,
        max_length=context,
        learning_rate=2e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        **cpu,
    )
    started = time.monotonic()
    trainer = SFTTrainer(  # the same peft_config as ours: LoRA r=16 on all linear layers
        model=model,
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=lora_config,
        callbacks=[clock],
    )
    built = time.monotonic() - started
    quiet(trainer).train()
    del trainer
    return RunResult(clock.began, clock.ends, clock.tokens, clock.losses, 0, 0, built)
