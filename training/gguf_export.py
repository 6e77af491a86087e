"""A finished job as one GGUF file for llama.cpp, Ollama and LM Studio, with an Ollama Modelfile beside it.

The job is first exported merged (training.export.export_merged: chained jobs and full fine-tunes
included), then llama.cpp's own converter turns that folder into GGUF (f16, bf16 or q8_0 directly)
and llama.cpp's quantizer makes q4_k_m from the f16 file. The file carries the chat template and, as
its end-of-sequence token, the token that ends an assistant turn in that template (ChatML's
<|im_end|>, Llama 3's <|eot_id|>), so a runtime that reads the file's metadata stops after the answer
without extra flags. Tools: training.llama_cpp_tools; why these: docs/gguf.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from training import jobdir
from training.errors import UserError
from training.export import ANSWER_MARK, _fresh_folder, _write_companions, end_of_turn_ids, export_merged, load_job_spec
from training.llama_cpp_tools import converter_env, converter_script, quantize, remove, supported_architectures

QUANTS = ("q8_0", "q4_k_m", "f16", "bf16")
# Bits per weight of each file type, measured on the embedded model's files (135M; its embedding is
# 28% of the weights and stays at 6+ bits in q4_k_m, so larger models come out a little smaller).
BITS_PER_WEIGHT = {"f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q4_k_m": 5.6}
METADATA_BYTES_PER_TOKEN = 40  # the vocabulary (text, score, type) and BPE merges: 1.75 MB for a 49k vocabulary
QUANT_HELP = {
    "q8_0": "q8_0: 8-bit, answers as the trained model does (recommended)",
    "q4_k_m": "q4_k_m: 4-bit, the smallest and fastest; answers may drift slightly",
    "f16": "f16: 16-bit, exact",
    "bf16": "bf16: 16-bit, exact, for runtimes that prefer bf16",
}


def gguf_name(job_dir: Path, quant: str) -> str:
    return f"{Path(job_dir).name}-{quant}.gguf"


def _model_config(job_dir: Path, spec) -> dict | None:
    """The config.json of the weights the export starts from (a full fine-tune's own, or the base model's)."""
    from training.models import resolve_model, starting_point

    if (job_dir / "model" / "config.json").is_file():
        return json.loads((job_dir / "model" / "config.json").read_text())
    base_ref = resolve_model(starting_point(spec)[0])
    config = Path(base_ref) / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(base_ref, "config.json", revision=spec.model.revision)
        config = Path(cached) if isinstance(cached, str) else None
    return json.loads(config.read_text()) if config else None


def model_shape(job_dir: Path):
    """The model's shape, from its config alone (None when the config is not on this machine)."""
    from training.sizes import ModelShape

    config = _model_config(Path(job_dir), load_job_spec(Path(job_dir)))
    try:
        return None if config is None else ModelShape.from_config(config)
    except (KeyError, TypeError, ValueError):
        return None


def parameter_count(job_dir: Path) -> int | None:
    shape = model_shape(job_dir)
    return None if shape is None else shape.parameters()


def estimate_bytes(job_dir: Path, quant: str) -> int | None:
    """The GGUF file's size before it is made."""
    shape = model_shape(job_dir)
    if shape is None:
        return None
    return round(shape.parameters() * BITS_PER_WEIGHT[quant] / 8) + shape.vocab * METADATA_BYTES_PER_TOKEN


def check_exportable(job_dir: Path, quant: str) -> None:
    """Every reason the export cannot work, found before minutes go into merging."""
    job_dir = Path(job_dir)
    spec = load_job_spec(job_dir)
    if quant not in QUANTS:
        raise UserError(f"--quant: {quant!r} is not one of {', '.join(QUANTS)}.")
    if spec.method.objective == "reward":
        raise UserError(
            f"{job_dir.name} is a reward model: it scores answers, and GGUF runtimes chat. "
            "Export it with --merged to get the scorer as safetensors."
        )
    config = _model_config(job_dir, spec) or {}
    architecture = (config.get("architectures") or ["(unknown)"])[0]
    if architecture not in supported_architectures():
        raise UserError(
            f"model.name_or_path: llama.cpp's converter cannot handle the {architecture} architecture of "
            f"{spec.model.name_or_path}, so there is no GGUF for it. Export with --merged instead."
        )


def check_disk(out_dir: Path, needed: int) -> None:
    folder = Path(out_dir).expanduser().resolve()
    while not folder.exists():
        folder = folder.parent
    free = free_bytes(folder)
    if needed > free:
        raise UserError(
            f"--out: the GGUF export needs about {needed / 2**30:.1f} GB free on {folder} (the merged model "
            f"and the file while it is made), but it has {free / 2**30:.1f} GB. "
            "Free some space, or give --out on another disk."
        )


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def export_gguf(job_dir: Path, out_dir: Path, quant: str = "q8_0", token: str | None = None, say=print) -> Path:
    """Write OUT/<job>-<quant>.gguf, OUT/Modelfile and the model card; returns the .gguf path."""
    job_dir = Path(job_dir)
    check_exportable(job_dir, quant)
    parameters = parameter_count(job_dir)
    if parameters is not None:  # at the peak: merged safetensors (fp32 at most), an f16 intermediate, the file
        check_disk(out_dir, parameters * (4 + 2) + estimate_bytes(job_dir, quant))
    out_dir = _fresh_folder(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".gguf-", dir=out_dir))  # same disk; removed whatever happens
    try:
        say("merging the adapter into the model...")
        merged = export_merged(job_dir, staging / "merged", token=token)
        target, stop_token = _folder_to_gguf(merged, staging, out_dir / gguf_name(job_dir, quant), quant, say)
        (out_dir / "Modelfile").write_text(modelfile(merged, target.name, stop_token, job_dir))
        _write_companions(job_dir, out_dir, merged=True)
    finally:
        remove(staging)
    return target


def export_base_gguf(job_dir: Path, out_dir: Path, quant: str = "q8_0", token: str | None = None, say=print) -> Path:
    """The model the job started from (the base, with any earlier jobs' adapters merged) as OUT/base-<quant>.gguf:
    the chat tab's base answers, through the same engine as the tuned ones."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.models import merge_adapters, starting_point

    job_dir = Path(job_dir)
    check_exportable(job_dir, quant)
    spec = load_job_spec(job_dir)
    out_dir = _fresh_folder(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".gguf-", dir=out_dir))
    try:
        base_ref, earlier = starting_point(spec)
        hub = {"revision": spec.model.revision, "token": token or False}
        model = merge_adapters(AutoModelForCausalLM.from_pretrained(base_ref, dtype=torch.float32, **hub), earlier)
        weights = job_dir / ("adapter" if (job_dir / "adapter").is_dir() else "model")
        model.save_pretrained(staging / "base")
        AutoTokenizer.from_pretrained(str(weights)).save_pretrained(staging / "base")  # the job's chat template
        target, _ = _folder_to_gguf(staging / "base", staging, out_dir / f"base-{quant}.gguf", quant, say)
    finally:
        remove(staging)
    return target


def _folder_to_gguf(merged: Path, staging: Path, target: Path, quant: str, say) -> tuple[Path, str]:
    """Convert a standalone Hugging Face folder (changed in place) to `target`; returns it and its stop token."""
    stop_token = _make_end_of_turn_the_eos(merged)
    direct = quant if quant in ("f16", "bf16", "q8_0") else "f16"
    converted = staging / f"model-{direct}.gguf"
    say(f"converting to GGUF ({direct}) with llama.cpp's converter...")
    _convert(merged, converted, direct)
    if quant != direct:
        say(f"quantizing to {quant} with llama.cpp's quantizer...")
        quantize(converted, staging / f"model-{quant}.gguf", quant)
        converted = staging / f"model-{quant}.gguf"
    converted.rename(target)
    return target, stop_token


def _make_end_of_turn_the_eos(merged: Path) -> str:
    """Name the chat template's end-of-turn token as the tokenizer's EOS in the (throwaway) merged copy, so
    the converter writes it as the GGUF's stop token. Returns that token's text."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    stop_id = end_of_turn_ids(tokenizer)[-1]
    stop_token = tokenizer.convert_ids_to_tokens(stop_id)
    config_path = merged / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token"] = stop_token
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False))
    for name in ("config.json", "generation_config.json"):  # where the converter also looks for the EOS id
        path = merged / name
        if path.is_file():
            data = json.loads(path.read_text())
            if "eos_token_id" in data:
                data["eos_token_id"] = stop_id
                path.write_text(json.dumps(data, indent=2))
    return stop_token


def _convert(merged: Path, target: Path, outtype: str) -> None:
    log = target.with_suffix(".log")
    with log.open("w") as output:
        done = subprocess.run(
            [sys.executable, str(converter_script()), str(merged), "--outtype", outtype, "--outfile", str(target)],
            stdout=output, stderr=subprocess.STDOUT, env=converter_env(),
        )  # fmt: skip
    if done.returncode != 0 or not target.is_file():
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        raise UserError(f"--format gguf: llama.cpp's converter failed: {(lines or ['no output'])[-1][:300]}")


def default_system_prompt(tokenizer) -> str | None:
    """The system text the chat template puts in when a conversation has none (SmolLM2's "You are a helpful
    AI assistant named SmolLM..."), found by rendering with and without a system message."""
    system_mark = "Lathe-system-probe"
    user = {"role": "user", "content": ANSWER_MARK}
    try:
        with_system = tokenizer.apply_chat_template([{"role": "system", "content": system_mark}, user], tokenize=False)
        without = tokenizer.apply_chat_template([user], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that refuses a system message has no default either
        return None
    if system_mark not in with_system:
        return None
    before, after = with_system.split(system_mark, 1)
    if without.startswith(before) and without.endswith(after) and len(without) > len(before) + len(after):
        return without[len(before) : len(without) - len(after)]
    return None


def trained_system_prompt(job_dir: Path, tokenizer) -> str | None:
    """The system message the job's rows carried (the most common one, when most rows had one), else the
    template's default: what the model saw while it learned."""
    rows = job_dir / jobdir.PREPARED_DATA / "train.jsonl"
    found: Counter[str] = Counter()
    total = 0
    if rows.is_file():
        for line in rows.read_text().splitlines():
            messages = json.loads(line).get("messages") or []
            total += 1
            if messages and messages[0].get("role") == "system":
                found[messages[0]["content"]] += 1
    if found and found.most_common(1)[0][1] * 2 > total:
        return found.most_common(1)[0][0]
    return default_system_prompt(tokenizer)


# Ollama's Go template for ChatML (Qwen2, SmolLM2). Other templates: Ollama reads the GGUF's own.
CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def modelfile(merged: Path, gguf_file: str, stop_token: str, job_dir: Path) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    lines = [
        f"# Ollama: ollama create {Path(job_dir).name} -f Modelfile && ollama run {Path(job_dir).name}",
        f"FROM ./{gguf_file}",
    ]
    if "<|im_start|>" in (tokenizer.chat_template or ""):
        lines.append(f'TEMPLATE """{CHATML_TEMPLATE}"""')
    else:
        lines.append("# TEMPLATE: none here; Ollama reads the chat template stored in the GGUF file.")
    lines.append(f'PARAMETER stop "{stop_token}"')
    system = trained_system_prompt(Path(job_dir), tokenizer)
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def read_gguf_metadata(path: Path) -> dict:
    """A GGUF file's chat template and stop token, read with the `gguf` package (for checks and tests)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key):
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    tokens = value("tokenizer.ggml.tokens")
    eos = value("tokenizer.ggml.eos_token_id")
    return {
        "architecture": value("general.architecture"),
        "chat_template": value("tokenizer.chat_template"),
        "eos_token_id": eos,
        "eos_token": tokens[eos] if tokens is not None and eos is not None else None,
        "file_type": value("general.file_type"),
    }
