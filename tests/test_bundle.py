"""The reproducible bundle: a job keeps its exact rows, versions, hardware and command lines, and
the TRL command it writes really runs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundled_job(tmp_path_factory, tiny_model_dir):
    from training.engine import run_job
    from training.spec import JobSpec

    spec = JobSpec().with_overrides(
        {
            "name": "bundled",
            "model.name_or_path": str(tiny_model_dir),
            "data.validation_split": 0.1,
            "hyperparameters.max_steps": 2,
            "hyperparameters.batch_size": 2,
            "hyperparameters.precision": "fp32",
            "output.evaluate": False,
        }
    )
    job_dir = tmp_path_factory.mktemp("bundle") / "job"
    job_dir.mkdir()
    (job_dir / "spec.yaml").write_text(spec.to_yaml())
    run_job(spec, job_dir, lambda event: None, lambda: False)
    return job_dir


def test_the_job_keeps_its_rows_versions_hardware_and_commands(bundled_job):
    from training.data.load import build_datasets
    from training.spec import load_spec

    spec = load_spec(bundled_job / "spec.yaml")
    train, validation = build_datasets(spec.data, spec.hyperparameters.seed)
    saved = [json.loads(line) for line in (bundled_job / "prepared-data" / "train.jsonl").read_text().splitlines()]
    assert saved == train.to_list()
    assert len((bundled_job / "prepared-data" / "test.jsonl").read_text().splitlines()) == len(validation)
    environment = json.loads((bundled_job / "environment.json").read_text())
    assert environment["packages"]["transformers"] == metadata.version("transformers")
    assert environment["packages"]["trl"] == metadata.version("trl")
    assert environment["hardware"]["cpu_cores"] >= 1 and environment["python"] == sys.version.split()[0]
    text = (bundled_job / "reproduce.md").read_text()
    assert "python app.py train spec.yaml" in text and "trl sft " in text and "--num_processes 2" in text


def test_the_trl_command_it_writes_trains_the_same_job(bundled_job):
    text = (bundled_job / "reproduce.md").read_text()
    command = shlex.split(re.search(r"```bash\n(trl sft .*)\n```", text).group(1))
    assert command[command.index("--max_steps") + 1] == "2" and "--use_peft" in command
    trl = Path(sys.executable).parent / "trl"
    done = subprocess.run(
        [str(trl), *command[1:], "--num_processes", "1"],
        cwd=bundled_job,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    adapter = bundled_job / "trl-output"
    assert (adapter / "adapter_model.safetensors").is_file()
    ours = json.loads((bundled_job / "adapter" / "adapter_config.json").read_text())
    theirs = json.loads((adapter / "adapter_config.json").read_text())
    for key in ("r", "lora_alpha", "lora_dropout"):
        assert theirs[key] == ours[key], key
    assert sorted(theirs["target_modules"]) == sorted(ours["target_modules"])  # PEFT saves a set
