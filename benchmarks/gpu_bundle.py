"""Build .gpu-bundle/: what a GPU machine without network needs to run benchmarks/gpu_check.py.

    make gpu-bundle        # or: .venv/bin/python benchmarks/gpu_bundle.py

The GPU machine this is planned for has torch, transformers, peft and accelerate, but not trl, datasets,
pydantic or bitsandbytes, and it receives a copy of the repository of at most 64 MiB. The bundle holds:

- wheels/           Lathe's pinned versions (requirements.txt) of the libraries that drive training, and the
                    pieces they need that torch and transformers do not bring; compiled ones (pydantic-core,
                    PyYAML, multiprocess) for CPython 3.11 and 3.12 on manylinux x86_64 (transformers 5.23 needs 3.11+).
- requirements.txt  name==version of each, for `pip install --no-index --find-links wheels -r requirements.txt`,
                    which picks the wheel that fits the Python at hand.
- tokenizer/        the embedded model's tokenizer (the check's token rows need its ids and pad token).
- liger-kernel      not used by Lathe; carried so the check measures whether its kernels would help.

bitsandbytes' wheel carries kernels for seven CUDA versions (41 MB). We repack it with the CPU kernel and the
CUDA versions in BNB_CUDA only (default 130,132: the GPU machine's torch is a CUDA 13.0 build), which keeps
the bundle about a third of the carry limit. Set BNB_CUDA=none to leave bitsandbytes out.
The last lines print the bundle's size and the repository's, against the limit.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / ".gpu-bundle"
LIMIT = 64 * 2**20
PYTHONS = ("3.11", "3.12")  # transformers 5.23 (our pin) needs Python 3.11 or newer
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64"]
# Lathe's training libraries in their pinned versions (torch stays the machine's own; huggingface_hub too:
# transformers and datasets accept the 1.3x there, and 2.x would need httpx2 and a newer click as well)
PINNED = ("transformers", "trl", "peft", "accelerate", "datasets", "pydantic", "PyYAML", "bitsandbytes")
# What those need that a torch + transformers machine lacks, in the versions tested with them here
NEEDED = (
    "dill",
    "multiprocess",
    "fsspec",
    "pydantic_core",
    "annotated-types",
    "typing-inspection",
    "typing_extensions",
)
# Not a Lathe dependency: carried so the check can measure whether Liger's kernels would speed our runs up
MEASURED_ONLY = {"liger-kernel": "0.8.5"}
BNB_KERNEL = re.compile(r"bitsandbytes/libbitsandbytes_(cuda(\d+)|rocm\d+|xpu\d+)\.so$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if match:
            pins[match[1].lower()] = match[2]
    wanted = {name: pins[name.lower()] for name in PINNED}
    wanted |= {name: metadata.version(name) for name in NEEDED} | MEASURED_ONLY
    if os.environ.get("BNB_CUDA", "").lower() == "none":
        wanted.pop("bitsandbytes")
    return wanted


def download(wanted: dict[str, str], folder: Path) -> None:
    platforms = [part for platform in PLATFORMS for part in ("--platform", platform)]
    for python in PYTHONS:
        command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                   "--only-binary=:all:", "--implementation", "cp", "--python-version", python, *platforms,
                   "-d", str(folder), *(f"{name}=={version}" for name, version in wanted.items())]  # fmt: skip
        subprocess.run(command, check=True)


def slim_bitsandbytes(folder: Path, keep_cuda: set[str]) -> None:
    """Repack bitsandbytes' wheel without the kernels of other CUDA versions, ROCm and XPU (RECORD to match)."""

    def dropped(name: str) -> bool:
        match = BNB_KERNEL.search(name)
        return bool(match) and match[2] not in keep_cuda

    for wheel in folder.glob("bitsandbytes-*.whl"):
        slim = wheel.with_suffix(".slim")
        with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
            for item in source.infolist():
                if dropped(item.filename):
                    continue
                data = source.read(item)
                if item.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines()
                    data = ("\n".join(line for line in lines if not dropped(line.split(",")[0])) + "\n").encode()
                target.writestr(item, data)
        slim.replace(wheel)


def requirements(folder: Path) -> str:
    """One name==version line per package (a wheel's file name starts with name-version-)."""
    found = {}
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        found[name.lower()] = f"{name}=={version}"
    return "\n".join(found.values()) + "\n"


def copy_tokenizer(target: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("LATHE_CACHE_DIR", str(ROOT / ".cache"))
    from training.models import embedded_model_dir

    source = embedded_model_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def repository_bytes() -> int:
    """What travels besides the bundle: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum(
        (ROOT / os.fsdecode(path)).stat().st_size for path in listed if path and (ROOT / os.fsdecode(path)).is_file()
    )


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> int:
    wanted = pinned_versions()
    staging = BUNDLE.with_name(".gpu-bundle.new")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "wheels").mkdir(parents=True)
    download(wanted, staging / "wheels")
    keep = os.environ.get("BNB_CUDA", "130,132")
    slim_bitsandbytes(staging / "wheels", set(keep.split(",")))
    (staging / "requirements.txt").write_text(requirements(staging / "wheels"))
    copy_tokenizer(staging / "tokenizer")
    shutil.rmtree(BUNDLE, ignore_errors=True)
    staging.rename(BUNDLE)
    bundle, repository = folder_bytes(BUNDLE), repository_bytes()
    mib = 2**20
    print(f"bundle: {BUNDLE} {bundle / mib:.1f} MiB ({len(list((BUNDLE / 'wheels').glob('*.whl')))} wheels)")
    print(f"repository without it: {repository / mib:.1f} MiB")
    print(f"together: {(bundle + repository) / mib:.1f} MiB of the {LIMIT // mib} MiB a copy may carry")
    return 0 if bundle + repository < LIMIT * 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
