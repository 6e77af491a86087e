"""Checkpoint bookkeeping: a torn save is never picked, and pruning never leaves nothing to resume."""

from __future__ import annotations

from training.checkpoints import (
    COMPLETE_MARKER,
    checkpoint_folders,
    latest_complete_checkpoint,
    mark_complete,
    remove_torn,
)


def save(job_dir, step: int, complete: bool = True, keep: int = 2):
    folder = job_dir / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        mark_complete(folder, keep=keep)
    return folder


def names(job_dir) -> list[str]:
    return [p.name for p in checkpoint_folders(job_dir / "checkpoints")]


def test_a_torn_checkpoint_is_never_the_latest(tmp_path):
    assert latest_complete_checkpoint(tmp_path) is None
    save(tmp_path, 2)
    save(tmp_path, 4, complete=False)  # killed half-way through the save
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-2"
    assert (tmp_path / "checkpoints" / "checkpoint-2" / COMPLETE_MARKER).read_text() == "2"


def test_pruning_keeps_the_newest_complete_ones_and_orders_by_step_not_name(tmp_path):
    for step in (5, 10, 15):
        save(tmp_path, step, keep=2)
    assert names(tmp_path) == ["checkpoint-10", "checkpoint-15"]


def test_with_one_kept_a_new_save_is_marked_before_the_old_one_goes(tmp_path):
    save(tmp_path, 3, keep=1)
    save(tmp_path, 6, complete=False)  # the Trainer is writing checkpoint-6 ...
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-3"  # ... and 3 is still there
    mark_complete(tmp_path / "checkpoints" / "checkpoint-6", keep=1)
    assert names(tmp_path) == ["checkpoint-6"]


def test_resume_clears_half_written_checkpoints(tmp_path):
    save(tmp_path, 2)
    save(tmp_path, 4, complete=False)
    assert remove_torn(tmp_path) == ["checkpoint-4"]
    assert names(tmp_path) == ["checkpoint-2"]


def test_an_old_torn_folder_goes_at_the_next_complete_save(tmp_path):
    save(tmp_path, 2, complete=False)
    save(tmp_path, 4)
    assert names(tmp_path) == ["checkpoint-4"]
