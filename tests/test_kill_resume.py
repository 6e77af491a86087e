"""Ten kill -9s at random points, some in the middle of a checkpoint save: every resume goes on,
at most one save interval is lost each time, and the run ends exactly like an uninterrupted one.

Runs real worker processes on the embedded model, with one kept checkpoint (the hardest case:
the only good checkpoint must survive the save of the next one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from helpers import wait_for

from training.checkpoints import COMPLETE_MARKER, checkpoint_folders, latest_complete_checkpoint, step_of
from training.engine import run_job
from training.events import Progress
from training.jobdir import read_status
from training.jobs import JobManager, worker_alive
from training.spec import JobSpec

pytestmark = pytest.mark.slow
KILLS = 10
SAVE_STEPS = 3
MAX_STEPS = 40


def campaign_spec(model_dir: Path) -> JobSpec:
    return JobSpec().with_overrides(
        {
            "name": "kill-campaign",
            "model.name_or_path": str(model_dir),
            "data.mix_in": [],
            "data.max_rows": 16,
            "hyperparameters.max_steps": MAX_STEPS,
            "hyperparameters.batch_size": 2,
            "hyperparameters.context_length": 128,
            "hyperparameters.learning_rate": 5e-4,
            "hyperparameters.precision": "fp32",  # bit-for-bit comparable with the uninterrupted run
            "hyperparameters.save_steps": SAVE_STEPS,
            "output.evaluate": False,
            "output.save_total_limit": 1,
        }
    )


class StepLog:
    """The steps a worker has logged since a moment, read straight from its event file (no polling lag).
    It reads only what was appended since the last call: the campaign polls it every millisecond, and a
    poll that parsed the whole file each time would take a core from the worker it is timing."""

    def __init__(self, job_dir: Path, since: float):
        self.events, self.since, self.offset, self.steps = job_dir / "events.jsonl", since, 0, []

    def read(self) -> list[int]:
        if not self.events.exists():
            return self.steps
        with open(self.events, "rb") as file:
            file.seek(self.offset)
            appended = file.read()
        complete = appended[: appended.rfind(b"\n") + 1]  # a torn last line is read when it is whole
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line a kill tore, which the next worker's first line then ended
            if record.get("type") == "progress" and record["time"] >= self.since:
                self.steps.append(record["step"])
        return self.steps


def torn_checkpoint(job_dir: Path, after_step: int) -> Path | None:
    for folder in checkpoint_folders(job_dir / "checkpoints"):
        if step_of(folder) > after_step and not (folder / COMPLETE_MARKER).exists():
            return folder
    return None


def kill_point_reached(job_dir: Path, log: StepLog, resumed_from: int, during_save: bool, target: int) -> bool:
    """The worker of this round is training past its checkpoint, and either writing a checkpoint now
    (its folder exists without the marker) or has logged the target step."""
    steps = log.read()
    if during_save:
        return any(step > resumed_from for step in steps) and torn_checkpoint(job_dir, resumed_from) is not None
    return max(steps, default=0) >= target


def test_ten_random_kills_lose_at_most_one_save_interval_each_and_change_nothing(embedded_model_dir, tmp_path):
    spec = campaign_spec(embedded_model_dir)
    reference = []
    run_job(spec, tmp_path / "reference", reference.append, lambda: False)
    expected = {e.step: e.loss for e in reference if isinstance(e, Progress)}
    assert sorted(expected) == list(range(1, MAX_STEPS + 1))

    manager = JobManager(tmp_path / "jobs")
    job_id = manager.start(spec)
    try:
        run_campaign(manager, job_id, tmp_path / "jobs" / job_id, expected)
    finally:  # a failed assertion must not leave a worker training (it would slow every later test)
        status = read_status(tmp_path / "jobs" / job_id)
        if worker_alive(status.get("pid"), status.get("process_started")):
            os.kill(status["pid"], signal.SIGKILL)


def run_campaign(manager: JobManager, job_id: str, job_dir: Path, expected: dict[int, float]) -> None:
    rng = random.Random(20261122)
    resumed_from, torn_kills, lost = 0, 0, []
    for kill in range(KILLS):
        log = StepLog(job_dir, since=time.time())
        during_save = kill % 3 == 0  # kills 1, 4, 7 and 10 aim at a checkpoint being written
        target = resumed_from + rng.randint(1, SAVE_STEPS + 1)
        point = (job_dir, log, resumed_from, during_save, target)
        # A checkpoint is half-written for a fraction of a second; a step takes longer than 10 ms
        assert wait_for(lambda point=point: kill_point_reached(*point), interval=0.001 if during_save else 0.01)
        os.kill(read_status(job_dir)["pid"], signal.SIGKILL)
        torn_kills += torn_checkpoint(job_dir, resumed_from) is not None

        snapshot = manager.wait(job_id, timeout=60)
        assert snapshot.state == "failed" and "killed (signal 9)" in snapshot.message
        last_step = max(log.read())
        checkpoint = latest_complete_checkpoint(job_dir)  # None only if killed before the first save finished
        resumed_from = step_of(checkpoint) if checkpoint else 0
        lost.append(last_step - resumed_from)
        assert f"Resume continues from step {resumed_from}" in snapshot.hint or not checkpoint
        assert last_step - resumed_from <= SAVE_STEPS, f"kill {kill + 1} lost steps {resumed_from + 1}..{last_step}"
        manager.resume(job_id)

    final = manager.wait(job_id, timeout=300)
    assert final.state == "completed" and final.step == MAX_STEPS
    assert (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert torn_kills >= 2, "the save-time kills should have caught checkpoints half-written"
    assert "removed half-written checkpoints" in "\n".join(final.logs)
    # The curve the person sees is the uninterrupted run's, step for step
    curve = dict(final.train_loss)
    assert sorted(curve) == list(range(1, MAX_STEPS + 1))
    assert [curve[step] for step in sorted(curve)] == pytest.approx([expected[s] for s in sorted(expected)], rel=1e-3)
    print(f"\nkill campaign: lost steps per kill {lost}, {torn_kills} kills tore a checkpoint")
