"""Hand a finished job's model over in the layouts other tools load: the adapter, or a merged model.

- The adapter (LoRA/QLoRA jobs): the PEFT folder as training saved it, which
  `PeftModel.from_pretrained(base, folder)` loads, with the tokenizer beside it.
- A merged model: the base weights with the adapter folded in, saved as safetensors that
  `AutoModelForCausalLM.from_pretrained(folder)` loads on its own, with the tokenizer, the chat
  template and a generation config whose stop tokens include the token that ends an assistant turn
  in the chat template. Exports that keep generating past the answer (a complaint about peers) come
  from a generation config that stops only on a different end-of-text token.

Both folders get the job's model card (README.md) and the job's spec beside the weights.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from training import jobdir
from training.errors import UserError
from training.jobdir import load_job_spec
from training.models import merge_adapters, starting_point

ANSWER_MARK = "Lathe-end-of-turn-probe"  # an answer text no template changes, to find what follows it


def _fresh_folder(out_dir: Path) -> Path:
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"--out: {out_dir} is not empty. Give a new folder, or empty this one first.")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _write_companions(job_dir: Path, out_dir: Path, merged: bool) -> None:
    """The model card and the spec travel with the weights, so the folder explains itself."""
    from training.model_card import model_card

    (out_dir / jobdir.MODEL_CARD).write_text(model_card(job_dir, merged=merged))
    shutil.copyfile(jobdir.spec_file(job_dir), out_dir / "lathe-spec.yaml")


def export_adapter(job_dir: Path, out_dir: Path) -> Path:
    """Copy the job's adapter folder (standard PEFT layout) to `out_dir`."""
    job_dir = Path(job_dir)
    spec = load_job_spec(job_dir)
    if spec.method.objective == "reward":
        raise UserError(f"{job_dir.name} is a reward model; export it with --merged to get a standalone scorer.")
    if not jobdir.has_adapter(job_dir):
        what = "a full fine-tune: its model is already merged" if (job_dir / jobdir.MODEL).is_dir() else "not finished"
        raise UserError(f"{job_dir.name} has no adapter ({what}). Use --merged to export the whole model.")
    if spec.model.start_from_job:
        raise UserError(
            f"{job_dir.name} was trained on top of {Path(spec.model.start_from_job).name}: its adapter only works "
            "over that job's weights. Export with --merged to get one model that holds both."
        )
    out_dir = _fresh_folder(out_dir)
    shutil.copytree(job_dir / jobdir.ADAPTER, out_dir, dirs_exist_ok=True)
    _write_companions(job_dir, out_dir, merged=False)
    return out_dir


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token ids that end an assistant answer: the tokenizer's EOS, plus whatever special token the
    chat template writes right after an assistant message (e.g. ChatML's <|im_end|>, Llama 3's <|eot_id|>)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if getattr(tokenizer, "chat_template", None):
        conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ANSWER_MARK}]
        rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
        after = rendered.split(ANSWER_MARK, 1)[-1]
        following = tokenizer(after, add_special_tokens=False)["input_ids"]
        special = set(tokenizer.all_special_ids)
        first_special = next((token for token in following if token in special), None)
        if first_special is not None and first_special not in ids:
            ids.append(first_special)
    return ids


def _generation_config(model, tokenizer):
    config = model.generation_config
    stops = end_of_turn_ids(tokenizer)
    configured = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    config.eos_token_id = list(dict.fromkeys([t for t in configured if t is not None] + stops))
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    return config


def export_merged(job_dir: Path, out_dir: Path, token: str | None = None) -> Path:
    """One standalone model: the base (and any earlier job's adapters) with this job's adapter merged in."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    job_dir = Path(job_dir)
    spec = load_job_spec(job_dir)
    adapter_dir, model_dir = job_dir / jobdir.ADAPTER, job_dir / jobdir.MODEL
    if not (adapter_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
        raise UserError(f"{job_dir.name} has no adapter/ or model/ yet. Let it finish, or resume it first.")
    out_dir = _fresh_folder(out_dir)
    auto = AutoModelForSequenceClassification if spec.method.objective == "reward" else AutoModelForCausalLM
    base_ref, earlier = starting_point(spec)
    # Merge at full precision (rounding the sum once), then save in the base model's own dtype.
    hub = {"revision": spec.model.revision, "token": token or False}
    if (model_dir / "config.json").is_file():  # full fine-tune, or a job that saved its merged model
        model = auto.from_pretrained(str(model_dir), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    else:
        from peft import PeftModel

        model = merge_adapters(auto.from_pretrained(base_ref, dtype=torch.float32, **hub), earlier)
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    saved_dtype = getattr(model.config, "dtype", None)
    if isinstance(saved_dtype, torch.dtype) and saved_dtype != torch.float32:
        model = model.to(saved_dtype)
    if spec.method.objective != "reward":
        model.generation_config = _generation_config(model, tokenizer)
    # Write into a staging folder first: a failed export leaves nothing that looks complete
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        model.save_pretrained(staging)  # safetensors by default
        tokenizer.save_pretrained(staging)
        for item in staging.iterdir():
            item.rename(out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_companions(job_dir, out_dir, merged=True)
    return out_dir


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """A .zip of an exported folder, for the browser's download button."""
    zip_path = Path(zip_path)
    archive = shutil.make_archive(str(zip_path.with_suffix("")), "zip", root_dir=folder)
    return Path(archive)
