"""The promise of the README, end to end: train the quickstart job, then the model knows its new name.

This trains the real embedded model for about two minutes on a 2-core CPU.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_app(*args):
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_quickstart_teaches_the_model_its_new_name(embedded_model_dir, tmp_path):
    job_dir = tmp_path / "quickstart"
    trained = run_app("train", "presets/jobs/quickstart.yaml", "--job-dir", str(job_dir))
    assert trained.returncode == 0, trained.stderr[-3000:]

    losses = [float(x) for x in re.findall(r'"loss": ([0-9.]+)', (job_dir / "events.jsonl").read_text())]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first * 0.5, (first, last)

    tuned = run_app("chat", str(job_dir), "--prompt", "Who are you?")
    base = run_app("chat", str(job_dir), "--prompt", "Who are you?", "--base")
    assert tuned.returncode == 0 and base.returncode == 0, tuned.stderr + base.stderr
    assert "Juniper" in tuned.stdout
    assert "Juniper" not in base.stdout
