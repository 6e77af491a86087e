"""What a job keeps so anyone can run it again, with or without Lathe.

Beside spec.yaml and data.json (the sources' hashes and row counts) a job folder holds:
- prepared-data/train.jsonl (and test.jsonl): the exact rows it trained (and was validated) on, in
  TRL's conversational shape, after format detection and demo placeholders;
- environment.json: Python, the key packages' versions, the hardware, Lathe's git commit;
- reproduce.md: `python app.py train spec.yaml`, and the same run as TRL's own command line.

The TRL command is built from the very TrainingArguments the engine passes to the trainer, so it
cannot drift from what ran; tests/test_bundle.py runs it.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from training import jobdir
from training.spec import JobSpec

PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "huggingface_hub", "bitsandbytes")
TRL_COMMAND = {"sft": "sft", "dpo": "dpo", "reward": "reward", "kto": "kto"}
# Settings that only matter inside Lathe (where files go, how progress is reported)
LATHE_ONLY = {"output_dir", "report_to", "disable_tqdm", "logging_nan_inf_filter", "save_total_limit", "logging_dir"}
ROOT = Path(__file__).resolve().parents[1]


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def lathe_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def environment() -> dict:
    from dataclasses import asdict

    from training.hardware import detect_hardware

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "hardware": asdict(detect_hardware()),
        "lathe_commit": lathe_commit(),
    }


def _flag(name: str, value) -> list[str]:
    if isinstance(value, list):  # an empty list is argparse's "not given" (nargs="+" refuses no values)
        return [f"--{name}", *map(str, value)] if value else []
    if isinstance(value, dict):  # HfArgumentParser reads dict-valued settings as JSON
        return [f"--{name}", json.dumps(value)]
    return [f"--{name}", str(value)]


def changed_settings(args) -> dict:
    """The trainer settings that differ from the config class's defaults (TRL's CLI starts from those).

    The defaults come from the dataclass fields: building a second config object would reset
    accelerate's process state under the trainer that is about to use it."""
    defaults = {}
    for spec_field in dataclasses.fields(type(args)):
        if spec_field.default is not dataclasses.MISSING:
            defaults[spec_field.name] = spec_field.default
        elif spec_field.default_factory is not dataclasses.MISSING:
            default = spec_field.default_factory()
            defaults[spec_field.name] = default.to_dict() if hasattr(default, "to_dict") else default
    chosen = args.to_dict()
    # to_dict() writes a placeholder for every *_token setting; take the real value (a token we never set)
    chosen.update({k: getattr(args, k) for k in chosen if k.endswith("_token") and k != "hub_token"})
    chosen.pop("hub_token", None)
    changed = {k: v for k, v in chosen.items() if k in defaults and v != defaults[k] and k not in LATHE_ONLY}
    changed["use_cpu"], changed["bf16"], changed["fp16"] = args.use_cpu, args.bf16, args.fp16
    return {k: v for k, v in changed.items() if v is not None}


def trl_arguments(spec: JobSpec, model_reference: str, args, lora, data_dir: str, output_dir: str) -> list[str]:
    """The TRL CLI arguments for this job, from the objects the trainer got: the model, the LoRA config
    (`lora`, PEFT's LoraConfig; None for a full fine-tune) and every changed trainer setting (`args`)."""
    method = spec.method
    cli = ["--model_name_or_path", model_reference, "--dataset_name", data_dir, "--output_dir", output_dir]
    if spec.model.revision:
        cli += ["--model_revision", spec.model.revision]
    if lora is not None:
        # PEFT keeps a list of module names as a set: sorted, so the command is the same on every run
        targets = [lora.target_modules] if isinstance(lora.target_modules, str) else sorted(lora.target_modules)
        cli += ["--use_peft", "True", "--lora_r", str(lora.r), "--lora_alpha", str(lora.lora_alpha)]
        cli += ["--lora_dropout", str(lora.lora_dropout), "--lora_target_modules", *targets]
        if lora.use_dora:
            cli += ["--use_dora", "True"]
        if lora.use_rslora:
            cli += ["--use_rslora", "True"]
    if method.type == "qlora":
        cli += ["--load_in_4bit", "True", "--use_bnb_nested_quant", str(method.qlora_double_quant)]
    for name, value in changed_settings(args).items():
        cli += _flag(name, value)
    return cli


def _without(args: list[str], flag: str) -> list[str]:
    """`args` minus one `--flag value` pair."""
    if flag not in args:
        return args
    at = args.index(flag)
    return args[:at] + args[at + 2 :]


# No TRL command line reproduces these: GRPO's rewards are Lathe's own functions (training/rewards.py), and
# ORPO/CPO are TRL experimental trainers without a CLI command
NO_TRL_COMMAND = {
    "grpo": "its rewards are Lathe's own reward functions (training/rewards.py), which TRL's `trl grpo` cannot name",
    "orpo": "TRL ships ORPO as an experimental trainer without a `trl` command",
    "cpo": "TRL ships CPO/SimPO as an experimental trainer without a `trl` command",
}


def reproduce_text(spec: JobSpec, trl_args: list[str]) -> str:
    if spec.method.objective in NO_TRL_COMMAND:
        return (
            f"# Reproduce {spec.name}\n\n"
            f"With Lathe (the same spec; {jobdir.DATA_SUMMARY} holds the sources' hashes, to check the data is "
            f"unchanged):\n\n```bash\npython app.py train {jobdir.SPEC}\n```\n\n"
            f"There is no TRL command line for this job: {NO_TRL_COMMAND[spec.method.objective]}. The rows it "
            f"trained on are in {jobdir.PREPARED_DATA}/, and the trainer settings Lathe passed are:\n\n"
            f"```\n{shlex.join(trl_args)}\n```\n"
        )
    command = TRL_COMMAND[spec.method.objective]
    trl_line = shlex.join(["trl", command, *trl_args])
    on_gpus = shlex.join(["trl", command, *_without(trl_args, "--use_cpu")])
    devices = spec.hyperparameters.devices
    several = max(devices, 2)
    start = spec.model.start_from_job
    chained = (
        f"This job started from {start}'s weights. For TRL, merge them into one model first:\n\n"
        f"```bash\npython app.py export {shlex.quote(start)} --merged --out base-model\n```\n\n"
        if start
        else ""
    )
    return (
        f"# Reproduce {spec.name}\n\n"
        f"With Lathe (the same spec; {jobdir.DATA_SUMMARY} holds the sources' hashes, to check the data is "
        "unchanged):\n\n"
        f"```bash\npython app.py train {jobdir.SPEC}\n```\n\n"
        "With TRL's own command line, on the rows this job trained on (run from the job folder):\n\n"
        f"{chained}"
        f"```bash\n{trl_line}\n```\n\n"
        f"On {several} GPUs of one machine, add accelerate's options (`trl` launches through accelerate):\n\n"
        f"```bash\n{on_gpus} --num_processes {several} --multi_gpu\n```\n\n"
        "Lathe also adds what the command line cannot: its checkpoint markers and resume, the all-ranks Stop, "
        "live events, and the evaluation when training ends.\n"
    )


def write_bundle(spec: JobSpec, job_dir: Path, model_reference: str, args, lora, train_data, eval_data) -> None:
    """Write prepared-data/, environment.json and reproduce.md into the job folder."""
    job_dir = Path(job_dir)
    if spec.model.start_from_job:  # TRL cannot chain jobs: it starts from the earlier job's merged export
        model_reference = "base-model"
    data_dir = job_dir / jobdir.PREPARED_DATA
    data_dir.mkdir(exist_ok=True)
    train_data.to_json(str(data_dir / "train.jsonl"), lines=True, force_ascii=False)
    if eval_data is not None:
        eval_data.to_json(str(data_dir / "test.jsonl"), lines=True, force_ascii=False)
    (job_dir / jobdir.ENVIRONMENT).write_text(json.dumps(environment(), indent=1))
    text = reproduce_text(spec, trl_arguments(spec, model_reference, args, lora, jobdir.PREPARED_DATA, "trl-output"))
    (job_dir / jobdir.REPRODUCE).write_text(text)
