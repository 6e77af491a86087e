"""The app serves its page quickly: building the UI imports neither torch nor the training stack."""

import subprocess
import sys
import urllib.request
from pathlib import Path

from gradio_client import Client

from training.jobs import JobManager
from wizard.app import serve_wizard
from wizard.data_report import preview_html
from wizard.form import SpecForm
from wizard.monitor import eval_frame, loss_frame, preference_frame, preference_plot, progress_html, status_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_building_the_ui_does_not_import_the_training_stack(tmp_path):
    code = (
        "import sys; from training.jobs import JobManager; from wizard.app import build_ui; "
        f"build_ui(JobManager({str(tmp_path)!r})); "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_page_is_served_and_reattaches_to_the_newest_job(tmp_path):
    job = tmp_path / "demo-job"
    job.mkdir()
    (job / "spec.yaml").write_text("name: demo-job\n")
    (job / "status.json").write_text('{"state": "completed"}')
    demo = serve_wizard(JobManager(tmp_path), port=None, block=False)  # None: gradio picks a free port
    try:
        html = urllib.request.urlopen(demo.local_url, timeout=30).read().decode()
        assert "Lathe" in html
        client = Client(demo.local_url, verbose=False)
        status, *_ = client.predict("demo-job", api_name="/job_view")
        assert "demo-job" in status and "completed" in status
    finally:
        demo.close()


def test_the_run_view_draws_a_snapshot():
    from training.jobs import JobSnapshot

    snapshot = JobSnapshot(
        job_id="j",
        job_dir="/j",
        state="running",
        phase="training",
        step=3,
        total_steps=10,
        epoch=0.3,
        tokens_per_second=400.0,
        eta_seconds=75,
        train_loss=((1, 3.0), (2, 2.5), (3, 2.0)),
        eval_loss=((3, 2.2),),
    )
    assert "step 3 of 10" in progress_html(snapshot) and "1m15s" in progress_html(snapshot)
    assert "running" in status_markdown(snapshot)
    assert list(loss_frame(snapshot)["loss"]) == [3.0, 2.5, 2.0]
    assert list(eval_frame(snapshot)["validation_loss"]) == [2.2]
    assert loss_frame(JobSnapshot(job_id="", job_dir="")).dtypes["loss"] == "float64"  # numeric axis from the start
    assert preference_plot(snapshot).visible is False  # SFT jobs have no preference curves


def test_a_preference_job_draws_margin_and_accuracy():
    from training.jobs import JobSnapshot

    snapshot = JobSnapshot(
        job_id="j", job_dir="/j", reward_margin=((1, 0.0), (2, 0.3)), reward_accuracy=((1, 0.5), (2, 1.0))
    )
    plot = preference_plot(snapshot)
    assert plot.visible is True
    frame = preference_frame(snapshot)
    assert sorted(set(frame["metric"])) == ["accuracy (better answer scored higher)", "reward margin"]
    assert list(frame[frame["metric"] == "reward margin"]["value"]) == [0.0, 0.3]


def test_preference_rows_preview_with_the_worse_answer_struck_through():
    from training.data.preview import RenderedExample

    page = preview_html([RenderedExample(prompt="<q>", completion="good", rejected="bad")])
    assert "<mark>good</mark>" in page and "<del>bad</del>" in page and "&lt;q&gt;" in page
    assert "<del>" not in preview_html([RenderedExample(prompt="q", completion="a")]).split("</p>", 1)[1]


def test_the_form_builds_the_spec_and_places_each_problem_under_its_field():
    from training.presets import example_jobs

    with __import__("gradio").Blocks():
        form = SpecForm(example_jobs()["quickstart"])
        form.field("hyperparameters.learning_rate")
        form.field("hyperparameters.batch_size")
    spec, problems = form.build([2e-4, 16.0])
    assert spec.hyperparameters.learning_rate == 2e-4 and spec.hyperparameters.batch_size == 16
    spec, problems = form.build([7.0, 0])
    assert spec is None and {p for p, _ in problems} == {"hyperparameters.learning_rate", "hyperparameters.batch_size"}
    updates = form.show_problems(problems, ["hyperparameters.learning_rate", "hyperparameters.batch_size"])
    assert all(update["info"].startswith("⚠") for update in updates)


def test_picking_a_catalog_model_suggests_its_settings():
    from wizard.steps.model import suggested_paths, suggested_values

    paths = suggested_paths()
    assert {"method.type", "hyperparameters.context_length"} <= set(paths)
    updates = dict(zip(paths, suggested_values("meta-llama/Llama-3.1-8B-Instruct", paths), strict=True))
    assert updates["method.type"]["value"] == "qlora" and updates["hyperparameters.context_length"]["value"] == 2048
    assert all("value" not in u for u in suggested_values("someone/unknown-model", paths))


def test_uploads_past_the_hosts_limit_are_refused_with_the_limit(tmp_path):
    import httpx

    demo = serve_wizard(JobManager(tmp_path / "jobs"), port=None, block=False, max_upload_mb=1)
    try:
        url = demo.local_url.rstrip("/") + "/gradio_api/upload"
        too_big = httpx.post(url, files={"files": ("big.jsonl", b"x" * (2 * 2**20))}, timeout=30)
        assert too_big.status_code == 413 and "maximum allowed size of 1048576 bytes" in too_big.text
        assert httpx.post(url, files={"files": ("ok.jsonl", b"{}\n")}, timeout=30).status_code == 200
    finally:
        demo.close()


def test_launch_asks_for_confirmation_when_the_job_wont_fit(embedded_model_dir):
    from training.spec import JobSpec
    from wizard.steps.preview import fit_warning

    base = JobSpec().with_overrides({"model.name_or_path": str(embedded_model_dir), "data.max_rows": 16})
    assert fit_warning(base, None) is None  # the quick job fits this machine
    huge = base.with_overrides({"method.type": "full", "hyperparameters.batch_size": 1024})
    warning = fit_warning(huge, None)
    assert warning and "Estimated not to fit" in warning and "GB free" in warning and "Launch even if" in warning
