"""Run one fine-tuning job, top to bottom: data, model, TRL trainer, train, save.

`run_job` talks to the outside world only through `emit(event)` and asks `should_stop()` at
every step boundary; it never touches the UI or the job record. TRL does the training; the
functions here only translate our spec into the library objects (`to_lora_config`,
`to_sft_config`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import trl.trainer.utils as trl_utils
from peft import LoraConfig
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
    TrainerCallback,
)
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from training.bundle import write_bundle
from training.checkpoints import latest_complete_checkpoint, mark_complete, remove_torn
from training.data import build_datasets
from training.data.load import data_summary
from training.errors import UserError
from training.events import Eval, Event, Finished, Log, Progress, Status
from training.hardware import Plan, plan_for, wants_gradient_checkpointing
from training.launch import rank, world_size
from training.model_card import model_card
from training.models import merge_adapters, starting_point
from training.sharding import fsdp_arguments, honour_fsdp_on_cpu, layer_classes
from training.spec import JobSpec
from training.trackers import PROJECT as TRACKER_PROJECT
from training.trackers import prepare_trackers

EVAL_ROWS, EVAL_SAMPLES = 50, 3  # enough to tell, small enough to take about a minute on a CPU
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def to_lora_config(spec: JobSpec):
    """The PEFT LoRA config for lora/qlora jobs; None for full fine-tuning."""
    method = spec.method
    if method.type == "full":
        return None
    if method.target_modules == "all-linear":
        targets: str | list[str] = "all-linear"
    elif method.target_modules == "attention":
        targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    else:
        targets = method.target_modules.split(",")
    return LoraConfig(
        r=method.lora_r,
        lora_alpha=method.lora_alpha,
        lora_dropout=method.lora_dropout,
        target_modules=targets,
        use_dora=method.use_dora,
        use_rslora=method.use_rslora,
        # A reward model is a sequence classifier: PEFT then also trains and saves its score head
        task_type="SEQ_CLS" if method.objective == "reward" else "CAUSAL_LM",
    )


def training_arguments(
    spec: JobSpec, plan: Plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding: dict | None
):
    """The Trainer settings every objective shares (SFT, DPO and reward configs all extend TrainingArguments).
    `sharding`: the FSDP arguments (training/sharding.py) when the job is sharded, else None."""
    hp = spec.hyperparameters
    every_epoch = {"strategy": "epoch", "steps": None}
    save = {"strategy": "steps", "steps": hp.save_steps} if hp.save_steps else every_epoch
    evaluate = {"strategy": "steps", "steps": hp.eval_steps} if hp.eval_steps else every_epoch
    arguments = dict(
        output_dir=str(output_dir),
        use_cpu=plan.device == "cpu",
        bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16",
        learning_rate=hp.learning_rate,
        num_train_epochs=hp.epochs or 1.0,
        max_steps=hp.max_steps or -1,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation,
        warmup_steps=hp.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        lr_scheduler_type=hp.scheduler,
        weight_decay=hp.weight_decay,
        seed=hp.seed,
        data_seed=hp.seed,
        max_length=hp.context_length,
        gradient_checkpointing=gradient_checkpointing,
        logging_steps=hp.logging_steps,
        logging_nan_inf_filter=False,  # a diverging loss must show on the curve, not be filtered out
        eval_strategy=evaluate["strategy"] if has_eval else "no",
        eval_steps=evaluate["steps"],
        save_strategy=save["strategy"],
        save_steps=save["steps"],
        save_total_limit=None,  # we prune after marking a save complete (training/checkpoints.py says why)
        report_to=list(spec.output.report_to) or "none",  # each through the Trainer's integration (trackers.py)
        run_name=Path(output_dir).parent.name,  # the job's folder name: the same name in every tracker
        project=TRACKER_PROJECT,  # Trackio's project (the other trackers read theirs from the environment)
        disable_tqdm=True,  # progress reaches people as events; tqdm bars only clutter worker.log
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # frozen base weights are not "unused"; searching costs a pass
    )
    return arguments | (sharding or {})


def to_sft_config(
    spec: JobSpec, plan: Plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding=None
):
    hp = spec.hyperparameters
    return SFTConfig(
        **training_arguments(spec, plan, output_dir, gradient_checkpointing, has_eval, sharding),
        # Packing flattens a batch into one long row; without a varlen attention kernel (flash
        # attention, GPU only) attention over that row is quadratic and was 3x slower on the CPU
        # here than length-grouped batches of short examples, so grouping is our default.
        packing=hp.packing,
        train_sampling_strategy="group_by_length" if hp.group_by_length else "random",
    )


def to_dpo_config(
    spec: JobSpec, plan: Plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding=None
):
    return DPOConfig(
        **training_arguments(spec, plan, output_dir, gradient_checkpointing, has_eval, sharding),
        beta=spec.method.dpo_beta,
    )


def to_reward_config(
    spec: JobSpec, plan: Plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding=None
):
    return RewardConfig(**training_arguments(spec, plan, output_dir, gradient_checkpointing, has_eval, sharding))


CONFIG_FOR = {"sft": to_sft_config, "dpo": to_dpo_config, "reward": to_reward_config}
TRAINER_FOR = {"sft": SFTTrainer, "dpo": DPOTrainer, "reward": RewardTrainer}


def load_model(spec: JobSpec, plan: Plan, token: str | None):
    reference, earlier_adapters = starting_point(spec)
    compute_dtype = DTYPES[plan.precision]
    common = {"revision": spec.model.revision, "token": token or False}
    quantization = None
    if spec.method.type == "qlora":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=spec.method.qlora_double_quant,
            bnb_4bit_compute_dtype=DTYPES[qlora_compute_dtype(spec, plan)],
        )
    # Weights stay fp32 on the CPU: bf16 runs through autocast there (Trainer's bf16=True), which
    # keeps fp32 master weights for full fine-tuning and measured as fast as bf16 weights for LoRA.
    weights_dtype = compute_dtype if plan.device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(reference, **common)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.method.objective == "reward":
        # A reward model is the same network with a one-number head instead of the vocabulary
        model = AutoModelForSequenceClassification.from_pretrained(
            reference, num_labels=1, dtype=weights_dtype, quantization_config=quantization, **common
        )
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(
            reference, dtype=weights_dtype, quantization_config=quantization, **common
        )
    return merge_adapters(model, earlier_adapters), tokenizer


def build_trainer(spec: JobSpec, plan: Plan, model, tokenizer, train_data, eval_data, callbacks, output_dir: Path):
    """The TRL trainer for the spec's objective, over a loaded model (see `load_model`)."""
    objective = spec.method.objective
    if objective == "sft":
        score_only_labelled_positions()
    unpack_4bit_inference_layout(model)
    checkpointing = wants_gradient_checkpointing(spec, plan, model.num_parameters())
    sharding = None
    if is_sharded(spec):
        sharding = fsdp_arguments(layer_classes(model), checkpointing)
        if plan.device == "cpu":
            honour_fsdp_on_cpu()
    trainer = TRAINER_FOR[objective](
        model=model,
        args=CONFIG_FOR[objective](spec, plan, output_dir, checkpointing, eval_data is not None, sharding),
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=to_lora_config(spec),
        callbacks=callbacks,
    )
    reproducible_length_grouping(trainer, spec.hyperparameters.seed)
    return trainer


def is_sharded(spec: JobSpec) -> bool:
    """FSDP applies when the spec asks for it and the job really runs over several processes."""
    return spec.hyperparameters.distributed == "fsdp" and world_size() > 1


def reproducible_length_grouping(trainer, seed: int) -> None:
    """Make length-grouped batches come in the same order after a resume.

    transformers (5.23) builds the training LengthGroupedSampler without a generator, so each
    epoch's order comes from the global RNG at the moment the epoch starts, which a resumed run
    does not reproduce: after a resume in the second epoch the losses differed by up to 28% from
    the uninterrupted run (tests/test_kill_resume.py). The Trainer calls `set_epoch` on the
    sampler at every epoch start, resumed or not; we give the sampler one that seeds its own
    generator with (seed, epoch). Remove once transformers seeds it.
    """
    make_sampler = trainer._get_train_sampler

    def seeded_sampler(*args, **kwargs):
        sampler = make_sampler(*args, **kwargs)
        if isinstance(sampler, LengthGroupedSampler):

            def set_epoch(epoch: int) -> None:
                sampler.generator = torch.Generator().manual_seed(seed + epoch)

            sampler.set_epoch = set_epoch
            set_epoch(0)
        return sampler

    trainer._get_train_sampler = seeded_sampler


def unpack_4bit_inference_layout(model) -> int:
    """Undo bitsandbytes' CPU inference repacking of 4-bit weights, so training sees the real weights.

    On CPUs with AVX-512 BF16, a no-grad forward in eval mode (any `generate`) rewrites each
    Linear4bit weight into a packed layout for fast inference; training on top of that layout runs
    but learns much worse (measured: loss 3.38 -> 2.00 instead of -> 1.31 over 6 steps). Our
    engine loads a fresh model per job, but anything that generates
    before training (a baseline sample, a calibration run) would hit this, so the layout is
    checked here, on the way into every trainer. Returns how many layers were unpacked.
    """
    unpacked = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            # The same call bitsandbytes makes itself before moving or saving such a weight
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
            module.quant_state = weight.quant_state
            unpacked += 1
    return unpacked


def qlora_compute_dtype(spec: JobSpec, plan: Plan) -> str:
    chosen = spec.method.qlora_compute_dtype
    return plan.precision if chosen == "auto" else chosen


class EventCallback(TrainerCallback):
    """Turns Trainer callbacks into our events and asks for a cooperative stop at step boundaries."""

    def __init__(self, emit: Callable[[Event], None], should_stop: Callable[[], bool], keep_checkpoints: int = 2):
        self.emit, self.should_stop, self.keep_checkpoints = emit, should_stop, keep_checkpoints
        self.started = self.last_time = time.monotonic()
        self.last_tokens = 0
        self.stopped_early = False
        self.diverged_at: int | None = None  # the step whose loss or gradient norm was not a number

    def on_step_end(self, args, state, control, **kwargs):
        if stop_everywhere(self.should_stop(), args.device):
            self.stopped_early = True
            control.should_training_stop = True
            control.should_save = True  # a stopped job keeps its progress as a checkpoint
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "eval_loss" in logs:
            self.emit(Eval(step=state.global_step, eval_loss=float(logs["eval_loss"])))
            return
        if "loss" not in logs:
            return
        now = time.monotonic()
        tokens = int(logs.get("num_tokens", self.last_tokens))  # TRL counts non-padding tokens
        rate = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_tokens = now, tokens
        per_step = (now - self.started) / max(state.global_step, 1)
        self.emit(
            Progress(
                step=state.global_step,
                total_steps=state.max_steps,
                epoch=float(state.epoch or 0.0),
                loss=float(logs["loss"]),
                learning_rate=_maybe_float(logs.get("learning_rate")),
                grad_norm=_maybe_float(logs.get("grad_norm")),
                tokens_per_second=rate,
                tokens_seen=tokens,
                eta_seconds=per_step * max(state.max_steps - state.global_step, 0),
                # DPOTrainer logs rewards/margins and rewards/accuracies; RewardTrainer margin and accuracy
                reward_margin=_maybe_float(logs.get("rewards/margins", logs.get("margin"))),
                reward_accuracy=_maybe_float(logs.get("rewards/accuracies", logs.get("accuracy"))),
            )
        )
        values = [float(logs["loss"]), _maybe_float(logs.get("grad_norm"))]
        if any(value is not None and not math.isfinite(value) for value in values):
            # Stop now, and do not save: the last checkpoint is the last good one
            self.diverged_at = state.global_step
            control.should_training_stop = True
            control.should_save = False
        return control

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():  # rank 0 saved it; rank 0 marks it
            mark_complete(folder, keep=self.keep_checkpoints)
        self.emit(Log(message=f"checkpoint saved at step {state.global_step}"))


def stop_everywhere(requested: bool, device: torch.device | str = "cpu") -> bool:
    """In a multi-process job every rank must stop at the same step, or the others wait forever in the
    next all-reduce: any rank that saw the request stops them all. The flag lives on the training
    device, since NCCL (GPUs) reduces only CUDA tensors; gloo (CPU) only CPU ones."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return requested
    flag = torch.tensor([1 if requested else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _maybe_float(value) -> float | None:
    return None if value is None else float(value)


def score_only_labelled_positions() -> None:
    """Make TRL's fused LM head skip prompt and padding positions on the CPU too.

    TRL (1.16, `add_fused_lm_head`) projects only positions with a label through the 49k-wide LM
    head on Triton devices, but every position elsewhere, so that Neuron compiles one shape. On
    the CPU that spends most of the head's work (and an fp32 matmul in its backward) on prompt
    and padding tokens whose loss is masked anyway; it was a third of each step here. The loss
    is identical (tests/test_engine.py checks). Remove once TRL compacts on every device.
    """
    original = trl_utils._use_triton
    if getattr(original, "lathe_patched", False):
        return

    def compact_on_cpu(device) -> bool:
        return device.type == "cpu" or original(device)

    compact_on_cpu.lathe_patched = True
    trl_utils._use_triton = compact_on_cpu


def evaluate_after_training(spec: JobSpec, job_dir: Path, token: str | None, emit, should_stop) -> None:
    """Base vs tuned on the held-out rows (eval.json). A failure here costs the evaluation, not the job, and
    Stop ends it between rows (the JobManager would otherwise kill the worker after its grace period)."""
    import gc

    from training.evaluate import EvaluationStopped, evaluate_job

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    emit(Status(phase="evaluating"))
    try:
        report = evaluate_job(job_dir, token, EVAL_ROWS, EVAL_SAMPLES, should_stop)
    except EvaluationStopped:
        emit(Log(message=f"evaluation skipped: stop requested (the model is saved; python app.py eval {job_dir})"))
        return
    except Exception as error:  # noqa: BLE001 - reported as a warning; the trained model is already saved
        failure = f"{type(error).__name__}: {error}"
        emit(Log(level="warning", message=f"evaluation failed ({failure}); try again: python app.py eval {job_dir}"))
        return
    emit(Log(message=report.summary()))


def run_job(
    spec: JobSpec,
    job_dir: Path,
    emit: Callable[[Event], None],
    should_stop: Callable[[], bool],
    token: str | None = None,
    resume: bool = False,
) -> None:
    """Train `spec` into `job_dir`; raises on failure (the worker turns that into a Failed event).

    With `resume`, training continues from the newest complete checkpoint: weights, optimizer,
    scheduler and the position in the data all come back (the Trainer skips the batches seen).
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_for(spec)
    processes = f", {world_size()} processes" if world_size() > 1 else ""
    sharded = ", weights sharded with FSDP" if is_sharded(spec) else ""
    emit(Log(message=f"hardware plan: {plan.describe()}{processes}{sharded}"))

    objective = spec.method.objective
    emit(Status(phase="preparing_data"))
    train_data, eval_data = build_datasets(spec.data, spec.hyperparameters.seed, objective, token)
    emit(Log(message=f"data: {len(train_data)} training rows, {len(eval_data) if eval_data else 0} validation rows"))
    # The data's fingerprint, format and label set stay with the job (results are scored against the labels)
    if rank() == 0:
        (job_dir / "data.json").write_text(json.dumps(data_summary(spec.data, objective, token), indent=1))

    emit(Status(phase="loading_model", detail=spec.model.name_or_path))
    model, tokenizer = load_model(spec, plan, token)
    checkpointing = wants_gradient_checkpointing(spec, plan, model.num_parameters())
    emit(
        Log(
            message=f"model: {model.num_parameters() / 1e6:.0f}M parameters, {spec.method.type} {objective}, "
            f"gradient checkpointing {'on' if checkpointing else 'off'}"
        )
    )

    # TensorBoard files go into the job folder, beside our own event log
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(job_dir / "tensorboard")
    prepare_trackers(spec, job_dir)  # W&B, MLflow and Trackio: local homes and run details, unless set
    callback = EventCallback(emit, should_stop, keep_checkpoints=spec.output.save_total_limit)
    trainer = build_trainer(spec, plan, model, tokenizer, train_data, eval_data, [callback], job_dir / "checkpoints")
    if rank() == 0:  # the rows, versions, hardware and command lines that reproduce this run
        write_bundle(spec, job_dir, starting_point(spec)[0], trainer.args, train_data, eval_data)
    checkpoint = latest_complete_checkpoint(job_dir) if resume else None
    if resume and rank() == 0 and (torn := remove_torn(job_dir)):
        emit(Log(message=f"removed half-written checkpoints from the interrupted run: {', '.join(torn)}"))
    if resume and checkpoint is None:
        emit(Log(message="no complete checkpoint to resume from: starting from the beginning"))
    elif checkpoint is not None:
        emit(Log(message=f"resuming from {checkpoint.name}"))
    emit(Status(phase="training"))
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    if callback.diverged_at is not None:
        raise UserError(
            f"Training diverged: the loss or gradient norm stopped being a number at step {callback.diverged_at}. "
            "Likely causes: a learning rate too high (try 3-10x lower), fp16 overflow (use bf16 or fp32), or "
            "broken rows in the data. Nothing from this step was saved; earlier checkpoints are kept."
        )
    emit(Status(phase="saving"))
    output_dir = job_dir / ("model" if spec.method.type == "full" else "adapter")
    trainer.save_model(str(output_dir))  # the Trainer writes from rank 0 only
    if rank() != 0:
        return
    tokenizer.save_pretrained(str(output_dir))
    if spec.output.merge_adapter:
        merged = trainer.model.merge_and_unload()  # after save_model: merging first would empty the adapter
        merged.save_pretrained(str(job_dir / "model"))
        tokenizer.save_pretrained(str(job_dir / "model"))
    final_loss = result.training_loss if math.isfinite(result.training_loss) else None
    if spec.output.evaluate and not callback.stopped_early and objective != "reward":
        del trainer, model  # the evaluation loads the saved model; free the training copy first
        evaluate_after_training(spec, job_dir, token, emit, should_stop)
    if (job_dir / "spec.yaml").is_file():  # the model card, with the evaluation's numbers when there are any
        (job_dir / "README.md").write_text(model_card(job_dir, merged=spec.method.type == "full"))
    emit(
        Finished(
            output_dir=str(output_dir),
            stopped_early=callback.stopped_early,
            final_loss=final_loss,
            train_seconds=time.monotonic() - started,
        )
    )
