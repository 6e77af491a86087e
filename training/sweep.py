"""Sweeps: a spec's `sweep:` section becomes one ordinary job per point, queued through the JobManager.

A sweep is nothing more than jobs that share a sweep id: each point's folder holds its own complete
spec.yaml (without the sweep section, so any point can be re-run or loaded alone) and a sweep.json
that says which sweep it belongs to and which values it tried. The Runs tab and `app.py compare`
read those files; stopping a sweep stops each of its jobs.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from training import jobdir
from training.errors import UserError
from training.jobdir import ACTIVE_STATES
from training.spec import JobSpec, SpecError, describe_field, parse_spec

SWEEP_FILE = jobdir.SWEEP
MAX_VALUES_PER_FIELD = 12
MAX_POINTS = 100  # a hard ceiling; the wizard asks before more than CONFIRM_ABOVE
CONFIRM_ABOVE = 12
# Fields a sweep may not vary: the name is the sweep's own, and a sweep inside a sweep makes no sense
NOT_SWEEPABLE = ("name", "sweep")


def sweep_problems(spec: JobSpec) -> list[str]:
    """Problems with the spec's sweep section, each naming the field and the fix."""
    sweep = spec.sweep
    problems = []
    for path, values in sweep.parameters.items():
        where = f"sweep.parameters.{path}"
        try:
            if path.partition(".")[0] in NOT_SWEEPABLE:
                raise KeyError(path)
            describe_field(path)
        except (KeyError, AttributeError, TypeError):
            problems.append(f"{where}: not a field of the spec. Use a path such as hyperparameters.learning_rate.")
            continue
        if not values:
            problems.append(f"{where}: give at least one value to try.")
        if len(values) > MAX_VALUES_PER_FIELD:
            problems.append(f"{where}: {len(values)} values; try at most {MAX_VALUES_PER_FIELD} per field.")
        if len(set(map(repr, values))) != len(values):
            problems.append(f"{where}: a value is listed twice; list each once.")
    if problems:
        return problems
    size = grid_size(spec)
    if sweep.strategy == "random" and sweep.count is None:
        problems.append("sweep.count: a random sweep needs a count (how many points to try), e.g. 4.")
    if sweep.strategy == "grid" and sweep.count is not None:
        problems.append("sweep.count only applies to strategy random; a grid tries every combination. Remove it.")
    if sweep.strategy == "random" and sweep.count and sweep.count > size:
        problems.append(f"sweep.count: {sweep.count} points asked, but the values make only {size}. Lower it.")
    if sweep.strategy == "grid" and size > MAX_POINTS:
        problems.append(f"sweep.parameters: {size} combinations; at most {MAX_POINTS}. Use fewer values or random.")
    if problems:
        return problems
    for index, overrides in enumerate(point_overrides(spec)):  # every point must be a valid job on its own
        try:
            _point_spec(spec, overrides, index, 1)
        except SpecError as error:
            shown = ", ".join(f"{k}={v}" for k, v in overrides.items())
            problems += [f"sweep.parameters: the point {shown}: {path}: {message}" for path, message in error.problems]
    return problems


def grid_size(spec: JobSpec) -> int:
    size = 1
    for values in spec.sweep.parameters.values():
        size *= len(values)
    return size


def point_overrides(spec: JobSpec) -> list[dict[str, Any]]:
    """The sweep's points, as dotted-path overrides, in a stable order."""
    sweep = spec.sweep
    paths = list(sweep.parameters)
    grid = [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*sweep.parameters.values())]
    if sweep.strategy == "grid":
        return grid
    return random.Random(sweep.seed).sample(grid, sweep.count)


def _point_spec(spec: JobSpec, overrides: dict[str, Any], index: int, total: int) -> JobSpec:
    data = spec.model_dump(mode="json")
    data.pop("sweep")
    suffix = f"-{index + 1}of{total}"
    data["name"] = spec.name[: 64 - len(suffix)] + suffix
    return parse_spec(data).with_overrides(overrides)


@dataclass(frozen=True)
class SweepPoint:
    spec: JobSpec
    overrides: dict[str, Any]
    index: int


def expand(spec: JobSpec) -> list[SweepPoint]:
    """One complete spec per point (each without the sweep section, named NAME-IofN)."""
    if spec.sweep is None:
        raise UserError("This spec has no sweep section.")
    points = point_overrides(spec)
    return [SweepPoint(_point_spec(spec, o, i, len(points)), o, i) for i, o in enumerate(points)]


def new_sweep_id(spec: JobSpec, jobs_dir: Path) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    sweep_id, n = f"{spec.name}-sweep-{stamp}", 1
    while any(Path(jobs_dir).glob(f"{sweep_id}-*")):  # two sweeps started within one second
        n += 1
        sweep_id = f"{spec.name}-sweep-{stamp}-{n}"
    return sweep_id


def start_sweep(manager, spec: JobSpec, secrets: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Queue one job per point through the manager's queue; (sweep id, job ids in point order)."""
    points = expand(spec)
    sweep_id = new_sweep_id(spec, manager.jobs_dir)
    job_ids = []
    for point in points:
        job_dir = manager.jobs_dir / f"{sweep_id}-{point.index + 1:02d}"  # folders sort and group together
        job_dir.mkdir(parents=True)
        record = {"sweep": sweep_id, "index": point.index, "of": len(points), "point": point.overrides}
        (job_dir / SWEEP_FILE).write_text(json.dumps(record, indent=1))  # before start: the notice reads it
        job_ids.append(manager.start(point.spec, secrets=secrets, job_dir=job_dir))
    return sweep_id, job_ids


def sweep_of(job_dir: Path) -> dict | None:
    """The job's sweep record (sweep id, index, of, point), or None for a job run alone."""
    try:
        return json.loads((Path(job_dir) / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None


def sweeps(jobs_dir: Path) -> dict[str, list[Path]]:
    """Every sweep in the jobs folder: sweep id -> its job folders in point order, newest sweep first."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for job_dir in Path(jobs_dir).iterdir():
        record = sweep_of(job_dir) if job_dir.is_dir() else None
        if record:
            found.setdefault(record["sweep"], []).append((record["index"], job_dir))
    ordered = sorted(found.items(), key=lambda item: max(p.stat().st_mtime for _, p in item[1]), reverse=True)
    return {sweep_id: [p for _, p in sorted(members)] for sweep_id, members in ordered}


def stop_sweep(manager, sweep_id: str, requested_by: str | None = None) -> list[str]:
    """Stop every job of the sweep: the running one at its next step, the queued ones before they start."""
    members = sweeps(manager.jobs_dir).get(sweep_id)
    if not members:
        raise UserError(f"There is no sweep called {sweep_id}.")
    stopped = []
    for job_dir in reversed(members):  # the waiting ones first, so none starts while the running one stops
        if manager.snapshot(job_dir.name).state in ACTIVE_STATES:
            manager.stop(job_dir.name, requested_by=requested_by)
            stopped.append(job_dir.name)
    return stopped


def stop_sweep_on_disk(members: list[Path], requested_by: str | None = None) -> list[str]:
    """Stop a sweep another process is running (the CLI's): a STOP file in each folder still queued or running.
    That process's JobManager skips a waiting job with a STOP file, and its worker stops at the next step."""
    from training.jobs import stop_job_folder

    stopped = []
    for job_dir in reversed(members):
        if jobdir.read_status(job_dir).get("state") in jobdir.ACTIVE_STATES:
            stop_job_folder(job_dir, requested_by)  # the stop file first, then the log line
            stopped.append(job_dir.name)
    return stopped
