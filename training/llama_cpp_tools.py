"""llama.cpp's own tools, obtained once and cached: the converter, the quantizer and the runtime.

Why these and not a converter of our own: GGUF exports that garble or never stop (a common complaint
about peers) come from converters that drift from what llama.cpp reads. llama.cpp's
`convert_hf_to_gguf.py` is the reference converter, kept in step with the runtime, and it writes the
chat template and the special tokens into the file. Both come from one pinned release of
`llama-cpp-python`, whose source vendors llama.cpp (and the converter with its own copy of the `gguf`
package, newer than the PyPI `gguf` release of the same version number, so the converter runs with
its own copy) and which builds llama.cpp into the Python package that quantizes (`llama_model_quantize`)
and runs (`Llama`) the files. See docs/gguf.md.

- The converter: the pinned source archive is downloaded once and the converter, its `conversion`
  package and its `gguf-py` are unpacked into the cache folder; it runs in a subprocess.
- The runtime: `pip install llama-cpp-python==<pin>` compiles llama.cpp (minutes; pip keeps the built
  wheel). It is built without `-march=native`, for the AVX2 baseline, so a wheel built here and reused
  from pip's cache runs on every x86-64 machine from the last ten years, AVX-512 or not.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from training.errors import UserError
from training.models import cache_root

LLAMA_CPP_PYTHON = "0.3.36"  # pinned in requirements-dev.txt too; tested with this release only
# No -march=native: pip caches the wheel it builds, and a wheel tuned to this CPU would crash with an
# illegal instruction on one without AVX-512. LLAVA_BUILD=OFF: the multimodal library is not used.
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
_SOURCE_PREFIX = "vendor/llama.cpp/"
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")

Say = Callable[[str], None]


def converter_dir() -> Path:
    return cache_root() / f"llama.cpp-converter-{LLAMA_CPP_PYTHON}"


def converter_installed() -> bool:
    return (converter_dir() / "convert_hf_to_gguf.py").is_file()


def converter_script() -> Path:
    """The converter's path, unpacking it from the pinned source archive on first use."""
    script = converter_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        install_converter()
    return script


def install_converter(archive: Path | None = None, say: Say = print) -> Path:
    """Unpack the converter from `archive` (the pinned llama-cpp-python source), downloading it if not given."""
    target = converter_dir()
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".converter-") as tmp:
        if archive is None:
            say(f"getting llama.cpp's GGUF converter (llama-cpp-python {LLAMA_CPP_PYTHON} source, once, ~1 min)...")
            archive = _download_source(Path(tmp))
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                inner = member.name.split("/", 1)[-1]  # drop the archive's top folder
                if not inner.startswith(_SOURCE_PREFIX) or not member.isfile():
                    continue
                relative = inner[len(_SOURCE_PREFIX) :]
                if any(relative == part or relative.startswith(part.rstrip("/") + "/") for part in _CONVERTER_PARTS):
                    member.name = relative
                    tar.extract(member, unpacked, filter="data")
        if not (unpacked / "convert_hf_to_gguf.py").is_file():
            raise UserError(f"{archive} holds no llama.cpp converter (llama-cpp-python {LLAMA_CPP_PYTHON} source).")
        unpacked.rename(target)  # whole or not at all: a half-unpacked converter is never used
    return target


def _download_source(folder: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "--no-deps",
         "--no-binary", ":all:", "--disable-pip-version-check", "-q", "-d", str(folder)],
        capture_output=True, text=True,
    )  # fmt: skip
    archives = list(folder.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not archives:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"--format gguf: could not download llama.cpp's converter (llama-cpp-python {LLAMA_CPP_PYTHON}): "
            f"{last}. Check the network, or run `make dev` once where it can reach the package index."
        )
    return archives[0]


def converter_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use its own gguf-py, not the older PyPI `gguf`
    return env


def supported_architectures() -> set[str]:
    """The Hugging Face architectures (config.json `architectures`) this converter knows, cached beside it."""
    cached = converter_dir() / "supported-architectures.json"
    if cached.is_file():
        return set(json.loads(cached.read_text()))
    script = converter_script()
    done = subprocess.run(
        [sys.executable, str(script), "--print-supported-models"], capture_output=True, text=True, env=converter_env()
    )
    text_models = (done.stdout + done.stderr).split("MMPROJ models:")[0]  # vision towers are not chat models
    names = sorted({line[4:].strip() for line in text_models.splitlines() if line.startswith("  - ")})
    if done.returncode != 0 or not names:
        raise UserError(f"llama.cpp's converter in {script.parent} does not run: {done.stderr.strip()[-300:]}")
    cached.write_text(json.dumps(names))
    return set(names)


def runtime_installed() -> bool:
    """Whether llama.cpp's Python runtime (llama-cpp-python) is importable here."""
    return importlib.util.find_spec("llama_cpp") is not None


def ensure_runtime(say: Say = print) -> None:
    """Build and install llama.cpp's runtime on first use (minutes on a 2-core CPU; pip caches the wheel)."""
    if runtime_installed():
        return
    say(
        f"building llama.cpp (llama-cpp-python {LLAMA_CPP_PYTHON}) once for GGUF files: a long compile (half an "
        "hour or more on a busy 2-core CPU), kept for next time..."
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
         f"llama-cpp-python=={LLAMA_CPP_PYTHON}"],
        env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS}, capture_output=True, text=True,
    )  # fmt: skip
    importlib.invalidate_caches()
    if done.returncode != 0 or not runtime_installed():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"--quant: building llama.cpp failed ({last}). It needs a C++ compiler and cmake "
            "(Debian: apt-get install build-essential cmake); or export --quant f16, bf16 or q8_0, which need no build."
        )


def quantize(source: Path, target: Path, quant: str) -> None:
    """llama.cpp's quantizer (`llama_model_quantize`), in a fresh process so a crash in C cannot take the app down."""
    ensure_runtime()
    script = (
        "import sys, llama_cpp\n"
        "params = llama_cpp.llama_model_quantize_default_params()\n"
        f"params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_{quant.upper()}\n"
        "params.nthread = 0\n"
        "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(source), str(target)], capture_output=True, text=True)
    if done.returncode != 0 or not target.is_file():
        why = done.stderr.strip()[-300:] or f"exit status {done.returncode}"
        raise UserError(f"--quant {quant}: llama.cpp's quantizer failed: {why}")


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


if __name__ == "__main__":  # `make dev`: unpack the converter now rather than on the first export
    print(f"llama.cpp's GGUF converter: {install_converter()}")
