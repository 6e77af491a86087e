"""Experiment trackers (`output.report_to`): TensorBoard, Weights & Biases, MLflow, Trackio.

The Trainer's own integrations do the logging (`TrainingArguments.report_to`); this module only checks,
before launch, that each tracker asked for can work here, and gives each a sensible local home when
the person set none: everything a tracker writes stays beside the jobs unless its own environment
variables point elsewhere. Keys and passwords come from the environment only (the spec has no field
for them) and are registered for masking, like the Hugging Face token.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from training.redact import register_secret
from training.spec import JobSpec

# What to install for each tracker (the versions tested with this release; requirements-dev.txt pins them)
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard==2.21.0"),
    "wandb": ("wandb", "wandb==0.31.0"),
    "mlflow": ("mlflow", "mlflow-skinny==3.17.2"),
    "trackio": ("trackio", "trackio==0.43.0"),
}
# Environment variables that hold a tracker's credentials: masked in every log and message
SECRET_VARIABLES = (
    "WANDB_API_KEY",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "DATABRICKS_TOKEN",
    "TRACKIO_WRITE_TOKEN",
)
WANDB_LOCAL_MODES = ("offline", "disabled", "dryrun")
PROJECT = "lathe"


def register_tracker_secrets() -> None:
    for variable in SECRET_VARIABLES:
        register_secret(os.environ.get(variable))


def tracker_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """(field, message) for each tracker that cannot work here, with what to do about it."""
    problems = []
    for tracker in spec.output.report_to:
        module, requirement = PACKAGES[tracker]
        if importlib.util.find_spec(module) is None:
            problems.append(
                (
                    "output.report_to",
                    f"output.report_to: {tracker} is not installed. Install it with `pip install {requirement}`, "
                    f"or take {tracker} off the list.",
                )
            )
    if "wandb" in spec.output.report_to:
        mode = os.environ.get("WANDB_MODE", "").lower()
        if mode and mode not in (*WANDB_LOCAL_MODES, "online", "run"):
            problems.append(("output.report_to", f"WANDB_MODE={mode} is not a W&B mode. Use online or offline."))
        elif mode not in WANDB_LOCAL_MODES and not os.environ.get("WANDB_API_KEY") and not _wandb_logged_in():
            problems.append(
                (
                    "output.report_to",
                    "output.report_to: wandb needs a key: set WANDB_API_KEY in the environment that starts Lathe "
                    "(never in the spec), or WANDB_MODE=offline to log locally and `wandb sync` later.",
                )
            )
    if "mlflow" in spec.output.report_to:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if uri and "://" not in uri and not uri.startswith(("/", "file:", "databricks")):
            problems.append(
                (
                    "output.report_to",
                    f"MLFLOW_TRACKING_URI={uri!r} is neither a server (http://host:5000) nor a folder (file:/path). "
                    "Fix it, or unset it to log into the jobs folder.",
                )
            )
        tags = os.environ.get("MLFLOW_TAGS")
        if tags:
            try:
                json.loads(tags)
            except ValueError:
                problems.append(("output.report_to", 'MLFLOW_TAGS must be JSON, e.g. {"team": "nlp"}.'))
    return problems


def _wandb_logged_in() -> bool:
    """`wandb login` keeps the key in ~/.netrc; the wandb client finds it there itself."""
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def prepare_trackers(spec: JobSpec, job_dir: Path) -> None:
    """Set each tracker's local home and run details in this (worker) process's environment, unless set.

    Called before the Trainer is built; the integrations read these variables when training begins."""
    register_tracker_secrets()
    jobs_dir = Path(job_dir).resolve().parent
    wanted = set(spec.output.report_to)
    if "wandb" in wanted:
        os.environ.setdefault("WANDB_PROJECT", PROJECT)
        os.environ.setdefault("WANDB_DIR", str(job_dir))  # offline runs land in the job folder (wandb/)
    if "mlflow" in wanted:
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # A local file store shared by every job, so MLflow's UI lists them together. MLflow 3 keeps the
            # file store only on request (it prefers a database, which mlflow-skinny cannot run)
            os.environ["MLFLOW_TRACKING_URI"] = (jobs_dir / "mlruns").as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", PROJECT)
        # The spec's settings as tags (the Trainer logs its own arguments as params)
        tags = {f"lathe.{path}": str(value)[:250] for path, value in _flat(spec).items()}
        os.environ["MLFLOW_TAGS"] = json.dumps({**tags, **json.loads(os.environ.get("MLFLOW_TAGS") or "{}")})
    if "trackio" in wanted:
        os.environ.setdefault("TRACKIO_DIR", str(jobs_dir / "trackio"))


def _flat(spec: JobSpec) -> dict:
    flat = {}
    for section, values in spec.model_dump(mode="json", exclude={"sweep"}).items():
        if isinstance(values, dict):
            flat.update({f"{section}.{name}": value for name, value in values.items()})
        else:
            flat[section] = values
    return flat
