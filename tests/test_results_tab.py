"""The Results tab over a job finished by a real worker: where the model is, the evaluation the
worker ran when training ended, a zip download that holds the adapter, and evaluating again."""

from __future__ import annotations

import zipfile

import pytest
from helpers import wait_for


@pytest.fixture(scope="module")
def app_with_a_finished_job(tmp_path_factory, tiny_model_dir):
    from gradio_client import Client

    from training.jobs import JobManager
    from training.spec import JobSpec
    from wizard.app import serve_wizard

    manager = JobManager(tmp_path_factory.mktemp("results") / "jobs")
    spec = JobSpec().with_overrides(
        {
            "name": "results",
            "model.name_or_path": str(tiny_model_dir),
            "data.validation_split": 0.2,
            "hyperparameters.max_steps": 4,
            "hyperparameters.batch_size": 4,
            "hyperparameters.precision": "fp32",
        }
    )
    job_id = manager.start(spec)
    assert wait_for(lambda: manager.snapshot(job_id).state in ("completed", "failed"), timeout=600)
    assert manager.snapshot(job_id).state == "completed", manager.snapshot(job_id).message
    demo = serve_wizard(manager, port=None, block=False)
    try:
        yield Client(demo.local_url, verbose=False), manager, job_id
    finally:
        demo.close()


def test_results_show_where_the_model_is_and_the_evaluation_from_the_worker(app_with_a_finished_job):
    client, manager, job_id = app_with_a_finished_job
    where, evaluation, reproduce = client.predict(job_id, api_name="/show_results")
    assert manager.snapshot(job_id).output_dir in where and "adapter_model.safetensors" in where
    assert "| loss |" in evaluation and "| perplexity |" in evaluation and "| prompt | expected |" in evaluation
    assert "trl sft" in reproduce


def test_the_adapter_download_is_a_zip_of_the_adapter(app_with_a_finished_job):
    client, _, job_id = app_with_a_finished_job
    path = client.predict(job_id, api_name="/download_adapter")
    with zipfile.ZipFile(path) as archive:
        assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(archive.namelist())
    from pathlib import Path

    from wizard.results import _exports

    # The server's copy is the zip alone, served where it lies (not the folder it was made from, nor a copy)
    (made,) = [folder for folder in _exports().iterdir() if folder.name.startswith(f"{job_id}-adapter-")]
    assert [p.name for p in made.iterdir()] == [f"{job_id}-adapter.zip"] and Path(path).name == f"{job_id}-adapter.zip"


def test_evaluate_again_rewrites_the_report(app_with_a_finished_job):
    from pathlib import Path

    client, manager, job_id = app_with_a_finished_job
    report = Path(manager.snapshot(job_id).job_dir) / "eval.json"
    report.unlink()
    assert "Not evaluated yet" in client.predict(job_id, api_name="/show_results")[1]
    table = client.predict(job_id, api_name="/evaluate_job")
    assert "| loss |" in table and report.is_file()
