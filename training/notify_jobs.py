"""What a job's or a sweep's webhook notice says, read from the job folders (training/notify.py sends it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training import jobdir
from training.notify import job_notice, sweep_notice

FINAL = ("completed", "stopped", "failed", "interrupted")
SWEEP_NOTICED = ".sweep-noticed"  # in the sweep's first folder: the sweep's notice went out once


def final_metrics(snapshot) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if snapshot.train_loss:
        metrics["final training loss"] = snapshot.train_loss[-1][1]
    if snapshot.eval_loss:
        metrics["final validation loss"] = snapshot.eval_loss[-1][1]
    try:
        tuned = json.loads((Path(snapshot.job_dir) / jobdir.EVALUATION).read_text()).get("tuned") or {}
        metrics.update({f"eval {name}": value for name, value in tuned.items()})
    except (OSError, ValueError, AttributeError):
        pass
    return metrics


def job_end_notice(snapshot) -> dict[str, Any]:
    return job_notice(snapshot, final_metrics(snapshot))


def sweep_end_notice(manager, job_dir: Path) -> dict[str, Any] | None:
    """The sweep's notice when `job_dir` was the last of its sweep to end; None otherwise (or when sent)."""
    from training.compare import best_run, load_run
    from training.sweep import sweep_of, sweeps

    record = sweep_of(job_dir)
    if not record:
        return None
    members = sweeps(manager.jobs_dir).get(record["sweep"], [])
    if len(members) < record["of"] or any(manager.snapshot(m.name).state not in FINAL for m in members):
        return None
    try:  # exclusive create: exactly one notice, even if two watchers see the end at once
        (members[0] / SWEEP_NOTICED).open("x").close()
    except FileExistsError:
        return None
    runs = [load_run(m) for m in members]
    best = best_run([r for r in runs if r.state == "completed"] or runs)
    summary = [{"job": r.name, "state": r.state, "best validation loss": r.best_eval_loss} for r in runs]
    return sweep_notice(record["sweep"], summary, best.name if best else None)
