"""The command line that starts a job's worker: one process, or one per device under `accelerate launch`.

Every process runs the same `training.worker`; accelerate sets RANK / WORLD_SIZE and the Trainer
does data-parallel training (DDP; gloo on a CPU, NCCL on GPUs). Only rank 0 writes events, status
and files, so a multi-process job looks exactly like a single-process one to the JobManager.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from training.spec import JobSpec


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_command(spec: JobSpec, job_dir: Path, resume: bool) -> list[str]:
    """`python -m training.worker JOB_DIR`, under `accelerate launch` when the spec asks for several devices."""
    worker = ["-m", "training.worker", str(job_dir), *(["--resume"] if resume else [])]
    processes = spec.hyperparameters.devices
    if processes <= 1:
        return [sys.executable, *worker]
    # `--multi_gpu` is accelerate's torchrun launcher; without a GPU its processes train on the CPU over
    # gloo (how the tests run it): `--cpu` would pick the single-process launcher instead
    where = ["--multi_gpu"]
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--num_processes", str(processes), "--num_machines", "1", *where,
        "--main_process_port", str(free_port()),  # two jobs' launchers must not meet on one port
        "--num_cpu_threads_per_process", str(max(1, (os.cpu_count() or 1) // processes)),
        *worker,
    ]  # fmt: skip
