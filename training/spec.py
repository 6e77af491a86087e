"""The job spec: every setting of a fine-tuning job, declared once, with bounds and help.

The wizard reads labels, help, minimums and maximums from these fields; the CLI reads and
writes the same spec as YAML. The Hugging Face token is deliberately *not* a field: secrets
travel beside the spec (JobManager.start(spec, secrets)), never inside it, so a spec file can
be shared, committed or attached to a bug report safely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from training import jobdir
from training.errors import UserError
from training.redact import contains_secret, redact
from training.reward_spec import RewardChoice, grpo_problems

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
DEMO_PREFIX = "demo:"
HUB_PREFIX = "hub:"
DemoText = Annotated[str, StringConstraints(min_length=1, max_length=60)]  # a name the identity demo writes in
# What each task teaches, in the words the wizard and the data check use
TASK_LABELS = {
    "chat": "Instruction / chat fine-tuning",
    "classification": "Text classification",
    "summarization": "Summarisation",
    "qa": "Question answering",
    "language_modeling": "Continued pre-training on raw text",
    "preference": "Preference tuning (pairs of answers)",
}


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSection(_Section):
    name_or_path: str = Field(
        EMBEDDED_MODEL,
        title="Model",
        min_length=1,
        description="The model to fine-tune: the embedded default, a Hugging Face id (org/name) or a local folder.",
    )
    revision: str | None = Field(
        None,
        title="Revision (branch, tag or commit)",
        description="Hub branch, tag or commit to use; empty means the default branch.",
    )
    start_from_job: str | None = Field(
        None,
        title="Build on a finished job",
        description="A finished job folder to build on (e.g. DPO after SFT); its adapter is merged in first.",
    )


class DataSection(_Section):
    source: str = Field(
        "demo:identity",
        min_length=1,
        description="Training data: a demo (demo:identity, demo:general, demo:preferences), a Hub dataset "
        "(hub:org/name) or a file (JSONL, JSON, CSV, TSV, Parquet, TXT).",
    )
    mix_in: list[str] = Field(
        [],
        max_length=8,
        description="More sources mixed into training, e.g. demo:general so the model keeps its general skills.",
    )
    validation_split: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="Share of rows held out to measure validation loss (0 = none). Data with fewer than 40 rows "
        "is too small to spare any: nothing is held out then, and the check says so.",
    )
    validation_source: str | None = Field(
        None,
        title="Or separate validation data",
        description="Separate validation data instead of a split: a file, a demo, or split:NAME for another "
        "split of the same Hub dataset.",
    )
    hub_config: str | None = Field(
        None,
        title="Configuration",
        description="Hub dataset: the configuration (subset) to load, if it has several.",
    )
    hub_split: str = Field("train", min_length=1, title="Split", description="Hub dataset: the split to train on.")
    hub_revision: str | None = Field(
        None,
        title="Revision",
        description="Hub dataset: branch, tag or commit; empty = the default branch.",
    )
    assistant_name: DemoText = Field(
        "Juniper", title="Assistant name (identity demo)", description="Name the identity demo teaches the model."
    )
    assistant_maker: DemoText = Field(
        "Lathe Labs", title="Assistant maker (identity demo)", description="Maker the identity demo teaches it to name."
    )
    max_rows: int | None = Field(
        None, ge=1, title="Use at most this many rows", description="Use only the first N rows (handy for a quick try)."
    )
    format: Literal[
        "auto",
        "chat",
        "sharegpt",
        "alpaca",
        "prompt_completion",
        "preference",
        "qa",
        "summarization",
        "classification",
        "text",
        "unpaired_preference",
    ] = Field(
        "auto",
        title="Format",
        description="How the rows are laid out; auto detects it from the column names.",
        json_schema_extra={"choice_labels": {"auto": "Detect it"}},  # each format's own label: data/formats.py
    )
    task: Literal["auto", "chat", "classification", "summarization", "qa", "language_modeling", "preference"] = Field(
        "auto",
        title="Task",
        description="What the model learns; auto follows the format (e.g. text/label -> classification).",
        json_schema_extra={"choice_labels": {"auto": "Follow the data's format", **TASK_LABELS}},
    )
    field_map: dict[str, str] = Field(
        {}, description="Which column plays which role when the names differ, e.g. {text: review, label: sentiment}."
    )

    @model_validator(mode="before")
    @classmethod
    def _validation_source_replaces_default_split(cls, data: Any) -> Any:
        # A spec that names only a validation source means "validate on that", not "that and a 10% split"
        if isinstance(data, dict) and data.get("validation_source") and "validation_split" not in data:
            return {**data, "validation_split": 0.0}
        return data

    train_on: Literal["all_assistant_turns", "last_assistant_turn"] = Field(
        "all_assistant_turns",
        title="Train on (chat data)",
        json_schema_extra={
            "choice_labels": {"all_assistant_turns": "Every assistant answer", "last_assistant_turn": "The last answer"}
        },
        description="Chat data: learn every assistant answer of a conversation (user turns are never trained), "
        "or only the last one.",
    )
    system_prompt: str | None = Field(
        None,
        max_length=4000,
        title="System prompt (optional)",
        description="A system message for every conversation that has none (instead of the chat template's "
        "default); a row's own 'system' field wins.",
    )


LORA_TARGET_PRESETS = ("all-linear", "attention")
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


def parse_field_map(pairs, where: str = "data.field_map") -> dict[str, str]:
    """role=column pairs -> {role: column}: a list of pairs, or one text of them separated by commas
    ('text=review, label=sentiment'). A bad pair is a UserError that names `where` (the field or option)."""
    if isinstance(pairs, str):
        pairs = pairs.split(",")
    mapping = {}
    for pair in (p.strip() for p in pairs if p.strip()):
        role, sep, column = pair.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise UserError(f"{where}: {pair!r} should be role=column, e.g. text=review.")
        mapping[role.strip()] = column.strip()
    return mapping


def target_module_names(target_modules: str) -> str | list[str]:
    """method.target_modules as PEFT (and TRL's --lora_target_modules) take it: "all-linear" or module names.

    The one translation the trainer, the size estimate and the reproduce bundle all use."""
    if target_modules == "all-linear":
        return "all-linear"  # PEFT's own shorthand: every linear layer but the output head
    if target_modules == "attention":
        return list(ATTENTION_MODULES)
    return target_modules.split(",")


class MethodSection(_Section):
    type: Literal["lora", "qlora", "full"] = Field(
        "lora",
        title="Method",
        description="lora trains small adapters (fast, light); qlora does so over a 4-bit base (least memory); "
        "full updates every weight (most memory).",
    )
    objective: Literal["sft", "dpo", "reward", "kto", "grpo", "orpo", "cpo"] = Field(
        "sft",
        title="Training objective",
        description="sft learns from example answers; dpo learns from pairs of a better and a worse answer; "
        "reward trains a model that scores answers (for RLHF); kto learns from single answers marked good or bad; "
        "grpo learns from rewards on its own answers to prompts; orpo and cpo learn from the same pairs as dpo "
        "without a reference model.",
        json_schema_extra={
            "choice_labels": {
                "sft": "Learn from example answers (SFT)",
                "dpo": "Prefer the better of two answers (DPO)",
                "reward": "Train a reward model that scores answers",
                "kto": "Learn from answers marked good or bad (KTO)",
                "grpo": "Learn from rewards on its own answers (GRPO)",
                "orpo": "Prefer the better answer, no reference model (ORPO)",
                "cpo": "Prefer the better answer, no reference model (CPO / SimPO)",
            }
        },
    )
    lora_r: int = Field(
        16, ge=1, le=1024, title="LoRA rank (r)", description="LoRA rank: adapter size. 8-32 suits most jobs."
    )
    lora_alpha: int = Field(
        32, ge=1, le=4096, title="LoRA alpha", description="LoRA scaling; about twice the rank is a good start."
    )
    lora_dropout: float = Field(
        0.0, ge=0.0, le=0.5, title="LoRA dropout", description="Dropout inside the adapters; 0-0.1."
    )
    target_modules: str = Field(
        "all-linear",
        title="LoRA target modules",
        description="Layers that get adapters: all-linear, attention, or a comma list such as q_proj,v_proj.",
    )
    use_dora: bool = Field(
        False, title="DoRA", description="DoRA: adapters that also learn each weight's size; a little better, slower."
    )
    use_rslora: bool = Field(
        False, title="rsLoRA", description="rsLoRA: scale adapters by alpha/sqrt(rank); steadier at high ranks."
    )
    qlora_double_quant: bool = Field(
        True,
        title="QLoRA double quantisation",
        description="QLoRA: also quantise the quantisation constants (~0.4 bit less).",
    )
    qlora_compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        title="QLoRA compute type",
        description="QLoRA: number format the 4-bit weights are computed in; auto follows the precision.",
    )
    dpo_beta: float = Field(
        0.1,
        gt=0.0,
        le=10.0,
        title="DPO / KTO beta",
        description="DPO and KTO: how far the model may move from where it started; 0.1 is typical.",
    )
    # GRPO (method.objective grpo): the model answers each prompt several times and learns from the rewards
    grpo_generations: int = Field(
        4, ge=2, le=64, description="GRPO: answers sampled per prompt; each is scored against the others' mean."
    )
    grpo_max_completion_length: int = Field(
        64, ge=1, le=32768, description="GRPO: longest answer in tokens the model may write while training."
    )
    grpo_temperature: float = Field(
        1.0, gt=0.0, le=2.0, description="GRPO: sampling temperature; higher gives more varied answers to learn from."
    )
    grpo_beta: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="GRPO: KL penalty keeping the model near where it started (0 = none, no reference pass; 0.04 "
        "is a common choice).",
    )
    rewards: list[RewardChoice] = Field(
        [],
        max_length=8,
        description="GRPO: the rewards and their weights, e.g. [{kind: match, column: answer}, {kind: format, "
        "preset: only_number, weight: 0.5}].",
    )
    preference_loss: Literal["sigmoid", "simpo"] = Field(
        "sigmoid",
        description="cpo: sigmoid is CPO's loss (with a likelihood term on the better answer); simpo is SimPO "
        "(length-normalised, with a target margin; it wants a larger dpo_beta, 2-2.5).",
    )

    @field_validator("target_modules")
    @classmethod
    def _module_names(cls, value: str) -> str:
        if value in LORA_TARGET_PRESETS:
            return value
        names = [name.strip() for name in value.split(",")]
        if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) for name in names):
            raise ValueError("use all-linear, attention, or comma-separated layer names such as q_proj,v_proj")
        return ",".join(names)


class HyperparametersSection(_Section):
    context_length: int = Field(
        512,
        ge=16,
        le=131072,
        title="Context length (tokens)",
        description="Longest example in tokens; longer ones are cut.",
    )
    learning_rate: float = Field(2e-4, gt=0.0, le=1.0, description="Step size; 1e-4 to 5e-4 for LoRA, ~1e-5 full.")
    epochs: float | None = Field(
        3.0, gt=0.0, le=100.0, description="Passes over the data. Leave empty to use max steps."
    )
    max_steps: int | None = Field(None, ge=1, le=1_000_000, description="Stop after this many optimizer steps instead.")
    batch_size: int = Field(8, ge=1, le=1024, description="Examples per device per step; lower it if memory runs out.")
    gradient_accumulation: int = Field(1, ge=1, le=1024, description="Steps summed before each update (batch × this).")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps that ramp the learning rate up.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="How the learning rate changes over the run."
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Pull toward smaller weights; 0-0.1.")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Random seed for data order and initialisation.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Number format; auto picks bf16 where the hardware is fast at it, else fp32."
    )
    group_by_length: bool = Field(
        True, description="Batch examples of similar length together, so little time is spent on padding."
    )
    packing: bool = Field(
        False,
        description="Pack many short examples into each context-length row, without padding; each keeps to "
        "itself (its positions restart). Saves padding on a GPU; on a CPU it was ~3x slower, so it is off.",
    )
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Recompute activations to save memory at ~30% more time; auto turns it on for big models on GPU.",
    )
    devices: int = Field(
        1, ge=1, le=64, description="GPUs to train on at once (data parallel through accelerate); 1 = one device."
    )
    distributed: Literal["ddp", "fsdp"] = Field(
        "ddp",
        title="Several devices share the model by",
        description="With several devices: ddp keeps a whole copy of the model on each; fsdp shards weights, "
        "gradients and optimizer states across them, for full fine-tunes too big for one device (sft, lora or full).",
        json_schema_extra={
            "choice_labels": {
                "ddp": "A whole copy on each device (DDP)",
                "fsdp": "Shard the model across devices (FSDP)",
            }
        },
    )
    logging_steps: int = Field(1, ge=1, le=10000, description="Log loss every N steps.")
    eval_steps: int | None = Field(None, ge=1, le=100000, description="Validate every N steps; empty = each epoch.")
    save_steps: int | None = Field(None, ge=1, le=100000, description="Checkpoint every N steps; empty = each epoch.")

    @model_validator(mode="before")
    @classmethod
    def _max_steps_replaces_default_epochs(cls, data: Any) -> Any:
        # A spec that names only max_steps means "stop by steps", not "both"
        if isinstance(data, dict) and data.get("max_steps") is not None and "epochs" not in data:
            return {**data, "epochs": None}
        return data

    @model_validator(mode="after")
    def _one_stopping_rule(self) -> HyperparametersSection:
        problem = stopping_rule_problem(self.epochs, self.max_steps)
        if problem:
            raise ValueError(problem)
        return self


def stopping_rule_problem(epochs: Any, max_steps: Any) -> str | None:
    if epochs is not None and max_steps is not None:
        return "epochs and max_steps are both set. Choose one: set the other to null."
    if epochs is None and max_steps is None:
        return "neither epochs nor max_steps is set. Set one of them."
    return None


class OutputSection(_Section):
    save_total_limit: int = Field(
        2, ge=1, le=100, title="Checkpoints to keep", description="Checkpoints to keep; older ones are deleted."
    )
    merge_adapter: bool = Field(False, description="Also save a merged full model beside the adapter.")
    evaluate: bool = Field(
        True,
        description="When training ends, compare the base and the tuned model on held-out rows (loss, task score, "
        f"sample answers; saved as {jobdir.EVALUATION}). Takes a minute on a CPU.",
    )
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        ["tensorboard"],
        max_length=4,
        description="Experiment trackers that receive the loss and settings (through the Trainer's own "
        "integrations): tensorboard, wandb, mlflow, trackio. Their keys come from the environment only.",
    )
    notify: str | None = Field(
        None,
        description="Name of the environment variable that holds a webhook URL (e.g. LATHE_NOTIFY_URL), posted "
        "to when the job completes, fails or is stopped. The URL itself never goes into the spec.",
    )

    @field_validator("notify")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        if value is None or re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
            return value
        # Never echo the value: it may be the secret URL itself
        raise ValueError(
            "name an environment variable (capitals, digits, _), e.g. LATHE_NOTIFY_URL, and put the webhook URL "
            "in that variable: the URL often carries a key, so it never goes into a spec."
        )

    @field_validator("report_to")
    @classmethod
    def _each_tracker_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class SweepSection(_Section):
    """A small set of runs: lists of values for a few fields, tried as a grid or as random picks."""

    parameters: dict[str, list[Any]] = Field(
        ...,
        min_length=1,
        max_length=6,
        description="Field path -> values to try, e.g. {hyperparameters.learning_rate: [1e-4, 3e-4], "
        "method.lora_r: [8, 16]}.",
    )
    strategy: Literal["grid", "random"] = Field(
        "grid", description="grid tries every combination; random tries `count` of them, picked at random."
    )
    count: int | None = Field(None, ge=1, le=100, description="random: how many points to try.")
    seed: int = Field(0, ge=0, description="random: the seed that picks the points (same seed, same points).")

    @model_validator(mode="before")
    @classmethod
    def _flat_form(cls, data: Any) -> Any:
        # `sweep: {hyperparameters.learning_rate: [...]}` (field paths straight under sweep) reads as parameters
        if isinstance(data, dict) and "parameters" not in data:
            paths = {k: v for k, v in data.items() if isinstance(k, str) and "." in k}
            return {**{k: v for k, v in data.items() if k not in paths}, "parameters": paths}
        return data


class JobSpec(_Section):
    name: str = Field(
        "my-job",
        title="Job name",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Job name: letters, digits, dot, dash or underscore.",
    )
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    method: MethodSection = MethodSection()
    hyperparameters: HyperparametersSection = HyperparametersSection()
    output: OutputSection = OutputSection()
    sweep: SweepSection | None = Field(
        None, description="Try several values: one job per point (training/sweep.py). Empty = a single job."
    )

    @model_validator(mode="after")
    def _cross_section(self) -> JobSpec:
        hp = self.hyperparameters
        problems = []
        if hp.eval_steps is not None and self.data.validation_split == 0 and not self.data.validation_source:
            problems.append(
                "hyperparameters.eval_steps is set but data.validation_split is 0. Set a split such as 0.1."
            )
        if self.data.validation_source and self.data.validation_split > 0:
            problems.append(
                "data.validation_source is set and so is data.validation_split. Choose one: set the split to 0."
            )
        named_split = (self.data.validation_source or "").startswith("split:")
        if named_split and not self.data.source.startswith(HUB_PREFIX):
            problems.append("data.validation_source split:NAME needs a Hub dataset (hub:org/name) as data.source.")
        if self.method.type == "full" and self.output.merge_adapter:
            problems.append("output.merge_adapter only applies to lora/qlora. Set it to false for full fine-tuning.")
        # A spec is saved, shown and shared: a token pasted into one of its fields would leak with it (and into
        # a Hub URL). The field is named, never its value.
        for path in _paths_holding_secrets(self.model_dump(mode="json")):
            problems.append(
                f"{path} looks like it holds a Hugging Face token. Tokens never go into a job spec: put the token "
                "in the wizard's token field (or HF_TOKEN on the command line) and the model or dataset id here."
            )
        problems += sharding_problems(self)
        problems += grpo_problems(self)
        if self.sweep is not None:
            from training.sweep import sweep_problems  # sweep builds JobSpecs itself

            problems += sweep_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # ---- YAML in and out -------------------------------------------------------------------------

    def to_yaml(self) -> str:
        # A job run alone has no sweep section at all (so its spec.yaml reads as before sweeps existed)
        return yaml.safe_dump(
            self.model_dump(mode="json", exclude={"sweep"} if self.sweep is None else None), sort_keys=False
        )

    def with_overrides(self, overrides: dict[str, Any]) -> JobSpec:
        """Return a copy with dotted-path overrides applied ({"hyperparameters.max_steps": 5})."""
        return parse_spec(apply_overrides(self.model_dump(mode="json"), overrides))


# What FSDP sharding was run and tested with (two processes on the CPU, tests/test_multiprocess.py)
SHARDABLE_METHODS = ("lora", "full")
SHARDABLE_OBJECTIVES = ("sft",)


def sharding_problems(spec: JobSpec, distributed: str | None = None) -> list[str]:
    """fsdp is refused where it cannot help or has not been made to work, each with the fix.
    `distributed` asks about that choice instead of the spec's own (for suggestions)."""
    if (distributed or spec.hyperparameters.distributed) != "fsdp":
        return []
    problems = []
    if spec.hyperparameters.devices < 2:
        problems.append(
            "hyperparameters.distributed: fsdp shards the model across devices, so it needs devices of 2 or more. "
            "Set hyperparameters.devices to 2 or more, or distributed to ddp."
        )
    if spec.method.type not in SHARDABLE_METHODS:
        problems.append(
            f"method.type: {spec.method.type} is not supported with fsdp (its 4-bit weights would need a special "
            "storage type). Use lora or full with fsdp, or set hyperparameters.distributed to ddp."
        )
    if spec.method.objective not in SHARDABLE_OBJECTIVES:
        problems.append(
            f"method.objective: fsdp runs sft jobs only so far; {spec.method.objective} is not supported with it. "
            "Set hyperparameters.distributed to ddp."
        )
    if spec.output.merge_adapter:
        problems.append(
            "output.merge_adapter: merging needs the whole model in one process, which fsdp does not keep. "
            "Set it to false (chat loads the adapter over the base), or use ddp."
        )
    return problems


# Epochs and max steps are one choice: setting one from the command line clears the other.
_STOPPING_RULE_PARTNER = {"hyperparameters.epochs": "max_steps", "hyperparameters.max_steps": "epochs"}


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for path, value in overrides.items():
        if path == "data.validation_source" and value and "data.validation_split" not in overrides:
            data.setdefault("data", {})["validation_split"] = 0.0  # the source replaces the default split
        partner = _STOPPING_RULE_PARTNER.get(path)
        if partner and value is not None and f"hyperparameters.{partner}" not in overrides:
            data.setdefault("hyperparameters", {})[partner] = None
        section, _, field = path.partition(".")
        if field:
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                raise UserError(f"{path}: '{section}' is not a section of the spec.")
            data[section][field] = value
        else:
            data[section] = value
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `--set section.field=value`; the value is read as YAML so 5, 1e-4, null and true work."""
    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise UserError(f"--set {text!r}: write it as section.field=value, e.g. hyperparameters.max_steps=20.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return path.strip(), value


def _paths_holding_secrets(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in _paths_holding_secrets(value, f"{prefix}{key}.")]
    if isinstance(data, list):
        return [p for item in data for p in _paths_holding_secrets(item, prefix)]
    return [prefix.rstrip(".")] if isinstance(data, str) and contains_secret(data) else []


class SpecError(UserError):
    """Every problem found in a spec, each as (field path, message with the fix)."""

    def __init__(self, problems: list[tuple[str, str]]):
        # Masked here too: the wizard shows `problems` one by one, and a message may quote a field's value
        self.problems = [(path, redact(message)) for path, message in problems]
        lines = [
            f"  - {message}" if message.startswith(path) else f"  - {path}: {message}"
            for path, message in self.problems
        ]
        super().__init__("The job spec has problems:\n" + "\n".join(lines))


def parse_spec(data: Any) -> JobSpec:
    """Validate raw data into a JobSpec, or raise SpecError listing every problem with its field path."""
    if not isinstance(data, dict):
        raise UserError("The spec must be a mapping of sections (model, data, method, hyperparameters, output).")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        problems = describe_errors(error)
        # Pydantic skips a section's cross-field check when one of its fields failed; run the
        # stopping-rule check on the raw values too, so every problem is reported at once.
        raw = data.get("hyperparameters")
        if isinstance(raw, dict) and not any(path == "hyperparameters" for path, _ in problems):
            raw = HyperparametersSection._max_steps_replaces_default_epochs(raw)
            default = HyperparametersSection.model_fields["epochs"].default
            problem = stopping_rule_problem(raw.get("epochs", default), raw.get("max_steps"))
            if problem:
                problems.append(("hyperparameters", problem))
        raise SpecError(problems) from None


def describe_errors(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field. Check the spelling; `python app.py train --help-spec` lists every field."
        for line in message.splitlines():
            # cross-field messages start with the field they are about; use it as the path
            named = re.match(r"^([a-z_]+\.[a-z_]+):? ", line)
            problems.append((named.group(1), line) if named else (path, line))
    return problems


MAX_SPEC_BYTES = 256 * 1024  # a full spec is ~2 KB; a 50 MB one took minutes and +2.8 GB to parse
MAX_SPEC_DEPTH = 10  # sections hold fields, a few hold a list or a mapping: nothing nests deeper


def load_spec(path: str | Path) -> JobSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Spec file not found: {path}. Check the path.")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise UserError(
            f"{path} is {size / 2**20:.1f} MB; a job spec is at most {MAX_SPEC_BYTES // 1024} KB "
            "(a few lines per section). Check that this is the spec file."
        )
    try:
        text = path.read_text(encoding="utf-8")
        if flow_nesting(text) > MAX_SPEC_DEPTH:  # before PyYAML, which took 30 s on 20,000 nested brackets
            raise RecursionError
        data = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:  # PyYAML builds nested values recursively
        raise UserError(f"{path} nests deeper than a job spec can (at most {MAX_SPEC_DEPTH} levels).") from None
    except ValueError as error:  # e.g. a number of more than 4,300 digits (Python's int limit)
        raise UserError(f"{path} holds a value that cannot be read: {str(error).splitlines()[0][:160]}") from None
    if nesting(data) > MAX_SPEC_DEPTH:
        raise UserError(f"{path} nests deeper than a job spec can (at most {MAX_SPEC_DEPTH} levels).")
    return parse_spec(data)


def flow_nesting(text: str) -> int:
    """The deepest run of unclosed [ and { in the text (a cheap bound, quotes ignored)."""
    depth = deepest = 0
    for character in text:
        if character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth = max(0, depth - 1)
    return deepest


def nesting(value: Any, level: int = 0) -> int:
    """How deep lists and mappings nest (stops counting past MAX_SPEC_DEPTH)."""
    if level > MAX_SPEC_DEPTH or not isinstance(value, dict | list):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((nesting(item, level + 1) for item in items), default=level + 1)


def field_help() -> list[tuple[str, str]]:
    """Every field path with its help text, for `--help-spec` and the wizard."""
    rows = []
    for section_name, section_field in JobSpec.model_fields.items():
        annotation = section_field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for name, info in annotation.model_fields.items():
                rows.append((f"{section_name}.{name}", info.description or ""))
        else:
            rows.append((section_name, section_field.description or ""))
    return rows


@dataclass(frozen=True)
class FieldDescription:
    """What a form needs to draw one spec field: label, kind, bounds, choices (with their labels), default and help."""

    path: str
    help: str
    kind: str  # "int", "float", "bool", "choice", "text" or "list"
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    label: str = ""
    choice_labels: dict[str, str] | None = None  # plain words for the short values the spec keeps
    minimum_excluded: bool = False  # gt: the bound itself is not allowed
    maximum_excluded: bool = False  # lt

    def range_text(self) -> str:
        """The bounds in words, strict ones said as strict: "(more than 0, up to 1)"."""
        low, high = self.minimum, self.maximum
        low_text = None if low is None else f"{'more than' if self.minimum_excluded else 'at least'} {low:g}"
        high_text = None if high is None else f"{'less than' if self.maximum_excluded else 'up to'} {high:g}"
        if low is not None and high is not None and not (self.minimum_excluded or self.maximum_excluded):
            return f"(from {low:g} to {high:g})"
        shown = [text for text in (low_text, high_text) if text]
        return f"({', '.join(shown)})" if shown else ""


def describe_field(path: str) -> FieldDescription:
    section, _, name = path.partition(".")
    owner = JobSpec.model_fields[section].annotation if name else JobSpec
    info = owner.model_fields[name or section]
    annotation, optional = info.annotation, False
    arguments = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(arguments) == 1:
        annotation, optional = arguments[0], True
    bounds = {type(m).__name__: m for m in info.metadata}
    minimum = next((getattr(bounds[k], attr) for k, attr in (("Ge", "ge"), ("Gt", "gt")) if k in bounds), None)
    maximum = next((getattr(bounds[k], attr) for k, attr in (("Le", "le"), ("Lt", "lt")) if k in bounds), None)
    if get_origin(annotation) is Literal:
        kind, choices = "choice", tuple(get_args(annotation))
    else:
        kind = {int: "int", float: "float", bool: "bool", str: "text"}.get(annotation, "list")
        choices = ()
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    choice_labels = dict(extra.get("choice_labels") or {})
    if path == "data.format":  # a format's label is declared with the format itself
        from training.data.formats import FORMATS

        choice_labels.update({f.name: f.label for f in FORMATS})
    return FieldDescription(
        path,
        info.description or "",
        kind,
        info.default,
        minimum,
        maximum,
        choices,
        optional,
        label=info.title or (name or section).replace("_", " ").capitalize(),
        choice_labels=choice_labels or None,
        minimum_excluded="Gt" in bounds,
        maximum_excluded="Lt" in bounds,
    )
