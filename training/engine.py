"""Run one fine-tuning job, top to bottom: data, model, TRL trainer, train, save.

`run_job` talks to the outside world only through `emit(event)` and asks `should_stop()` at
every step boundary; it never touches the UI or the job record. TRL does the training; the
functions here translate our spec into the library objects (`to_lora_config`, `to_sft_config`), build
the trainer, and run the evaluation after it. Workarounds for the pinned libraries live in `patches.py`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
    TrainerCallback,
)
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from training import jobdir, patches
from training.bundle import write_bundle
from training.checkpoints import latest_complete_checkpoint, mark_complete, remove_torn
from training.data import build_datasets
from training.data.load import data_summary, load_sources
from training.data.masking import prepare_sft
from training.distributed import rank, world_size
from training.errors import UserError
from training.events import Eval, Event, Finished, Log, Progress, Status
from training.hardware import Plan, plan_for, wants_gradient_checkpointing
from training.model_card import model_card
from training.models import merge_adapters, starting_point
from training.preference import PREFERENCE_CONFIG_FOR, PREFERENCE_TRAINER_FOR
from training.rewards import progress_fields as grpo_progress_fields
from training.sharding import fsdp_arguments, layer_classes
from training.spec import JobSpec, target_module_names
from training.trackers import PROJECT as TRACKER_PROJECT
from training.trackers import prepare_trackers

EVAL_ROWS, EVAL_SAMPLES = 50, 3  # enough to tell, small enough to take about a minute on a CPU
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def to_lora_config(spec: JobSpec):
    """The PEFT LoRA config for lora/qlora jobs; None for full fine-tuning."""
    method = spec.method
    if method.type == "full":
        return None
    return LoraConfig(
        r=method.lora_r,
        lora_alpha=method.lora_alpha,
        lora_dropout=method.lora_dropout,
        target_modules=target_module_names(method.target_modules),
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


def to_kto_config(
    spec: JobSpec, plan: Plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding=None
):
    # KTOConfig's own default sampler is sequential, which its KL estimate needs (it pairs neighbours in a batch)
    return KTOConfig(
        **training_arguments(spec, plan, output_dir, gradient_checkpointing, has_eval, sharding),
        beta=spec.method.dpo_beta,
    )


CONFIG_FOR = {"sft": to_sft_config, "dpo": to_dpo_config, "reward": to_reward_config, "kto": to_kto_config}
TRAINER_FOR = {"sft": SFTTrainer, "dpo": DPOTrainer, "reward": RewardTrainer, "kto": KTOTrainer}
# ORPO and CPO/SimPO: TRL's experimental trainers over the same pairs as DPO (training/preference.py)
CONFIG_FOR |= PREFERENCE_CONFIG_FOR
TRAINER_FOR |= PREFERENCE_TRAINER_FOR


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


def build_trainer(
    spec: JobSpec, plan: Plan, model, tokenizer, train_data, eval_data, callbacks, output_dir: Path, token=None
):
    """The TRL trainer for the spec's objective, over a loaded model (see `load_model`)."""
    objective = spec.method.objective
    if objective == "grpo":  # generates its own answers and learns from their rewards (training/grpo.py)
        from training.grpo import build_grpo_trainer

        checkpointing = wants_gradient_checkpointing(spec, plan, model.num_parameters())
        return build_grpo_trainer(
            spec, plan, model, tokenizer, train_data, callbacks, output_dir, checkpointing, to_lora_config(spec), token
        )
    counts = None
    if objective == "sft":
        patches.score_only_labelled_positions()
        # Our one masking function tokenizes and labels the rows (every assistant turn, windows of long
        # documents, rows cut to the context); TRL keeps a dataset with `labels` as it is
        if "input_ids" not in train_data.column_names:  # rows tokenized already (the GPU check's) go as they are
            train_data, eval_data, counts = prepare_sft(
                tokenizer, train_data, eval_data, spec.data.train_on, spec.hyperparameters.context_length
            )
    patches.unpack_4bit_inference_layout(model)
    checkpointing = wants_gradient_checkpointing(spec, plan, model.num_parameters())
    sharding = None
    if is_sharded(spec):
        sharding = fsdp_arguments(layer_classes(model), checkpointing)
        if plan.device == "cpu":
            patches.honour_fsdp_on_cpu()
    trainer = TRAINER_FOR[objective](
        model=model,
        args=CONFIG_FOR[objective](spec, plan, output_dir, checkpointing, eval_data is not None, sharding),
        train_dataset=train_data,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        peft_config=to_lora_config(spec),
        callbacks=callbacks,
    )
    patches.reproducible_length_grouping(trainer, spec.hyperparameters.seed)
    trainer.lathe_data_counts = counts  # what became of each row; run_job saves it in data.json
    return trainer


def describe_counts(counts: dict) -> str:
    text = (
        f"{counts['kept']} rows fit, {counts['truncated']} cut at the context length, "
        f"{counts['dropped']} dropped (the prompt alone fills the context)"
    )
    if counts["documents_split"]:
        text += f", {counts['documents_split']} long documents split into context-sized windows"
    return text + "".join(f"; {n} rows: {note}" for note, n in counts.get("notes", {}).items())


def is_sharded(spec: JobSpec) -> bool:
    """FSDP applies when the spec asks for it and the job really runs over several processes."""
    return spec.hyperparameters.distributed == "fsdp" and world_size() > 1


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
                **(grpo_progress_fields(logs) if "reward" in logs else {}),
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
    sources = load_sources(spec.data, objective, token)  # read once: the datasets and data.json both come from it
    train_data, eval_data = build_datasets(spec.data, spec.hyperparameters.seed, objective, token, sources)
    emit(Log(message=f"data: {len(train_data)} training rows, {len(eval_data) if eval_data else 0} validation rows"))
    # The data's fingerprint, format and label set stay with the job (results are scored against the labels)
    if rank() == 0:
        summary = data_summary(spec.data, objective, token, sources)
        (job_dir / jobdir.DATA_SUMMARY).write_text(json.dumps(summary, indent=1))

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
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(job_dir / jobdir.TENSORBOARD)
    prepare_trackers(spec, job_dir)  # W&B, MLflow and Trackio: local homes and run details, unless set
    callback = EventCallback(emit, should_stop, keep_checkpoints=spec.output.save_total_limit)
    trainer = build_trainer(
        spec, plan, model, tokenizer, train_data, eval_data, [callback], job_dir / jobdir.CHECKPOINTS, token
    )
    if getattr(trainer, "lathe_data_counts", None):  # SFT's counts (GRPO reads prompts, not answers)
        trained = trainer.lathe_data_counts
        emit(Log(message="data as trained: " + describe_counts(trained["train"])))
        if rank() == 0:
            summary = json.loads((job_dir / jobdir.DATA_SUMMARY).read_text())
            (job_dir / jobdir.DATA_SUMMARY).write_text(json.dumps(summary | {"trained": trained}, indent=1))
    if objective == "grpo":  # a few scored answers per step go to the run view
        from training.grpo import SampleCallback

        trainer.add_callback(SampleCallback(trainer.lathe_reward_log, emit))
    if rank() == 0:  # the rows, versions, hardware and command lines that reproduce this run
        lora = getattr(trainer.model, "peft_config", {}).get("default")  # the LoraConfig the trainer applied
        write_bundle(spec, job_dir, starting_point(spec)[0], trainer.args, lora, train_data, eval_data)
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
    output_dir = job_dir / (jobdir.MODEL if spec.method.type == "full" else jobdir.ADAPTER)
    trainer.save_model(str(output_dir))  # the Trainer writes from rank 0 only
    if rank() != 0:
        return
    tokenizer.save_pretrained(str(output_dir))
    if spec.output.merge_adapter:
        merged = trainer.model.merge_and_unload()  # after save_model: merging first would empty the adapter
        merged.save_pretrained(str(job_dir / jobdir.MODEL))
        tokenizer.save_pretrained(str(job_dir / jobdir.MODEL))
    final_loss = result.training_loss if math.isfinite(result.training_loss) else None
    if spec.output.evaluate and not callback.stopped_early and objective != "reward":
        del trainer, model  # the evaluation loads the saved model; free the training copy first
        evaluate_after_training(spec, job_dir, token, emit, should_stop)
    if jobdir.is_job_dir(job_dir):  # the model card, with the evaluation's numbers when there are any
        (job_dir / jobdir.MODEL_CARD).write_text(model_card(job_dir, merged=spec.method.type == "full"))
    emit(
        Finished(
            output_dir=str(output_dir),
            stopped_early=callback.stopped_early,
            final_loss=final_loss,
            train_seconds=time.monotonic() - started,
        )
    )
