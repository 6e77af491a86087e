"""`app.py train` under SIGTERM and SIGHUP stops like Ctrl-C; `--detach` leaves the worker training."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.checkpoints import latest_complete_checkpoint, step_of
from training.jobdir import read_status
from training.jobs import worker_alive

pytestmark = pytest.mark.trains  # trains a small model in a worker or in-process: left out of test-fast

ROOT = Path(__file__).resolve().parents[1]
LONG = "hyperparameters.max_steps=5000"  # far more than the test waits for: only a stop ends it early


def train_command(tiny_model_dir, job_dir, *extra):
    return [
        sys.executable,
        "app.py",
        "--jobs-dir",
        str(job_dir.parent),
        "train",
        "presets/jobs/quickstart.yaml",
        "--job-dir",
        str(job_dir),
        "--set",
        f"model.name_or_path={tiny_model_dir}",
        "--set",
        "data.mix_in=[]",
        "--set",
        LONG,
        "--set",
        "hyperparameters.precision=fp32",
        "--set",
        "hyperparameters.batch_size=2",
        "--set",
        "output.evaluate=false",
        *extra,
    ]


def events(job_dir: Path) -> list[dict]:
    path = job_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def wait_for_steps(job_dir: Path, steps: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(r["type"] == "progress" for r in events(job_dir)) >= steps:
            return
        time.sleep(0.1)
    raise AssertionError(f"the job logged fewer than {steps} steps in {timeout} s: {events(job_dir)[-3:]}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_to_train_stops_the_worker_at_the_next_step_with_a_checkpoint(tiny_model_dir, tmp_path, sig):
    job_dir = tmp_path / "jobs" / "signalled"
    cli = subprocess.Popen(
        train_command(tiny_model_dir, job_dir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_steps(job_dir, 2)
        cli.send_signal(sig)
        out, _ = cli.communicate(timeout=120)
    finally:
        cli.kill()
    name = signal.Signals(sig).name
    assert cli.returncode == 130, out
    assert f"{name}: stopping at the next step" in out and "job stopped:" in out, out
    status = read_status(job_dir)
    assert status["state"] == "stopped", status
    deadline = time.monotonic() + 30  # the worker ends right after its last word (the CLI may return first)
    while worker_alive(status["pid"], status["process_started"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not worker_alive(status["pid"], status["process_started"])  # gone, not training on
    # The stop request is in the job's log; at most the step in flight (and one more, if the request landed
    # between that step's check and its log line) ran after it, and the checkpoint is the last step's
    records = events(job_dir)
    asked = next(i for i, r in enumerate(records) if r["type"] == "log" and f"({name})" in r["message"])
    steps_after = [r["step"] for r in records[asked:] if r["type"] == "progress"]
    assert len(steps_after) <= 2, steps_after
    last_step = max(r["step"] for r in records if r["type"] == "progress")
    assert last_step < 5000
    checkpoint = latest_complete_checkpoint(job_dir)
    assert checkpoint is not None and step_of(checkpoint) == last_step
    assert f"checkpoint: {checkpoint}" in out and f"train --resume {job_dir}" in out


def test_detach_leaves_the_worker_training_and_says_how_to_reach_it(tiny_model_dir, tmp_path):
    job_dir = tmp_path / "jobs" / "detached"
    done = subprocess.run(
        train_command(tiny_model_dir, job_dir, "--detach"), cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "training in the background" in done.stdout
    assert f"python app.py follow {job_dir}" in done.stdout and f"python app.py stop {job_dir}" in done.stdout
    try:
        wait_for_steps(job_dir, 3)  # the command has returned; the worker trains on
        assert read_status(job_dir)["state"] == "running"
    finally:
        stopped = subprocess.run(
            [sys.executable, "app.py", "stop", str(job_dir)], cwd=ROOT, capture_output=True, text=True, timeout=180
        )
    assert "stopping at the next step" in stopped.stdout and "job stopped:" in stopped.stdout, stopped.stdout
    assert read_status(job_dir)["state"] == "stopped"
    assert latest_complete_checkpoint(job_dir) is not None


def test_a_train_command_whose_output_is_closed_stops_its_job(tiny_model_dir, tmp_path):
    """`app.py train … | head`: when nobody reads the command any more it fails on its next line; the job
    it was watching stops with a checkpoint instead of training on unseen."""
    job_dir = tmp_path / "jobs" / "unread"
    cli = subprocess.Popen(train_command(tiny_model_dir, job_dir), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        wait_for_steps(job_dir, 2)
        cli.stdout.close()  # the reader goes away
        cli.wait(timeout=120)
    finally:
        cli.kill()
    assert cli.returncode == 141
    deadline = time.monotonic() + 120
    while read_status(job_dir).get("state") == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    status = read_status(job_dir)
    assert status["state"] == "stopped", status
    assert latest_complete_checkpoint(job_dir) is not None
    assert any("which failed (BrokenPipeError)" in r.get("message", "") for r in events(job_dir))
