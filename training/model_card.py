"""The model card (README.md) that goes with a job's exported or pushed model.

The YAML header is huggingface_hub's `ModelCardData`, the metadata the Hub indexes (base model,
datasets, licence, tags); the body says what the model was trained on and how, the results, and
how to load it. Everything comes from the job folder: spec.yaml, data.json, events.jsonl and
eval.json (when the job was evaluated). No secrets are in any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from training import jobdir
from training.data.load import HUB_PREFIX
from training.events import parse_event
from training.spec import EMBEDDED_MODEL, JobSpec

# The embedded model is this Hub model, read from a 4-bit GGUF copy and de-quantised
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
OBJECTIVE_TAGS = {
    "sft": "sft",
    "dpo": "dpo",
    "reward": "reward-model",
    "kto": "kto",
    "grpo": "grpo",
    "orpo": "orpo",
    "cpo": "cpo",
}


def base_model_id(spec: JobSpec) -> str:
    return EMBEDDED_HUB_ID if spec.model.name_or_path == EMBEDDED_MODEL else spec.model.name_or_path


def licence_of(spec: JobSpec) -> str:
    """The catalog's licence for catalog models; 'other' (see the base model's page) for the rest."""
    from training.presets import model_catalog

    return next((m.licence for m in model_catalog() if m.id == spec.model.name_or_path), "other")


def final_metrics(job_dir: Path) -> dict[str, float]:
    """The last training loss, the last validation loss, and the evaluation's scores, where there are any."""
    metrics: dict[str, float] = {}
    events = job_dir / jobdir.EVENTS
    for line in events.read_text().splitlines() if events.is_file() else []:
        record = parse_event(line)
        if record is None:
            continue
        if record["type"] == "progress" and record.get("loss") is not None:
            metrics["train_loss"] = record["loss"]
        elif record["type"] == "eval":
            metrics["eval_loss"] = record["eval_loss"]
        elif record["type"] == "finished" and record.get("final_loss") is not None:
            metrics["mean_train_loss"] = record["final_loss"]
    evaluation = job_dir / jobdir.EVALUATION
    if evaluation.is_file():
        report = json.loads(evaluation.read_text())
        for side in ("base", "tuned"):
            for name, value in report.get(side, {}).items():
                if isinstance(value, int | float):
                    metrics[f"{side}_{name}"] = value
    return metrics


def _settings_table(spec: JobSpec) -> str:
    method, hyper = spec.method, spec.hyperparameters
    rows = [
        ("method", f"{method.type} ({method.objective})"),
        ("LoRA rank / alpha / targets", f"{method.lora_r} / {method.lora_alpha} / {method.target_modules}")
        if method.type != "full"
        else None,
        ("context length", hyper.context_length),
        ("learning rate", hyper.learning_rate),
        ("epochs / max steps", f"{hyper.epochs} / {hyper.max_steps or '-'}"),
        ("batch x accumulation", f"{hyper.batch_size} x {hyper.gradient_accumulation}"),
        ("precision", hyper.precision),
        ("seed", hyper.seed),
    ]
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for row in rows if row for name, value in [row]]
    return "\n".join(lines)


def _data_lines(job_dir: Path) -> list[str]:
    summary = job_dir / jobdir.DATA_SUMMARY
    if not summary.is_file():
        return ["(the data summary was not saved)"]
    lines = []
    for source in json.loads(summary.read_text())["sources"]:
        where = source["source"]
        # a Hub id as it is; a local file by its name only (its folder says nothing to a reader)
        name = where.removeprefix(HUB_PREFIX) if where.startswith(HUB_PREFIX) else Path(where).name
        digest = f", sha256 {source['sha256'][:12]}…" if source.get("sha256") else ""
        kept, fmt, task = source["rows_kept"], source["format"], source["task"]
        lines.append(f"- `{name}`: {kept} rows, {fmt} format, task {task}{digest}")
    return lines


def _how_to_load(spec: JobSpec, merged: bool, location: str) -> str:
    if merged or spec.method.type == "full":
        loader = "AutoModelForSequenceClassification" if spec.method.objective == "reward" else "AutoModelForCausalLM"
        return (
            "```python\n"
            f"from transformers import AutoTokenizer, {loader}\n\n"
            f'model = {loader}.from_pretrained("{location}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{location}")\n'
            "```"
        )
    return (
        "```python\n"
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{base_model_id(spec)}")\n'
        f'model = PeftModel.from_pretrained(base, "{location}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{location}")\n'
        "```"
    )


def model_card(job_dir: Path, merged: bool = False, location: str = "path/to/this/folder") -> str:
    """README.md text: Hub metadata header, then what, how, results and how to load.

    `location`: what the loading example passes to from_pretrained (the Hub repo id once pushed)."""
    from huggingface_hub import ModelCardData

    job_dir = Path(job_dir)
    spec = jobdir.load_job_spec(job_dir)
    adapter = not merged and spec.method.type != "full"
    sources = [spec.data.source, *spec.data.mix_in]
    metrics = final_metrics(job_dir)
    data = ModelCardData(
        base_model=base_model_id(spec),
        datasets=[s.removeprefix(HUB_PREFIX) for s in sources if s.startswith(HUB_PREFIX)] or None,
        license=licence_of(spec),
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-classification" if spec.method.objective == "reward" else "text-generation",
        tags=["lathe", "trl", OBJECTIVE_TAGS[spec.method.objective], spec.method.type],
    )
    embedded_note = (
        f"\nThe base model is Lathe's embedded copy of `{EMBEDDED_HUB_ID}` (its Q4_1 GGUF file, de-quantised).\n"
        if spec.model.name_or_path == EMBEDDED_MODEL
        else ""
    )
    results = "\n".join(f"| {name} | {value:.4g} |" for name, value in metrics.items())
    return (
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {spec.name}\n\n"
        f"A {'LoRA adapter for' if adapter else 'fine-tuned version of'} `{base_model_id(spec)}`, "
        f"trained with Lathe ({spec.method.type}, {spec.method.objective}).\n"
        f"{embedded_note}\n"
        "## Training data\n\n" + "\n".join(_data_lines(job_dir)) + "\n\n"
        "## Training settings\n\n" + _settings_table(spec) + "\n\n"
        "## Results\n\n" + ("| metric | value |\n|---|---|\n" + results if results else "(none recorded)") + "\n\n"
        "## How to load\n\n" + _how_to_load(spec, merged, location) + "\n\n"
        "To train it again: `python app.py train lathe-spec.yaml` (the spec is saved beside the weights).\n"
    )
