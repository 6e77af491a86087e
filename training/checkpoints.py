"""Checkpoint folders: which are complete, which to keep, and which to throw away.

The Trainer writes a checkpoint file by file; a process killed half-way leaves a folder that
looks like a checkpoint but is not one. We write a COMPLETE marker last and trust nothing
without it. We also do the "keep the last K" pruning ourselves, after the marker: the Trainer's
own `save_total_limit` deletes old checkpoints *before* the new one is marked, so with K=1 a kill
in that gap would leave no usable checkpoint at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from training import jobdir

COMPLETE_MARKER = "COMPLETE"
PREFIX = "checkpoint-"


def step_of(folder: Path) -> int:
    return int(folder.name.removeprefix(PREFIX))


def checkpoint_folders(checkpoints_dir: Path) -> list[Path]:
    """Every checkpoint-N folder, complete or not, oldest first."""
    folders = [p for p in Path(checkpoints_dir).glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX) :].isdigit()]
    return sorted(folders, key=step_of)


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def mark_complete(folder: Path, keep: int) -> None:
    """Mark a finished save, then prune: the newest `keep` complete checkpoints stay, torn ones older go."""
    (folder / COMPLETE_MARKER).write_text(str(step_of(folder)))
    complete = [p for p in checkpoint_folders(folder.parent) if is_complete(p)]
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    newest = step_of(complete[-1])
    for torn in (p for p in checkpoint_folders(folder.parent) if not is_complete(p) and step_of(p) < newest):
        shutil.rmtree(torn, ignore_errors=True)


def latest_complete_checkpoint(job_dir: Path) -> Path | None:
    """The newest checkpoint whose save finished, or None."""
    complete = [p for p in checkpoint_folders(Path(job_dir) / jobdir.CHECKPOINTS) if is_complete(p)]
    return complete[-1] if complete else None


def remove_torn(job_dir: Path) -> list[str]:
    """Before a resume: delete half-written checkpoints (a killed save), so none is ever mistaken for one."""
    torn = [p for p in checkpoint_folders(Path(job_dir) / jobdir.CHECKPOINTS) if not is_complete(p)]
    for folder in torn:
        shutil.rmtree(folder, ignore_errors=True)
    return [folder.name for folder in torn]
