"""Chat settings on a CPU, chosen from the hardware at hand and from what else is running on it.

Two choices decide how fast a small model answers on a CPU:

- **Threads.** Every matmul ends in an OpenMP barrier that waits for its slowest thread, so a thread
  that shares its core with a busy process (a training job) stalls every token. With nothing else
  running, all cores help; while a job trains (or other work keeps the cores busy), chat leaves one
  core free (`decode_threads`, decided again for each reply).
- **Weight dtype.** bf16 halves the bytes read per token, which is most of a decode step, but only a
  CPU with native bf16 (AVX-512 BF16, AMX) computes in it quickly; others emulate it several times
  slower than fp32. A CPU flag does not say how the two compare on a given machine and torch build,
  so a one-time probe (~1 s) times a decode-shaped matmul in each and keeps the faster; the answer is
  cached per CPU kind and torch version in the model cache folder (`chat_dtype_name`).

LATHE_CHAT_DTYPE=fp32|bf16 and OMP_NUM_THREADS, when set, are the person's choice and are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from training.hardware import cpu_flags, cpu_has_fast_bf16

PROBE_SHAPE = (576, 1536)  # the embedded model's hidden and MLP sizes: a decode step is such mat-vecs
PROBE_LAYERS = 24  # 85 MB of fp32 weights: more than a core's caches hold, as a model's weights are
PROBE_ROUNDS = 5
BUSY_CACHE_SECONDS = 5.0
_busy: tuple[float, bool] | None = None  # (when, whether a worker ran)
_refreshing = threading.Lock()


def cpu_kind() -> str:
    """The CPU's model name and what it offers for this choice, e.g. 'Intel Xeon ... (2 cores, AVX-512 BF16)'."""
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = " ".join(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    flags = cpu_flags()
    offers = (
        "AMX + AVX-512 BF16"
        if {"amx_bf16", "avx512_bf16"} <= flags
        else "AVX-512 BF16"
        if "avx512_bf16" in flags
        else "AVX-512, no bf16"
        if "avx512f" in flags
        else "AVX2, no bf16"
        if "avx2" in flags
        else "no AVX2"
    )
    return f"{name} ({usable_cores()} cores, {offers})"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def training_running() -> bool:
    """Is a Lathe training worker running on this machine now (any job, from the wizard or the CLI)?

    Listing the processes takes from milliseconds to half a second on a busy machine, which must not
    delay an answer's first token: after the first call the last answer is returned at once and a
    stale one (older than BUSY_CACHE_SECONDS) is refreshed in the background for the next reply."""
    global _busy
    if _busy is None:
        _busy = (time.monotonic(), _scan_for_workers())
    elif time.monotonic() - _busy[0] > BUSY_CACHE_SECONDS and not _refreshing.locked():
        threading.Thread(target=_refresh, daemon=True).start()
    return _busy[1]


def _refresh() -> None:
    global _busy
    with _refreshing:
        _busy = (time.monotonic(), _scan_for_workers())


def _scan_for_workers() -> bool:
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        command = process.info.get("cmdline") or []
        if "training.worker" in command or any(part.endswith("training/worker.py") for part in command):
            return True
    return False


def machine_busy() -> bool:
    """Is other work taking this CPU's cores: a training worker, or more runnable work than cores (the
    one-minute load average, which counts a reply of our own as up to one core's worth more)?"""
    return training_running() or os.getloadavg()[0] >= usable_cores() + 1


def decode_threads() -> int:
    """Threads for one reply: every core when nothing else needs them, one core left over otherwise."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = usable_cores()
    return max(1, cores - 1) if machine_busy() else cores


@contextlib.contextmanager
def threads(count: int | None):
    """Use `count` intra-op threads for a while, then give the process back its own setting (the UI, or
    tests running in the same process, keep theirs)."""
    import torch

    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _cache_file() -> Path:
    from training.models import cache_root

    return cache_root() / "cpu_tuning.json"


def _machine_key() -> str:
    import torch

    flags = " ".join(sorted(cpu_flags()))
    return hashlib.sha256(f"{cpu_kind()}|{flags}|{torch.__version__}".encode()).hexdigest()[:16]


def probe_dtypes() -> dict[str, float]:
    """Seconds per decode-shaped pass in fp32 and in bf16: one mat-vec through each of PROBE_LAYERS weight
    matrices, more than the CPU caches hold, as a decode step reads its weights from memory (the fastest
    of alternated rounds, since a busy machine only ever slows a round down)."""
    import torch

    rows, columns = PROBE_SHAPE
    best = {"fp32": float("inf"), "bf16": float("inf")}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    weights = {
        name: [torch.randn(columns, rows).to(dtype) for _ in range(PROBE_LAYERS)] for name, dtype in dtypes.items()
    }
    vectors = {name: torch.randn(1, rows).to(dtype) for name, dtype in dtypes.items()}
    with torch.inference_mode():
        for name in dtypes:  # warm up: the first call picks and loads its kernels
            torch.nn.functional.linear(vectors[name], weights[name][0])
        for _ in range(PROBE_ROUNDS):
            for name in dtypes:
                started = time.perf_counter()
                for matrix in weights[name]:
                    torch.nn.functional.linear(vectors[name], matrix)
                best[name] = min(best[name], time.perf_counter() - started)
    return best


def chat_dtype_name(refresh: bool = False) -> tuple[str, str]:
    """'bf16' or 'fp32' for chat weights on this CPU, and why (forced, probed now, or probed before)."""
    forced = os.environ.get("LATHE_CHAT_DTYPE", "").strip().lower()
    if forced in ("fp32", "bf16"):
        return forced, "set by LATHE_CHAT_DTYPE"
    path, key = _cache_file(), _machine_key()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not refresh and key in cached:
        entry = cached[key]
        return entry[
            "dtype"
        ], f"probed on this CPU before (fp32 {entry['fp32_ms']:.1f} ms, bf16 {entry['bf16_ms']:.1f} ms)"
    times = probe_dtypes()
    # Ties go to bf16 only where the CPU computes in it natively: then it also halves the weights' memory
    chosen = (
        "bf16" if times["bf16"] < times["fp32"] or (cpu_has_fast_bf16() and times["bf16"] <= times["fp32"]) else "fp32"
    )
    cached[key] = {"dtype": chosen, "fp32_ms": times["fp32"] * 1e3, "bf16_ms": times["bf16"] * 1e3, "cpu": cpu_kind()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1))
    except OSError:
        pass  # a read-only cache only means probing again next time
    return chosen, f"probed now (fp32 {times['fp32'] * 1e3:.1f} ms, bf16 {times['bf16'] * 1e3:.1f} ms per pass)"


def chat_dtype():
    """The torch dtype for chat weights on the CPU."""
    import torch

    return torch.bfloat16 if chat_dtype_name()[0] == "bf16" else torch.float32
