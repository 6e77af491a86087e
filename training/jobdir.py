"""The job folder: the one module that knows its file names, its states and its stop file.

A job is a folder under the jobs directory. The worker writes it, the JobManager watches it, and the
CLI, the chat, the export and the results read it; all of them ask this module where things are, so a
file is renamed (or a state added) in one place. What the folder holds:

- spec.yaml       the job spec (never a secret)
- status.json     state, pid, start time and a heartbeat refreshed every few seconds (written atomically)
- events.jsonl    one JSON event per line, appended and flushed as they happen
- worker.log      the worker's stdout and stderr
- STOP            present = a cooperative stop was asked for
- data.json       what the job trained on (each source's hash, format, row counts and labels)
- checkpoints/    checkpoint-N folders; adapter/ or model/ the final weights; README.md the model card
- eval.json, prepared-data/, environment.json, reproduce.md, tensorboard/   evaluation and reproduction
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from training import redact
from training.errors import UserError

SPEC = "spec.yaml"
STATUS = "status.json"
EVENTS = "events.jsonl"
WORKER_LOG = "worker.log"
STOP = "STOP"
DATA_SUMMARY = "data.json"
EVALUATION = "eval.json"
MODEL_CARD = "README.md"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
MODEL = "model"
PREPARED_DATA = "prepared-data"
ENVIRONMENT = "environment.json"
REPRODUCE = "reproduce.md"
TENSORBOARD = "tensorboard"
SWEEP = "sweep.json"  # which sweep a job belongs to, and its point

# A job's states, in the order a job passes through them. A final state never changes by itself.
QUEUED, RUNNING, COMPLETED, STOPPED, FAILED, INTERRUPTED = (
    "queued",
    "running",
    "completed",
    "stopped",
    "failed",
    "interrupted",  # its worker was gone when the app (re)started; resume continues it
)
ACTIVE_STATES = frozenset({QUEUED, RUNNING})
FINAL_STATES = frozenset({COMPLETED, STOPPED, FAILED, INTERRUPTED})


def spec_file(job_dir: str | Path) -> Path:
    return Path(job_dir) / SPEC


def is_job_dir(path: str | Path) -> bool:
    """A job folder is a folder with a spec.yaml: the one test every reader uses."""
    return spec_file(path).is_file()


def require_job_dir(path: str | Path, field: str = "", hint: str = "Give a job's folder, e.g. jobs/<name>.") -> Path:
    """`path` as a job folder, or a UserError naming the field (when there is one) and the fix."""
    job_dir = Path(path).expanduser()
    if not is_job_dir(job_dir):
        where = f"{field}: " if field else ""
        raise UserError(f"{where}{job_dir} is not a job folder (it has no {SPEC}). {hint}".rstrip())
    return job_dir


def load_job_spec(path: str | Path, field: str = "", hint: str = "Give a job's folder, e.g. jobs/<name>."):
    """The spec a job folder was started with (checked to be a job folder first)."""
    from training.spec import load_spec

    return load_spec(spec_file(require_job_dir(path, field, hint)))


def write_status(job_dir: str | Path, **fields) -> None:
    """Merge `fields` into status.json atomically (write a temp file, then rename over); text is masked."""
    path = Path(job_dir) / STATUS
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        status = {}
    status.update({key: redact.redact(value) if isinstance(value, str) else value for key, value in fields.items()})
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(status, indent=1))
    os.replace(temporary, path)


def read_status(job_dir: str | Path) -> dict:
    try:
        return json.loads((Path(job_dir) / STATUS).read_text())
    except (OSError, ValueError):
        return {}


def request_stop(job_dir: str | Path) -> None:
    (Path(job_dir) / STOP).touch()


def clear_stop(job_dir: str | Path) -> None:
    """Forget an old stop request, so it cannot end a resumed run."""
    (Path(job_dir) / STOP).unlink(missing_ok=True)


def stop_requested(job_dir: str | Path) -> bool:
    return (Path(job_dir) / STOP).exists()


def has_adapter(job_dir: str | Path) -> bool:
    return (Path(job_dir) / ADAPTER / "adapter_config.json").is_file()


def has_full_model(job_dir: str | Path) -> bool:
    """A full fine-tune's weights, or an adapter job's merged copy: a model that loads on its own."""
    return (Path(job_dir) / MODEL / "config.json").is_file()
