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


def preflight(spec: JobSpec) -> None:
    """Raise UserError listing every problem found; return quietly when the job can start."""
    problems = []
    for check in (
        lambda: resolve_model(spec.model.name_or_path),
        lambda: load_conversations(spec.data),
        lambda: plan_for(spec),
    ):
        try:
            check()
        except UserError as error:
            problems.append(str(error))
    if problems:
        raise UserError("The job cannot start:\n" + "\n".join(f"  - {p}" for p in problems))
