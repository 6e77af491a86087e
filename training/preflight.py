"""Checks that need the disk (files, folders, hardware) before a worker is started.

The spec itself validates shapes and ranges; preflight checks that what it names exists, so a
missing file is reported in a second, not minutes into a run. Every problem is reported at once.
"""

from __future__ import annotations

from training.data import load_conversations
from training.errors import UserError
from training.hardware import plan_for
from training.models import resolve_model
from training.spec import JobSpec


def preflight_problems(spec: JobSpec) -> list[tuple[str, str]]:
    """Every problem found, as (the spec field it is about, message with the fix)."""
    checks = {
        "model.name_or_path": lambda: resolve_model(spec.model.name_or_path),
        "data.source": lambda: load_conversations(spec.data),
        "hyperparameters.precision": lambda: plan_for(spec),
    }
    problems = []
    for path, check in checks.items():
        try:
            check()
        except UserError as error:
            problems.append((path, str(error)))
    return problems


def preflight(spec: JobSpec) -> None:
    """Raise UserError listing every problem found; return quietly when the job can start."""
    problems = preflight_problems(spec)
    if problems:
        raise UserError("The job cannot start:\n" + "\n".join(f"  - {message}" for _, message in problems))
