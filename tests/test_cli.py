"""`python app.py ...` as a person runs it: bad input gets one clear line and a non-zero exit."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, "app.py", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write_spec(tmp_path, data) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"hyperparameters": {"lerning_rate": 1e-4}}, "hyperparameters.lerning_rate: unknown field"),
        ({"hyperparameters": {"batch_size": -3}}, "hyperparameters.batch_size: Input should be greater than or equal"),
        ({"hyperparameters": {"epochs": 2, "max_steps": 5}}, "epochs and max_steps are both set. Choose one"),
        ({"data": {"source": "/nowhere/rows.jsonl"}}, "data.source: file not found: /nowhere/rows.jsonl"),
        ({"model": {"name_or_path": "./models/missing-model"}}, "model.name_or_path: ./models/missing-model is not"),
    ],
)
def test_bad_specs_get_a_clear_error_and_no_traceback(tmp_path, spec, expected):
    result = run_app("--jobs-dir", str(tmp_path / "jobs"), "train", write_spec(tmp_path, spec))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "jobs").exists() or not list((tmp_path / "jobs").iterdir())  # nothing was started


def test_missing_spec_file(tmp_path):
    result = run_app("train", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "Spec file not found" in result.stderr and "Traceback" not in result.stderr


def test_bad_override_is_reported_like_a_bad_spec(tmp_path):
    result = run_app("train", "presets/jobs/quickstart.yaml", "--set", "hyperparameters.learning_rate=7")
    assert result.returncode == 2 and "hyperparameters.learning_rate" in result.stderr


def test_help_spec_lists_every_section():
    result = run_app("train", "--help-spec")
    for path in (
        "model.name_or_path",
        "data.source",
        "method.lora_r",
        "hyperparameters.context_length",
        "output.save_total_limit",
    ):
        assert path in result.stdout


def test_chat_on_a_folder_that_is_not_a_job(tmp_path):
    result = run_app("chat", str(tmp_path), "--prompt", "hi")
    assert result.returncode == 2 and "is not a job folder" in result.stderr


@pytest.mark.trains
def test_train_runs_a_job_from_yaml_with_overrides(tiny_model_dir, tmp_path):
    result = run_app(
        "--jobs-dir",
        str(tmp_path / "jobs"),
        "train",
        "presets/jobs/quickstart.yaml",
        "--set",
        f"model.name_or_path={tiny_model_dir}",
        "--set",
        "hyperparameters.max_steps=3",
        "--set",
        "hyperparameters.precision=fp32",
        "--job-dir",
        str(tmp_path / "job"),
    )
    assert result.returncode == 0, result.stderr
    assert "step 3/3" in result.stdout and "job completed" in result.stdout
    saved = yaml.safe_load((tmp_path / "job" / "spec.yaml").read_text())
    assert saved["hyperparameters"]["max_steps"] == 3 and saved["hyperparameters"]["epochs"] is None
    assert (tmp_path / "job" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.trains
def test_resume_from_the_command_line_finishes_a_stopped_job(tiny_spec, tmp_path):
    import time

    from training.jobs import JobManager

    manager = JobManager(tmp_path / "jobs")
    job_id = manager.start(tiny_spec.with_overrides({"hyperparameters.max_steps": 30}))
    deadline = time.monotonic() + 120
    while manager.snapshot(job_id).step < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    manager.stop(job_id)
    stopped = manager.wait(job_id, timeout=60)
    assert stopped.state == "stopped" and stopped.step < 30

    result = run_app("train", "--resume", stopped.job_dir)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "step 30/30" in result.stdout and "job completed" in result.stdout
    replayed = JobManager(tmp_path / "jobs").snapshot(job_id)
    assert [step for step, _ in replayed.train_loss] == list(range(1, 31))  # one curve, no repeated steps
    assert "resuming from checkpoint-" in "\n".join(replayed.logs)


def test_resume_of_a_folder_that_is_not_a_job(tmp_path):
    result = run_app("train", "--resume", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "There is no job called" in result.stderr and "Traceback" not in result.stderr


def test_estimate_prints_the_breakdown_verdict_and_fixes(embedded_model_dir):
    done = run_app("estimate", "presets/jobs/quickstart.yaml", "--price-per-hour", "2")
    code, out = done.returncode, done.stdout + done.stderr
    assert code == 0 and "Fits on CPU" in out and "activations:" in out and "cost: about" in out, out
    done = run_app(
        "estimate", "presets/jobs/quickstart.yaml", "--set", "method.type=full", "--memory-gb", "1", "--gpu", "T4"
    )
    code, out = done.returncode, done.stdout + done.stderr
    assert code == 0 and "Won't fit on T4" in out and "QLoRA (4-bit base)" in out, out


@pytest.mark.trains
def test_estimate_can_measure_a_few_real_steps(tiny_model_dir, tmp_path):
    done = run_app(
        "estimate",
        "presets/jobs/quickstart.yaml",
        "--measure",
        "--set",
        "data.max_rows=16",
        "--set",
        f"model.name_or_path={tiny_model_dir}",
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "measuring: 4 real steps" in out, out
    assert re.search(r"time: about \d+ min for [\d,]+ tokens \(measured here: \d+ tokens/s\)", out), out
