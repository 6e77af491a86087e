"""Checks that need the disk (files, folders, hardware) before a worker is started.

The spec itself validates shapes and ranges; preflight checks that what it names exists, so a
missing file is reported in a second, not minutes into a run. Every problem is reported at once.
"""

from __future__ import annotations

from pathlib import Path

from training.data import load_rows
from training.data.load import load_validation
from training.errors import UserError
from training.hardware import check_devices, check_method_fits_device, plan_for
from training.models import starting_point
from training.sizes import check_disk
from training.spec import JobSpec
from training.trackers import tracker_problems


def preflight_problems(spec: JobSpec, jobs_dir: Path | None = None, token: str | None = None) -> list[tuple[str, str]]:
    """Every problem found, as (the spec field it is about, message with the fix).

    With `jobs_dir`, also checks that the job's checkpoints fit on that folder's disk. A check
    that needs the model or the plan runs only when those were found, so each cause is named once.
    """
    problems: list[tuple[str, str]] = []

    def check(path: str, function):
        try:
            return function()
        except UserError as error:
            problems.append((path, str(error)))
            return None

    model_field = "model.start_from_job" if spec.model.start_from_job else "model.name_or_path"
    reference = check(model_field, lambda: starting_point(spec)[0])
    rows = check("data.source", lambda: load_rows(spec.data, spec.method.objective, token))
    if spec.method.objective == "grpo":  # the rewards' columns and jobs (training/rewards.py)
        from training.rewards import data_columns, reward_problems

        problems += reward_problems(spec.method.rewards, data_columns(rows) if rows else None)
    if spec.data.validation_source:
        check("data.validation_source", lambda: load_validation(spec.data, spec.method.objective, token))
    problems += tracker_problems(spec)  # a missing tracker package or key: said now, not at the first log
    plan = check("hyperparameters.precision", lambda: plan_for(spec))
    if plan and spec.hyperparameters.devices > 1:
        check("hyperparameters.devices", lambda: check_devices(spec, plan))
    if plan and spec.method.type == "qlora":
        check("method.qlora_compute_dtype", lambda: check_method_fits_device(spec, plan))
    if plan and reference and jobs_dir is not None:
        check("output.save_total_limit", lambda: check_disk(spec, reference, jobs_dir, plan.device))
    return problems


def preflight(spec: JobSpec, jobs_dir: Path | None = None, token: str | None = None) -> None:
    """Raise UserError listing every problem found; return quietly when the job can start."""
    problems = preflight_problems(spec, jobs_dir, token)
    if problems:
        raise UserError("The job cannot start:\n" + "\n".join(f"  - {message}" for _, message in problems))
