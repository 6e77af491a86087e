"""A failed write never stalls the queue, and Stop works on a full disk."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest
from helpers import wait_for

from training import jobs
from training.errors import UserError
from training.jobdir import STOP as STOP_FILE
from training.jobs import JobManager
from training.spec import JobSpec


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_of_the_job_record_leaves_the_queue_moving(tmp_path, monkeypatch):
    manager = JobManager(tmp_path / "jobs")
    spawned = []
    real_write_status = jobs.write_status

    def full_for_the_first_job(job_dir, **fields):
        if Path(job_dir).name.startswith("first"):
            disk_full()
        return real_write_status(job_dir, **fields)

    def spawn(job):
        spawned.append(job.snapshot.job_id)
        if len(spawned) == 1:
            # the first job cannot start, and recording that fails too: the disk is full
            monkeypatch.setattr(jobs, "write_status", full_for_the_first_job)
            raise OSError(errno.ENOSPC, "No space left on device")
        raise UserError("second job: reached its turn")  # the point: it got one

    monkeypatch.setattr(manager, "_spawn", spawn)
    first = manager.start(JobSpec().with_overrides({"name": "first"}))
    second = manager.start(JobSpec().with_overrides({"name": "second"}))
    assert wait_for(lambda: manager.snapshot(second).state == "failed", timeout=30)
    assert spawned == [first, second]
    failed = manager.snapshot(first)
    assert failed.state == "failed" and "free space on" in failed.message and "Traceback" not in failed.message
    assert wait_for(lambda: manager.busy_jobs() == [], timeout=10)


def test_stop_creates_its_stop_file_first_even_when_logging_fails(tmp_path, monkeypatch):
    job_dir = tmp_path / "jobs" / "running-job"
    job_dir.mkdir(parents=True)
    (job_dir / "spec.yaml").write_text(JobSpec().to_yaml())
    jobs.write_status(job_dir, state="running", heartbeat=time.time())
    monkeypatch.setattr(jobs, "record_stop_request", disk_full)
    manager = JobManager.__new__(JobManager)  # no reconcile: the job "runs" elsewhere
    manager.jobs_dir, manager._jobs, manager._lock = (tmp_path / "jobs").resolve(), {}, jobs.threading.Lock()
    manager.stop("running-job", requested_by="from a test")
    assert (job_dir / STOP_FILE).exists()


def test_a_stop_file_that_cannot_be_written_is_reported_in_plain_words(tmp_path, monkeypatch):
    job_dir = tmp_path / "running-job"
    job_dir.mkdir()
    monkeypatch.setattr(Path, "touch", disk_full)
    with pytest.raises(UserError, match="free space on the disk that holds"):
        jobs.stop_job_folder(job_dir, "from a test")


def test_text_from_errors_and_data_is_shown_as_text_not_live_html():
    from training.jobs import JobSnapshot
    from wizard.monitor import status_markdown
    from wizard.results import _cell

    hostile = '<img src="https://evil.example/x.png"> ![x](https://evil.example/y.png) [link](https://evil.example)'
    failed = JobSnapshot(job_id="j", job_dir="", state="failed", message=hostile, hint="<a href='https://e'>x</a>")
    for shown in (status_markdown(failed), _cell(hostile)):
        assert "<img" not in shown and "<a " not in shown and "](" not in shown and "![" not in shown, shown
        assert "evil" in shown  # still there, as text


def test_an_api_seed_beyond_torchs_range_is_a_400_naming_the_field():
    from pydantic import ValidationError

    from training.openai_api import ChatRequest

    with pytest.raises(ValidationError, match="seed"):
        ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 2**70})
