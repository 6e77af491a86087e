"""output.report_to: MLflow (local file store), W&B (offline) and Trackio (local) each receive a short run's
loss through the Trainer's own integrations, read back with each tool's own reader; their keys never reach a
job file or log; a missing package or key is one clear message before launch."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

# Written in two parts so no committed string looks like a key; it must never reach a file under the jobs folder
WANDB_CANARY = "wandb" + "canary0key0that0must0never0be0written0anywhere"


def losses(job_dir: Path) -> list[float]:
    events = [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["type"] == "progress" and e.get("loss") is not None]


def wandb_records(path: Path):
    """W&B's offline run file: its LevelDB-style log of W&B's own protobuf Records (what `wandb sync` uploads)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


@pytest.mark.trains
def test_mlflow_wandb_and_trackio_each_receive_the_loss(tmp_path, tiny_spec, monkeypatch):
    from training.jobs import JobManager

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", WANDB_CANARY)
    for variable in ("MLFLOW_TRACKING_URI", "TRACKIO_DIR", "WANDB_DIR", "TRACKIO_SPACE_ID"):
        monkeypatch.delenv(variable, raising=False)
    # A dead webhook on the same job: the job still completes (notices never fail a job)
    monkeypatch.setenv("LATHE_TEST_DEAD_HOOK", "http://127.0.0.1:9/never")
    manager = JobManager(tmp_path / "jobs")
    spec = tiny_spec.with_overrides(
        {
            "output.report_to": ["tensorboard", "mlflow", "wandb", "trackio"],
            "output.notify": "LATHE_TEST_DEAD_HOOK",
            "hyperparameters.learning_rate": 2e-3,
        }
    )
    job_id = manager.start(spec)
    snapshot = manager.wait(job_id, timeout=600)
    job_dir = Path(snapshot.job_dir)
    assert snapshot.state == "completed", (snapshot.message, (job_dir / "worker.log").read_text()[-3000:])
    expected = losses(job_dir)
    assert len(expected) == 4

    # MLflow: its client over the local file store beside the jobs; run named after the job, spec settings as tags
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=(tmp_path / "jobs" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("lathe")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == job_id
    assert run.data.tags["lathe.hyperparameters.learning_rate"] == "0.002"
    history = sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    assert [m.value for m in history] == pytest.approx(expected)

    # W&B offline: the run file in the job folder, read as W&B's own records
    (run_file,) = (job_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_record.display_name == job_id
    logged = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            if "train/loss" in items:
                logged.append(items["train/loss"])
    assert logged == pytest.approx(expected)
    config = [r.config for r in records if r.WhichOneof("record_type") == "config"]
    assert any(item.key == "learning_rate" and json.loads(item.value_json) == 2e-3 for c in config for item in c.update)

    # Trackio: its own storage reader, in a fresh process (Trackio reads TRACKIO_DIR when imported)
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps([r.get('train/loss') for r in S.get_logs('lathe', sys.argv[1])]))",
            job_id,
        ],
        env={**__import__("os").environ, "TRACKIO_DIR": str(tmp_path / "jobs" / "trackio")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert read.returncode == 0, read.stderr[-2000:]
    trackio_losses = [v for v in json.loads(read.stdout.strip().splitlines()[-1]) if v is not None]
    assert trackio_losses == pytest.approx(expected)

    # The W&B key is nowhere under the jobs folder: job files, logs, tracker files
    for path in (tmp_path / "jobs").rglob("*"):
        if path.is_file():
            assert WANDB_CANARY.encode() not in path.read_bytes(), path


def test_a_missing_tracker_or_key_is_one_clear_message_before_launch(tiny_spec, monkeypatch, tmp_path, capsys):
    import importlib.util

    import app
    from training import trackers

    real = importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    problems = trackers.tracker_problems(tiny_spec.with_overrides({"output.report_to": ["mlflow"]}))
    assert problems == [
        (
            "output.report_to",
            "output.report_to: mlflow is not installed. Install it with `pip install mlflow-skinny==3.17.2`, "
            "or take mlflow off the list.",
        )
    ]
    monkeypatch.setattr(trackers.importlib.util, "find_spec", real)

    # W&B online without a key: the CLI refuses before any job folder is made
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(tiny_spec.with_overrides({"output.report_to": ["wandb"]}).to_yaml())
    assert app.main(["--jobs-dir", str(tmp_path / "jobs"), "train", str(spec_file)]) == 2
    error = capsys.readouterr().err
    assert "wandb needs a key: set WANDB_API_KEY" in error and "WANDB_MODE=offline" in error
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())
