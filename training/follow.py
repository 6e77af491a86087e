"""Following a job from a terminal: what a signal to `app.py train` means, and how a detached job is reached.

The worker runs in its own session (training/jobs.py), so a signal to the terminal's process group
never reaches it. Without this module a SIGTERM (`timeout`, a service manager) or a closed terminal's
SIGHUP ended `app.py train` and left its worker training on with nothing said; now both mean what
Ctrl-C means: stop at the next step, save a checkpoint, say where.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from training import jobdir
from training.jobdir import read_status

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """A SIGTERM or SIGHUP, handled where Ctrl-C is (a KeyboardInterrupt), with the signal's name kept."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.name = signal.Signals(signum).name


def _raise_stop(signum, frame):
    raise StopSignal(signum)


@contextlib.contextmanager
def signals_stop_the_job():
    """While a job is followed in the foreground, SIGTERM and SIGHUP interrupt like Ctrl-C (main thread only)."""
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt_name(error: KeyboardInterrupt) -> str:
    return error.name if isinstance(error, StopSignal) else "Ctrl-C"


def wait_until_started(manager, job_id: str) -> str:
    """Wait until the job's worker has started and return its state ("running", or a final one when it ended
    at once). The supervisor thread that starts a queued worker dies with this process, so a job waiting
    for its turn behind another is waited for here too."""
    job_dir = Path(manager.snapshot(job_id).job_dir)
    while True:
        status = read_status(job_dir)
        if status.get("pid") or status.get("state") not in (None, "queued"):
            return status.get("state", "running")
        if manager.wait(job_id, timeout=0.2).state in ("completed", "stopped", "failed"):
            return manager.snapshot(job_id).state


def how_to_reach(job_dir: str | Path) -> list[str]:
    """The commands that follow, stop and resume a job running in the background."""
    job_dir = Path(job_dir)
    return [
        f"  follow it:  python app.py follow {job_dir}   (or: tail -f {job_dir / jobdir.WORKER_LOG})",
        f"  stop it:    python app.py stop {job_dir}     (it saves a checkpoint at the next step)",
        f"  resume it:  python app.py train --resume {job_dir}",
    ]
