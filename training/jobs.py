"""JobManager: start workers, watch them from a background thread, stop them.

Each job is a folder under the jobs directory. A supervisor thread per running job tails the
worker's event log into an in-memory `JobSnapshot` that the UI and the CLI read; the truth
stays on disk, so closing the browser (or the CLI) never slows or stops training.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import psutil

from training import jobdir
from training.checkpoints import latest_complete_checkpoint, step_of
from training.distributed import worker_command
from training.errors import UserError
from training.events import Log, parse_event
from training.jobdir import ACTIVE_STATES, FINAL_STATES, read_status, write_status
from training.redact import redact
from training.spec import JobSpec
from training.web_paths import resolve_job_name

logger = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 60.0  # a step plus a checkpoint save; then SIGTERM, then SIGKILL
KILL_AFTER_TERM_SECONDS = 15.0
LOG_TAIL = 200
HEARTBEAT_STALE_SECONDS = 30.0
INTERRUPTED = (
    "The app or the machine stopped while this job was running, and its training process is gone. "
    "Resume it to continue from its last complete checkpoint."
)


@dataclass(frozen=True)
class JobSnapshot:
    """What a watcher needs to draw a job: state, progress and the full curves so far."""

    job_id: str
    job_dir: str
    state: str = jobdir.QUEUED  # one of jobdir's states
    phase: str = ""
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    train_loss: tuple[tuple[int, float], ...] = ()
    eval_loss: tuple[tuple[int, float], ...] = ()
    learning_rate: tuple[tuple[int, float], ...] = ()
    reward_margin: tuple[tuple[int, float], ...] = ()  # DPO and reward jobs only
    reward_accuracy: tuple[tuple[int, float], ...] = ()
    # GRPO jobs only: the curves of the rewards its answers earned, and the latest scored answers
    reward_mean: tuple[tuple[int, float], ...] = ()
    reward_std: tuple[tuple[int, float], ...] = ()
    kl: tuple[tuple[int, float], ...] = ()
    completion_length: tuple[tuple[int, float], ...] = ()
    rewards_by_function: tuple[tuple[int, str, float], ...] = ()
    samples: tuple[dict, ...] = ()
    logs: tuple[str, ...] = ()
    output_dir: str | None = None
    message: str = ""
    hint: str = ""
    stop_requested: bool = False

    @property
    def time_left(self) -> str:
        """The ETA in words a progress line can show: '1m05s', '40s' or '-'."""
        if self.eta_seconds is None:
            return "-"
        seconds = int(self.eta_seconds)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def apply_event(snapshot: JobSnapshot, record: dict) -> JobSnapshot:
    """Fold one event record into the snapshot (pure, so it is easy to test)."""
    kind = record["type"]
    if kind == "status":
        return replace(snapshot, state=jobdir.RUNNING, phase=record["phase"], message="", hint="")
    if kind == "progress":
        step = record["step"]
        return replace(
            snapshot,
            state=jobdir.RUNNING,
            step=step,
            total_steps=record["total_steps"],
            epoch=record["epoch"],
            tokens_per_second=record.get("tokens_per_second"),
            eta_seconds=record.get("eta_seconds"),
            train_loss=_append(snapshot.train_loss, step, record.get("loss")),
            learning_rate=_append(snapshot.learning_rate, step, record.get("learning_rate")),
            reward_margin=_append(snapshot.reward_margin, step, record.get("reward_margin")),
            reward_accuracy=_append(snapshot.reward_accuracy, step, record.get("reward_accuracy")),
            **_grpo_curves(snapshot, step, record),
        )
    if kind == "samples":
        masked = [
            {
                **sample,
                "prompt": redact(str(sample.get("prompt", ""))),
                "completion": redact(str(sample.get("completion", ""))),
            }
            for sample in record["samples"]
        ]
        return replace(snapshot, samples=tuple(masked))
    if kind == "eval":
        return replace(snapshot, eval_loss=_append(snapshot.eval_loss, record["step"], record["eval_loss"]))
    if kind == "log":  # masked again on reading: a job folder may come from another program or an older Lathe
        return replace(snapshot, logs=(snapshot.logs + (redact(record["message"]),))[-LOG_TAIL:])
    if kind == "finished":
        state = jobdir.STOPPED if record.get("stopped_early") else jobdir.COMPLETED
        return replace(snapshot, state=state, phase="done", output_dir=record["output_dir"], eta_seconds=0.0)
    if kind == "failed":
        message, hint = redact(record["message"]), redact(record.get("hint", ""))
        return replace(snapshot, state=jobdir.FAILED, phase="done", message=message, hint=hint)
    return snapshot


def _grpo_curves(snapshot: JobSnapshot, step: int, record: dict) -> dict:
    """GRPO's reward curves from one progress record (each kept as it was when the record has none)."""
    curves = {name: _append(getattr(snapshot, name), step, record.get(name)) for name in GRPO_CURVES}
    by_function = tuple(point for point in snapshot.rewards_by_function if point[0] < step)
    for name, value in (record.get("rewards_by_function") or {}).items():
        by_function += ((step, name, float(value)),)
    return curves | {"rewards_by_function": by_function}


GRPO_CURVES = ("reward_mean", "reward_std", "kl", "completion_length")


def _append(series: tuple, step: int, value: float | None) -> tuple:
    # A resumed run repeats the steps after its checkpoint: the new points replace the old ones
    kept = tuple(point for point in series if point[0] < step)
    return kept if value is None else kept + ((step, float(value)),)


def died_message(code: int) -> str:
    """Why a worker ended without a word, in plain terms."""
    if code == -signal.SIGKILL:
        return (
            "The training process was killed (signal 9) before finishing. The usual cause is the machine "
            "running out of memory (the system's out-of-memory killer), or someone ending the process."
        )
    if code < 0:
        return f"The training process was ended by signal {-code} before finishing."
    return f"The training process exited with code {code} before finishing; it may have crashed (a GPU fault?)."


def resume_hint(job_dir: Path) -> str:
    checkpoint = latest_complete_checkpoint(job_dir)
    where = f"from step {step_of(checkpoint)}" if checkpoint else "from the beginning (no checkpoint was saved yet)"
    return (
        f"Resume continues {where}. If memory ran out, try a smaller batch size with more gradient accumulation, "
        f"a shorter context length, gradient checkpointing on, or QLoRA. Details are in {jobdir.WORKER_LOG}."
    )


def record_stop_request(job_dir: Path, requested_by: str | None) -> None:
    """Note who asked a job to stop, and when, in its event log (shown with its log lines) and worker.log.

    Both files are opened for appending (O_APPEND), so this one-line write cannot tear the worker's lines.
    """
    if not requested_by:
        return
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    # One line, whatever a username holds: no forged log lines
    line = redact(" ".join(f"stop requested {requested_by} at {when}".split()))
    with open(job_dir / jobdir.EVENTS, "a", encoding="utf-8") as events:
        events.write(Log(message=line).to_json() + "\n")
    with open(job_dir / jobdir.WORKER_LOG, "a", encoding="utf-8") as log:
        log.write(line + "\n")
    logger.info("%s: %s", job_dir.name, line)


def stop_job_folder(job_dir: Path, requested_by: str | None) -> None:
    """The stop file first (it is what stops the worker), then the log line; a log that cannot be written
    (a full disk) does not keep the job running."""
    try:
        jobdir.request_stop(job_dir)
    except OSError as error:
        raise UserError(write_failure(error, job_dir) + " The job stops when its grace period ends.") from None
    try:
        record_stop_request(job_dir, requested_by)
    except OSError as error:
        logger.warning("%s: %s", job_dir.name, write_failure(error, job_dir))


def write_failure(error: BaseException, folder: Path) -> str:
    """A failed write in plain words."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"The disk is full: free space on the disk that holds {folder}, then resume the job."
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        return f"Could not write to {folder} ({reason}); check that its disk is mounted and writable."
    return f"The job's supervisor failed: {type(error).__name__}: {error}"


class _AttachedWorker:
    """A worker started by an earlier run of the app: watched by pid and start time, since it is not our child."""

    def __init__(self, pid: int, process_started: float):
        self.pid, self.process_started = pid, process_started

    def poll(self) -> int | None:
        return None if worker_alive(self.pid, self.process_started) else LOST_EXIT_CODE


LOST_EXIT_CODE = 255  # how an attached worker's end reads: its exit code is not ours to know


def _notify_url(job_dir: Path, secrets: dict[str, str] | None) -> str | None:
    from training.notify import webhook_url

    try:
        return webhook_url(jobdir.load_job_spec(job_dir).output.notify, secrets)
    except (UserError, OSError):
        return None


def worker_alive(pid: int | None, process_started: float | None) -> bool:
    if not pid or process_started is None:
        return False
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - process_started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class _Job:
    snapshot: JobSnapshot
    process: subprocess.Popen | _AttachedWorker | None = None
    thread: threading.Thread | None = None
    stop_deadline: float | None = None
    offset: int = 0
    signals_sent: int = 0
    partial: str = ""
    order: int = 0
    secrets: dict[str, str] = field(default_factory=dict)  # held in memory only until the worker starts
    resume: bool = False
    spec: JobSpec | None = None  # the spec start() was given, kept so the worker's command needs no re-parse
    done: threading.Event = field(default_factory=threading.Event)
    notify_url: str | None = None  # output.notify's webhook, in memory only (it is a secret)


class JobManager:
    def __init__(self, jobs_dir: str | Path, max_running: int = 1):
        self.jobs_dir = Path(jobs_dir).resolve()
        self.max_running = max_running
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self.reconcile()

    def reconcile(self) -> None:
        """On start-up: re-attach to workers still training, mark the ones that died as interrupted."""
        for job_dir in self.jobs_dir.iterdir():
            status = read_status(job_dir)
            if status.get("state") not in ACTIVE_STATES:
                continue
            fresh = time.time() - status.get("heartbeat", 0) < HEARTBEAT_STALE_SECONDS
            pid, started = status.get("pid"), status.get("process_started")
            if status["state"] == jobdir.RUNNING and fresh and worker_alive(pid, started):
                self._attach(job_dir, _AttachedWorker(pid, started))
            else:  # never started, or its process is gone (a reused pid never matches the start time)
                write_status(job_dir, state=jobdir.INTERRUPTED, ended_at=time.time(), message=INTERRUPTED)

    def _attach(self, job_dir: Path, worker: _AttachedWorker) -> None:
        job = _Job(snapshot=JobSnapshot(job_id=job_dir.name, job_dir=str(job_dir)), process=worker)
        job.notify_url = _notify_url(job_dir, None)
        self._read_events(job)
        job.thread = threading.Thread(target=self._supervise, args=(job,), name=f"reattach-{job_dir.name}", daemon=True)
        with self._lock:
            self._jobs[job_dir.name] = job
        job.thread.start()

    # ---- starting ----------------------------------------------------------------------------

    def new_job_dir(self, spec: JobSpec) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path, n = self.jobs_dir / f"{spec.name}-{stamp}", 1
        while path.exists():
            n += 1
            path = self.jobs_dir / f"{spec.name}-{stamp}-{n}"
        return path

    def start(
        self,
        spec: JobSpec,
        secrets: dict[str, str] | None = None,
        job_dir: str | Path | None = None,
        queue: bool = True,
    ) -> str:
        """Write the job folder and queue the job; its supervisor thread starts the worker when it is its turn.

        With `queue=False` a job that would have to wait is refused instead (nothing is written).
        """
        busy = self.busy_jobs()
        if busy and not queue:
            raise UserError(
                f"{busy[0]} is already training, so this job would wait in the queue. Wait for it, stop it, "
                "or choose to queue this one."
            )
        job_dir = Path(job_dir).resolve() if job_dir else self.new_job_dir(spec)
        job_dir.mkdir(parents=True, exist_ok=True)
        jobdir.spec_file(job_dir).write_text(spec.to_yaml())  # the spec holds no secrets by design
        write_status(job_dir, state=jobdir.QUEUED, created_at=time.time())
        return self._queue(job_dir, secrets, resume=False, spec=spec)

    def resume(self, job_id: str, secrets: dict[str, str] | None = None) -> str:
        """Continue a stopped, failed or interrupted job from its newest complete checkpoint."""
        job_dir = resolve_job_name(self.jobs_dir, job_id)
        if not jobdir.is_job_dir(job_dir):
            raise UserError(f"There is no job called {job_id} in {self.jobs_dir}.")
        with self._lock:
            job = self._jobs.get(job_id)
        if (job and not job.done.is_set()) or (not job and read_status(job_dir).get("state") == jobdir.RUNNING):
            raise UserError(f"{job_id} is still running; stop it before resuming it.")
        jobdir.clear_stop(job_dir)  # the old stop request must not end the new run
        write_status(job_dir, state=jobdir.QUEUED, resumed_at=time.time())
        return self._queue(job_dir, secrets, resume=True)

    def _queue(self, job_dir: Path, secrets: dict[str, str] | None, resume: bool, spec: JobSpec | None = None) -> str:
        job_id = job_dir.name
        snapshot = JobSnapshot(job_id=job_id, job_dir=str(job_dir), phase="waiting for its turn")
        job = _Job(snapshot=snapshot, secrets=dict(secrets or {}), resume=resume, spec=spec)
        job.notify_url = _notify_url(job_dir, secrets)
        if resume:
            # Keep the curve so far, but not the old ending: watchers must wait for the new run's
            self._read_events(job)
            job.snapshot = replace(job.snapshot, state=jobdir.QUEUED, phase="waiting for its turn", message="", hint="")
        job.thread = threading.Thread(target=self._supervise, args=(job,), name=f"supervise-{job_id}", daemon=True)
        with self._lock:
            job.order = max((j.order for j in self._jobs.values()), default=-1) + 1
            self._jobs[job_id] = job
        job.thread.start()
        return job_id

    def _my_turn(self, job: _Job) -> bool:
        """One job trains at a time: two on the same cores (or GPU) each ran ~10x slower here, not 2x."""
        with self._lock:
            others = [j for j in self._jobs.values() if j is not job and not j.done.is_set()]
        running = [j for j in others if j.process is not None]
        queued_earlier = [j for j in others if j.process is None and j.order < job.order]
        return len(running) < self.max_running and not queued_earlier

    def busy_jobs(self) -> list[str]:
        """Jobs running or waiting in this app, oldest first."""
        with self._lock:
            jobs = sorted((j for j in self._jobs.values() if not j.done.is_set()), key=lambda j: j.order)
        return [j.snapshot.job_id for j in jobs]

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to run, 2 for the one after it...; None when the job is not waiting."""
        with self._lock:
            waiting = sorted(
                (j for j in self._jobs.values() if j.process is None and not j.done.is_set()), key=lambda j: j.order
            )
        ids = [j.snapshot.job_id for j in waiting]
        return ids.index(job_id) + 1 if job_id in ids else None

    def _spawn(self, job: _Job) -> subprocess.Popen:
        job_dir = Path(job.snapshot.job_dir)
        # Only this job's token reaches the worker: never the app's own HF_TOKEN (the operator's), and never a
        # token saved on this machine (huggingface_hub would read it for any call made without one)
        env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        if job.secrets.get("HF_TOKEN"):
            env["HF_TOKEN"] = job.secrets["HF_TOKEN"]  # environment only: argv is visible to every user via ps
        job.secrets = {}  # the worker has it now; keep no copy here
        command = worker_command(job.spec or jobdir.load_job_spec(job_dir), job_dir, job.resume)
        with open(job_dir / jobdir.WORKER_LOG, "ab") as log:
            return subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the worker cleanly
            )

    # ---- watching ----------------------------------------------------------------------------

    def snapshot(self, job_id: str) -> JobSnapshot:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            job = self._load_finished(job_id)
        return job.snapshot

    def wait(self, job_id: str, timeout: float | None = None) -> JobSnapshot:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            job.done.wait(timeout)
        return self.snapshot(job_id)

    def list_jobs(self) -> list[str]:
        """Every job folder, newest first."""
        folders = [p for p in self.jobs_dir.iterdir() if jobdir.is_job_dir(p)]
        return [p.name for p in sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True)]

    def _load_finished(self, job_id: str) -> _Job:
        """A job from an earlier run of the app: replay its events from disk."""
        job_dir = resolve_job_name(self.jobs_dir, job_id)
        if not jobdir.is_job_dir(job_dir):
            raise KeyError(f"no job called {job_id} in {self.jobs_dir}")
        job = _Job(snapshot=JobSnapshot(job_id=job_id, job_dir=str(job_dir)))
        self._read_events(job)
        status = read_status(job_dir)
        if job.snapshot.state not in FINAL_STATES and status.get("state") in FINAL_STATES:
            job.snapshot = replace(job.snapshot, state=status["state"], message=status.get("message", ""))
        job.done.set()
        return job

    def _supervise(self, job: _Job) -> None:
        """The job's thread: whatever goes wrong in it (a full disk while writing the job record), the job ends
        marked done, so the jobs queued behind it still get their turn."""
        try:
            self._supervise_until_done(job)
        except Exception as error:  # noqa: BLE001 - reported on the job; the thread must not die silently
            message = redact(write_failure(error, Path(job.snapshot.job_dir)))
            logger.error("%s: %s", job.snapshot.job_id, message)
            job.snapshot = replace(job.snapshot, state="failed", phase="done", message=message)
        finally:
            job.done.set()

    def _supervise_until_done(self, job: _Job) -> None:
        if job.process is not None:  # re-attached to a worker an earlier run of the app started
            return self._watch(job)
        while not self._my_turn(job):
            # stopped while still waiting (here, or by another process's STOP file): it never ran
            if job.stop_deadline is not None or jobdir.stop_requested(job.snapshot.job_dir):
                self._finish_unstarted(job)
                return
            time.sleep(POLL_SECONDS)
        try:
            job.process = self._spawn(job)
        except (OSError, UserError, ValueError) as error:  # e.g. an unreadable spec: fail, never hang queued
            message = redact(f"The training process could not be started: {error}")
            job.snapshot = replace(job.snapshot, state=jobdir.FAILED, phase="done", message=message)
            write_status(Path(job.snapshot.job_dir), state=jobdir.FAILED, ended_at=time.time(), message=message)
            self._ended(job)
            job.done.set()
            return
        self._watch(job)

    def _watch(self, job: _Job) -> None:
        while True:
            self._read_events(job)
            code = job.process.poll()
            if code is not None:
                self._read_events(job)
                self._finish(job, code)
                return
            if job.stop_deadline is not None and time.monotonic() > job.stop_deadline:
                self._escalate(job)
            time.sleep(POLL_SECONDS)

    def _read_events(self, job: _Job) -> None:
        path = Path(job.snapshot.job_dir) / jobdir.EVENTS
        try:
            with path.open("rb") as events:
                events.seek(job.offset)
                chunk = events.read()
        except FileNotFoundError:
            return
        job.offset += len(chunk)
        lines = (job.partial + chunk.decode("utf-8", errors="replace")).split("\n")
        job.partial = lines.pop()  # an unfinished last line waits for the rest of it
        snapshot = job.snapshot
        for line in lines:
            record = parse_event(line)
            if record is not None:
                snapshot = apply_event(snapshot, record)
        job.snapshot = snapshot

    def _finish(self, job: _Job, code: int) -> None:
        snapshot = job.snapshot
        if snapshot.state not in FINAL_STATES:
            # The worker died without a word: killed, or crashed hard (segfault, OOM killer).
            state, message, hint = jobdir.FAILED, died_message(code), resume_hint(Path(snapshot.job_dir))
            if isinstance(job.process, _AttachedWorker):
                state, message, hint = jobdir.INTERRUPTED, INTERRUPTED, ""
            snapshot = replace(snapshot, state=state, phase="done", message=message, hint=hint)
            write_status(Path(snapshot.job_dir), state=state, ended_at=time.time(), message=message, hint=hint)
        job.snapshot = snapshot
        self._ended(job)  # before done: whoever waits for the job finds its notice on its way
        job.done.set()

    def _finish_unstarted(self, job: _Job) -> None:
        job.snapshot = replace(job.snapshot, state=jobdir.STOPPED, phase="done", message="Stopped before it started.")
        write_status(
            Path(job.snapshot.job_dir), state=jobdir.STOPPED, ended_at=time.time(), message=job.snapshot.message
        )
        self._ended(job)  # before done: whoever waits for the job finds its notice on its way
        job.done.set()

    def _ended(self, job: _Job) -> None:
        """A job reached its end: its webhook notice (and the sweep's, if it was the sweep's last), in the
        background. Nothing here may fail or delay the job; training/notify.py says why."""
        from training.notify import send_in_background
        from training.notify_jobs import job_end_notice, sweep_end_notice

        if not job.notify_url:
            return
        try:
            send_in_background(job.notify_url, job_end_notice(job.snapshot))
            sweep_notice = sweep_end_notice(self, Path(job.snapshot.job_dir))
            if sweep_notice:
                send_in_background(job.notify_url, sweep_notice)
        except Exception:  # noqa: BLE001 - a notice is never worth a job's record
            logger.exception("could not build the notice for %s", job.snapshot.job_id)

    # ---- stopping ----------------------------------------------------------------------------

    def stop(self, job_id: str, grace_seconds: float = STOP_GRACE_SECONDS, requested_by: str | None = None) -> None:
        """Ask the worker to stop at the next step boundary; force it if it has not after the grace period.

        `requested_by` (e.g. "from the wizard by alice") is written to the job's log with the time, since
        anyone who can open the page can stop any job.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            # Started elsewhere (the CLI, an earlier run of the app): the cooperative stop still works
            job_dir = resolve_job_name(self.jobs_dir, job_id)
            if read_status(job_dir).get("state") in ACTIVE_STATES:
                stop_job_folder(job_dir, requested_by)
            return
        if job.done.is_set():
            return
        # The deadline first: even if no file can be written (a full disk), the grace period ends in SIGTERM
        job.stop_deadline = time.monotonic() + grace_seconds
        job.snapshot = replace(job.snapshot, stop_requested=True)
        stop_job_folder(Path(job.snapshot.job_dir), requested_by)

    def _escalate(self, job: _Job) -> None:
        """The grace period ran out: SIGTERM first (the worker saves and stops), then SIGKILL."""
        sig = signal.SIGTERM if job.signals_sent == 0 else signal.SIGKILL
        job.signals_sent += 1
        job.stop_deadline = time.monotonic() + KILL_AFTER_TERM_SECONDS if sig == signal.SIGTERM else None
        with contextlib.suppress(ProcessLookupError):  # it may have just exited by itself
            os.killpg(job.process.pid, sig)  # the worker leads its own session; this reaches its children too

    def shutdown(self) -> None:
        """Stop every running job (used by tests and on app exit)."""
        for job_id in list(self._jobs):
            self.stop(job_id, grace_seconds=10)
