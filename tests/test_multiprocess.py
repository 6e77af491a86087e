"""A job over two processes (accelerate launch, gloo on this CPU) behaves like a one-process job:
one set of events, one adapter, and stop and resume work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import wait_for

from training.jobs import JobManager

pytestmark = pytest.mark.slow


def progress_steps(job_dir: Path) -> list[int]:
    lines = (job_dir / "events.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["type"] == "progress"]


def test_two_processes_train_one_job_and_stop_and_resume_like_one(tiny_spec, tmp_path):
    spec = tiny_spec.with_overrides(
        {"hyperparameters.devices": 2, "hyperparameters.max_steps": 40, "hyperparameters.batch_size": 2}
    )
    manager = JobManager(tmp_path)
    job_id = manager.start(spec)
    job_dir = tmp_path / job_id
    assert wait_for(lambda: manager.snapshot(job_id).step >= 2, timeout=300)
    manager.stop(job_id)
    stopped = manager.wait(job_id, timeout=120)
    assert stopped.state == "stopped", (stopped.message, (job_dir / "worker.log").read_text()[-2000:])
    assert any("2 processes" in line for line in stopped.logs)
    steps = progress_steps(job_dir)
    assert steps == list(range(1, len(steps) + 1))  # one writer: each step logged once

    manager.resume(job_id)
    done = manager.wait(job_id, timeout=300)
    assert done.state == "completed" and done.step == 40
    assert (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    curve = [step for step, _ in done.train_loss]
    assert curve == list(range(1, 41))
    # Data parallel: each step takes 2 rows on each of 2 processes, so an epoch is rows/4 steps (one process: rows/2)
    rows = sum(s["rows_kept"] for s in json.loads((job_dir / "data.json").read_text())["sources"])
    assert done.epoch == pytest.approx(40 / math.ceil(rows / 4), rel=0.01)
