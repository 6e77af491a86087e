"""The worker process under the JobManager: start, events, stop, failures, a killed worker."""

import os
import signal
import time
from pathlib import Path

from training.jobs import JobManager, JobSnapshot, apply_event
from training.worker import read_status

TIMEOUT = 180


def wait_for(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


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
    manager.stop(job_id)
    snapshot = manager.wait(job_id, timeout=60)
    assert snapshot.state == "stopped"
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
    assert snapshot.state == "failed" and "killed by signal 9" in snapshot.message
    assert read_status(Path(snapshot.job_dir))["state"] == "failed"


def test_jobs_queue_one_at_a_time_and_a_queued_job_can_be_stopped(tiny_spec, tmp_path):
    manager = JobManager(tmp_path)
    first = manager.start(tiny_spec.with_overrides({"name": "first", "hyperparameters.max_steps": 100000}))
    second = manager.start(tiny_spec.with_overrides({"name": "second"}))
    third = manager.start(tiny_spec.with_overrides({"name": "third"}))
    assert wait_for(lambda: manager.snapshot(first).step >= 1)
    assert manager.snapshot(second).state == "queued" and manager.snapshot(third).state == "queued"
    assert not (tmp_path / second / "events.jsonl").exists()  # no worker was started for it
    manager.stop(third)
    assert manager.wait(third, timeout=10).state == "stopped"
    manager.stop(first)
    assert manager.wait(first, timeout=60).state == "stopped"
    assert manager.wait(second, timeout=TIMEOUT).state == "completed"
    assert not (tmp_path / third / "events.jsonl").exists()
