"""Save spec -> Load spec: a spec saved from one browser session fills every field of a new session,
and `app.py train` on the saved spec reproduces the run the wizard launched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import form_values, value_of, wait_for

pytestmark = pytest.mark.trains  # trains a small model in a worker or in-process: left out of test-fast

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(tmp_path, tiny_model_dir):
    from training.jobs import JobManager
    from wizard.app import serve_wizard

    manager = JobManager(tmp_path / "jobs")
    # the web UI reads a local model only from an operator's data folder (training/web_paths.py)
    demo = serve_wizard(manager, port=None, block=False, data_dirs=(str(tiny_model_dir.parent),))
    try:
        yield demo.local_url, manager
    finally:
        demo.close()


def losses(job_dir: Path) -> list[float]:
    events = [json.loads(line) for line in (Path(job_dir) / "events.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["type"] == "progress" and e.get("loss") is not None]


def test_a_saved_spec_fills_a_new_session_and_the_cli_reproduces_the_run(app, tiny_model_dir, tmp_path):
    from gradio_client import Client, handle_file

    from training.spec import load_spec

    url, manager = app
    first = Client(url, verbose=False)
    changed = {
        "Job name": "round-trip",
        "Model": str(tiny_model_dir),
        "Stop after": "Max steps",
        "Max steps": 3,
        "Learning rate": 0.001,
        "LoRA rank (r)": 4,
        "LoRA alpha": 8,
        "Batch size": 2,
        "Precision": "fp32",
        "Seed": 7,
        "Validation split": 0.1,
        "Use at most this many rows": 40,
        "Evaluate": False,
        "Mix in everyday questions (demo:general)": False,
    }
    values = form_values(first, "/gpu_preview", **changed)
    *_, saved_yaml, saved_path = first.predict(*values, api_name="/gpu_preview")
    saved = load_spec(value_of(saved_path))
    assert saved.hyperparameters.seed == 7 and saved.data.max_rows == 40 and not saved.output.evaluate

    second = Client(url, verbose=False)  # a new browser session starts from the defaults
    *loaded, message = second.predict(handle_file(value_of(saved_path)), api_name="/load_spec")
    assert message.startswith("✅ Loaded **round-trip**")
    again = second.predict(*[value_of(v) for v in loaded], api_name="/gpu_preview")
    assert again[3] == saved_yaml  # every field, as YAML

    status, _ = first.predict(True, False, *values, api_name="/launch")
    job_id = status.split("**")[1]
    assert wait_for(lambda: manager.snapshot(job_id).state in ("completed", "failed"), timeout=600)
    assert manager.snapshot(job_id).state == "completed", manager.snapshot(job_id).message
    cli_job = tmp_path / "from-cli"
    done = subprocess.run(
        [sys.executable, "app.py", "train", str(value_of(saved_path)), "--job-dir", str(cli_job)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wizard_run = losses(manager.snapshot(job_id).job_dir)
    assert len(wizard_run) == 3 and losses(cli_job) == pytest.approx(wizard_run, rel=1e-5)
