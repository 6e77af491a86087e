"""The worker process under the JobManager: start, events, stop, failures, a killed worker."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from helpers import wait_for

from training.errors import UserError
from training.jobdir import read_status
from training.jobs import JobManager, JobSnapshot, apply_event, worker_alive

pytestmark = pytest.mark.trains  # trains a small model in a worker or in-process: left out of test-fast

TIMEOUT = 180


def test_apply_event_folds_progress_into_curves():
    snap = JobSnapshot(job_id="j", job_dir="/x")
    snap = apply_event(
        snap, {"type": "progress", "step": 1, "total_steps": 2, "epoch": 0.5, "loss": 2.0, "learning_rate": 1e-4}
    )
    snap = apply_event(snap, {"type": "progress", "step": 2, "total_steps": 2, "epoch": 1.0, "loss": float("nan")})
    snap = apply_event(snap, {"type": "eval", "step": 2, "eval_loss": 1.5})
    assert snap.train_loss[0] == (1, 2.0) and snap.step == 2 and snap.eval_loss == ((2, 1.5),)
    assert snap.train_loss[1][1] != snap.train_loss[1][1]  # NaN kept on the curve, not filtered out
    done = apply_event(snap, {"type": "finished", "output_dir": "/x/adapter", "stopped_early": True})
    assert done.state == "stopped" and done.output_dir == "/x/adapter"


def test_a_job_runs_in_its_own_process_and_leaves_its_files(tiny_spec, tmp_path):
    manager = JobManager(tmp_path)
    job_id = manager.start(tiny_spec, secrets={"HF_TOKEN": "hf_canary_not_a_real_token"})
    snapshot = manager.wait(job_id, timeout=TIMEOUT)
    assert snapshot.state == "completed", (snapshot.message, (Path(snapshot.job_dir) / "worker.log").read_text())
    job_dir = Path(snapshot.job_dir)
    assert [step for step, _ in snapshot.train_loss] == [1, 2, 3, 4]
    assert (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    status = read_status(job_dir)
    assert status["state"] == "completed" and status["pid"] != os.getpid() and status["heartbeat"] > 0
    for name in ("spec.yaml", "status.json", "events.jsonl", "worker.log"):
        assert "hf_canary" not in (job_dir / name).read_text(), name
    assert manager.list_jobs() == [job_id]
    # A fresh manager (an app restart) replays the finished job from disk.
    replayed = JobManager(tmp_path).snapshot(job_id)
    assert replayed.state == "completed" and replayed.train_loss == snapshot.train_loss


def test_stop_ends_the_worker_cooperatively(tiny_spec, tmp_path):
    manager = JobManager(tmp_path)
    job_id = manager.start(tiny_spec.with_overrides({"hyperparameters.max_steps": 100000}))
    assert wait_for(lambda: manager.snapshot(job_id).step >= 2)
    asked = time.time()
    manager.stop(job_id)
    snapshot = manager.wait(job_id, timeout=60)
    assert snapshot.state == "stopped"
    events = [json.loads(line) for line in (Path(snapshot.job_dir) / "events.jsonl").read_text().splitlines()]
    steps_after = [e["step"] for e in events if e["type"] == "progress" and e["time"] > asked]
    # The step in flight finishes, then it saves and goes. A step's loss is logged just after its
    # stop check, so a request landing between the two shows that step's log too: at most 2.
    assert len(steps_after) <= 2
    status = read_status(Path(snapshot.job_dir))
    assert not worker_alive(status["pid"], status["process_started"])
    assert (Path(snapshot.job_dir) / "adapter" / "adapter_config.json").is_file()
    assert read_status(Path(snapshot.job_dir))["state"] == "stopped"


def test_a_failure_in_the_worker_is_reported_in_plain_words(tiny_spec, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    spec = tiny_spec.with_overrides({"data.source": str(data)})
    data.unlink()  # the file disappears after the spec was made: the worker must say so
    manager = JobManager(tmp_path / "jobs")
    snapshot = manager.wait(manager.start(spec), timeout=TIMEOUT)
    assert snapshot.state == "failed"
    assert "data.source: file not found" in snapshot.message
    assert "Traceback" not in snapshot.message


def test_a_killed_worker_becomes_a_failed_job_with_a_reason(tiny_spec, tmp_path):
    manager = JobManager(tmp_path)
    job_id = manager.start(tiny_spec.with_overrides({"hyperparameters.max_steps": 100000}))
    assert wait_for(lambda: manager.snapshot(job_id).step >= 1)
    pid = read_status(Path(manager.snapshot(job_id).job_dir))["pid"]
    os.kill(pid, signal.SIGKILL)
    snapshot = manager.wait(job_id, timeout=30)
    assert snapshot.state == "failed" and "killed (signal 9)" in snapshot.message
    assert "out of memory" in snapshot.message and "smaller batch size" in snapshot.hint
    assert "Resume continues from" in snapshot.hint  # from step N, or from the beginning before the first save
    assert read_status(Path(snapshot.job_dir))["state"] == "failed"


def test_jobs_queue_one_at_a_time_and_a_queued_job_can_be_stopped(tiny_spec, tmp_path):
    manager = JobManager(tmp_path)
    first = manager.start(tiny_spec.with_overrides({"name": "first", "hyperparameters.max_steps": 100000}))
    second = manager.start(tiny_spec.with_overrides({"name": "second"}))
    third = manager.start(tiny_spec.with_overrides({"name": "third"}))
    assert wait_for(lambda: manager.snapshot(first).step >= 1)
    assert manager.snapshot(second).state == "queued" and manager.snapshot(third).state == "queued"
    assert (manager.queue_position(first), manager.queue_position(second), manager.queue_position(third)) == (
        None,
        1,
        2,
    )
    assert not (tmp_path / second / "events.jsonl").exists()  # no worker was started for it
    with pytest.raises(UserError, match=f"{first} is already training"):  # the person chose "tell me" instead
        manager.start(tiny_spec.with_overrides({"name": "refused"}), queue=False)
    assert not any(name.startswith("refused") for name in manager.list_jobs())
    manager.stop(third)
    assert manager.wait(third, timeout=10).state == "stopped"
    manager.stop(first)
    assert manager.wait(first, timeout=60).state == "stopped"
    assert manager.wait(second, timeout=TIMEOUT).state == "completed"
    assert not (tmp_path / third / "events.jsonl").exists()


def start_from_a_doomed_app(spec, jobs_dir: Path):
    """Start a job from a separate app process (the CLI), then kill that app with SIGKILL."""
    import subprocess
    import sys

    spec_file = jobs_dir.parent / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    root = Path(__file__).resolve().parents[1]
    app = subprocess.Popen(
        [sys.executable, "app.py", "--jobs-dir", str(jobs_dir), "train", str(spec_file)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_for(
        lambda: (
            any(jobs_dir.glob("*/events.jsonl")) and '"progress"' in next(jobs_dir.glob("*/events.jsonl")).read_text()
        )
    )
    app.kill()
    app.wait()
    job_dir = next(jobs_dir.glob("*/events.jsonl")).parent
    return job_dir, read_status(job_dir)["pid"]


def workers_for(job_dir: Path) -> int:
    import psutil

    return sum(
        str(job_dir) in " ".join(p.info["cmdline"] or []) and "training.worker" in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
    )


def test_a_restarted_app_reattaches_to_a_worker_that_kept_training(tiny_spec, tmp_path):
    job_dir, pid = start_from_a_doomed_app(
        tiny_spec.with_overrides({"hyperparameters.max_steps": 100000}), tmp_path / "jobs"
    )
    manager = JobManager(tmp_path / "jobs")  # the app comes back
    snapshot = manager.snapshot(job_dir.name)
    assert snapshot.state == "running" and snapshot.train_loss  # the curve so far is there
    assert wait_for(lambda: manager.snapshot(job_dir.name).step > snapshot.step, timeout=60)  # and it goes on
    assert workers_for(job_dir) == 1  # re-attached, not restarted
    manager.stop(job_dir.name)
    assert manager.wait(job_dir.name, timeout=60).state == "stopped"
    assert wait_for(lambda: workers_for(job_dir) == 0, timeout=30)


def test_a_worker_that_died_while_the_app_was_down_is_interrupted_and_resumable(tiny_spec, tmp_path):
    job_dir, pid = start_from_a_doomed_app(
        tiny_spec.with_overrides({"hyperparameters.max_steps": 100000, "hyperparameters.save_steps": 1}),
        tmp_path / "jobs",
    )
    assert wait_for(lambda: any((job_dir / "checkpoints").glob("checkpoint-*/COMPLETE")), timeout=60)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: workers_for(job_dir) == 0, timeout=10)
    # A killed process loses its command line before it is gone: wait until it is really dead (or a zombie),
    # as it is when an app starts later; otherwise the new app may still see it exiting and re-attach
    started = read_status(job_dir)["process_started"]
    assert wait_for(lambda: not worker_alive(pid, started), timeout=30)
    manager = JobManager(tmp_path / "jobs")
    snapshot = manager.snapshot(job_dir.name)
    assert snapshot.state == "interrupted" and "Resume it" in snapshot.message
    manager.resume(job_dir.name)
    assert wait_for(
        lambda: (
            manager.snapshot(job_dir.name).state == "running"
            and "resuming from checkpoint-" in "\n".join(manager.snapshot(job_dir.name).logs)
        ),
        timeout=60,
    )
    manager.stop(job_dir.name)
    assert manager.wait(job_dir.name, timeout=60).state == "stopped"
