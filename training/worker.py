"""`python -m training.worker JOB_DIR [--resume]`: run one job in its own process.

Training lives in a child process so that an out-of-memory error, a CUDA fault or `kill -9`
can never take the app down, and so GPU memory is really freed when a job ends. Everything the
worker has to say goes to files in JOB_DIR (never to a pipe nobody reads): its events, its status
with a heartbeat, and its stdout and stderr, which the JobManager redirects to the worker log (the
folder's layout is `training.jobdir`'s).

Stop is cooperative: the JobManager creates the stop file (or sends SIGTERM) and the engine ends
at the next step boundary after saving a checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import fields, replace
from pathlib import Path

import psutil

from training import jobdir, redact
from training.distributed import rank
from training.errors import UserError
from training.events import Event, Failed, Finished, Log
from training.jobdir import write_status

HEARTBEAT_SECONDS = 2.0
# Packages transformers, PEFT and TRL import whenever they are installed, used only by some jobs: hidden from a
# worker whose job does not use them (the libraries then see them as not installed). Each import cost seconds
# at every job start: bitsandbytes pulls in torch's compiler stack, and the trackers their own (docs/benchmarks.md).
TRACKER_MODULES = {"wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


class EventWriter:
    def __init__(self, job_dir: Path):
        self.file = open(job_dir / jobdir.EVENTS, "a", encoding="utf-8")  # noqa: SIM115 - open for the run
        self.lock = threading.Lock()
        self.last: Event | None = None

    def __call__(self, event: Event) -> None:
        # A message may quote an exception's text, and that may quote a token (a server echoing a header)
        masked = {f.name: redact.redact(v) for f in fields(event) if isinstance(v := getattr(event, f.name), str)}
        event = replace(event, **masked)
        with self.lock:
            self.file.write(event.to_json() + "\n")
            self.file.flush()
            self.last = event


def explain_failure(error: BaseException) -> tuple[str, str]:
    """A plain message and a suggestion for an exception raised while training."""
    text = redact.redact(f"{type(error).__name__}: {error}")
    if isinstance(error, UserError):
        return str(error), ""
    if "out of memory" in text.lower() or isinstance(error, MemoryError):
        return (
            "The job ran out of memory.",
            "Try a smaller batch size (with more gradient accumulation), a shorter context length, "
            "gradient checkpointing on, or QLoRA.",
        )
    return (
        f"Training failed: {text.splitlines()[0][:500]}",
        f"The full error is in {jobdir.WORKER_LOG} in the job folder.",
    )


def _heartbeat(job_dir: Path, done: threading.Event) -> None:
    while not done.wait(HEARTBEAT_SECONDS):
        write_status(job_dir, heartbeat=time.time())


def unused_packages(spec) -> list[str]:
    """The optional packages `spec`'s job does not need."""
    unused = [module for tracker, module in TRACKER_MODULES.items() if tracker not in spec.output.report_to]
    if spec.method.type != "qlora" and not _may_be_quantized(spec):
        unused.append("bitsandbytes")
    return unused


def hide_unused_packages(spec) -> list[str]:
    """Hide from this process the optional packages `spec` does not need; the names hidden."""
    hidden = [name for name in unused_packages(spec) if name not in sys.modules]  # imported already: too late
    for name in hidden:
        sys.modules[name] = None  # `import name` raises ImportError; importlib.util.find_spec(name) is None
    return hidden


def _may_be_quantized(spec) -> bool:
    """A model saved quantized (a quantization_config in its config.json) needs bitsandbytes to load, whatever
    the method; a Hub model cannot be checked before it is downloaded, so it keeps bitsandbytes."""
    import json

    from training.spec import EMBEDDED_MODEL

    if spec.model.name_or_path == EMBEDDED_MODEL and not spec.model.start_from_job:
        return False  # our own model, shipped unquantized
    config = Path(spec.model.name_or_path).expanduser() / "config.json"
    if spec.model.start_from_job or not config.is_file():
        return True
    try:
        return "quantization_config" in json.loads(config.read_text())
    except (OSError, ValueError):
        return True


def _follower(job_dir: Path, resume: bool) -> int:
    """Ranks 1..N-1 of a multi-process job: train alongside rank 0, which alone writes the job's files."""
    from training.spec import load_spec

    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    token = os.environ.pop("HF_TOKEN", None)
    redact.register_secret(token)

    def should_stop() -> bool:
        return stop_requested.is_set() or jobdir.stop_requested(job_dir)

    try:
        spec = load_spec(jobdir.spec_file(job_dir))
        hide_unused_packages(spec)
        from training.engine import run_job

        run_job(spec, job_dir, lambda event: None, should_stop, token=token, resume=resume)
    except BaseException:  # noqa: BLE001 - rank 0 reports the job's failure; this rank's trace goes to worker.log
        traceback.print_exc()
        return 1
    return 0


def main(job_dir: Path, resume: bool = False) -> int:
    from training.spec import load_spec

    job_dir = Path(job_dir).resolve()
    # Before anything logs: worker.log (this process's stdout and stderr) and every log record are masked
    redact.install()
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"  # never a token saved on this machine (before any HF import)
    if rank() != 0:
        return _follower(job_dir, resume)
    emit = EventWriter(job_dir)
    stop_requested = threading.Event()
    # SIGTERM asks for the same cooperative stop as the STOP file; the Trainer then saves and exits.
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    # The token arrives in the environment (never argv, which `ps` shows); take it out so nothing
    # this process starts inherits it by accident.
    token = os.environ.pop("HF_TOKEN", None)
    redact.register_secret(token)  # masked even if it is not shaped like a Hugging Face token

    # pid + the process's own start time identify this worker; a reused pid will not match both
    process_started = psutil.Process().create_time()
    write_status(
        job_dir,
        state=jobdir.RUNNING,
        pid=os.getpid(),
        process_started=process_started,
        started_at=time.time(),
        heartbeat=time.time(),
    )
    done = threading.Event()
    threading.Thread(target=_heartbeat, args=(job_dir, done), daemon=True).start()

    def should_stop() -> bool:
        return stop_requested.is_set() or jobdir.stop_requested(job_dir)

    try:
        spec = load_spec(jobdir.spec_file(job_dir))
        hide_unused_packages(spec)  # before the training stack is imported
        from training.engine import run_job

        run_job(spec, job_dir, emit, should_stop, token=token, resume=resume)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the job record
        traceback.print_exc()
        message, hint = explain_failure(error)
        emit(Failed(message=message, hint=hint))
        done.set()
        write_status(job_dir, state=jobdir.FAILED, ended_at=time.time(), message=message, hint=hint)
        return 2 if isinstance(error, UserError) else 1
    done.set()
    finished = emit.last if isinstance(emit.last, Finished) else None
    state = jobdir.STOPPED if finished and finished.stopped_early else jobdir.COMPLETED
    emit(Log(message=f"job {state}"))
    write_status(job_dir, state=state, ended_at=time.time())
    return 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    resume = "--resume" in arguments
    folders = [a for a in arguments if a != "--resume"]
    if len(folders) != 1:
        sys.exit("usage: python -m training.worker JOB_DIR [--resume]")
    sys.exit(main(Path(folders[0]), resume=resume))
