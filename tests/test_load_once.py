"""One Launch reads the data file once, and an unchanged step-4 estimate is not counted again."""

import json

import gradio as gr
import pytest

from training.data import load
from training.data import preview as data_preview


@pytest.fixture
def counted(monkeypatch):
    """Counts of the data file's reads (every read goes through read_rows) and of the estimate's token counts."""
    counts = {"reads": 0, "estimates": 0}
    read_rows, count = load.read_rows, data_preview._count

    def counting_read(*args, **kwargs):
        counts["reads"] += 1
        return read_rows(*args, **kwargs)

    def counting_estimate(*args, **kwargs):
        counts["estimates"] += 1
        return count(*args, **kwargs)

    monkeypatch.setattr(load, "read_rows", counting_read)
    monkeypatch.setattr(data_preview, "_count", counting_estimate)
    load.LOADED.clear()  # what earlier tests in this process left must not hide a read
    data_preview.SUMMARIES.clear()
    return counts


@pytest.fixture
def wizard(tmp_path, tiny_spec, monkeypatch):
    """The wizard's form over a job on a data file of its own, and a JobManager that records what it starts."""
    from training.jobs import JobManager
    from wizard.form import SOURCE_UPLOAD, UPLOADED_PATH, SpecForm
    from wizard.steps import data, hyperparameters, model

    rows = tmp_path / "answers.jsonl"
    conversation = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Lathe's model."}]
    rows.write_text("\n".join(json.dumps({"messages": conversation}) for _ in range(12)) + "\n")
    spec = tiny_spec.with_overrides({"data.source": str(rows)})
    manager = JobManager(tmp_path / "jobs")
    started = []
    monkeypatch.setattr(manager, "start", lambda spec, **_: started.append(spec) or "the-job")
    with gr.Blocks():
        form = SpecForm(spec)
        model.build(form)
        data.build(form, tmp_path / "uploads")
        hyperparameters.build(form)
    values = form.values_for(spec)
    values[list(form.components).index(UPLOADED_PATH)] = str(rows)
    assert values[list(form.components).index("source_kind")] == SOURCE_UPLOAD
    return form, manager, values, started


def launch(wizard):
    from wizard.steps.launch import start_job

    form, manager, values, started = wizard
    before = len(started)
    message, _ = start_job(manager, form, "", "", True, False, values)
    assert message.startswith("Launched") and len(started) == before + 1, message
    return started[-1]


def test_a_launch_reads_the_data_file_once(counted, wizard):
    spec = launch(wizard)  # the last check of the files, then the estimate's fit check
    assert counted == {"reads": 1, "estimates": 1}
    assert spec.data.source.endswith("answers.jsonl")


def test_a_launch_after_the_preview_reuses_its_estimate(counted, wizard, tmp_path):
    from wizard.steps.preview import preview

    form, _, values, _ = wizard
    hardware, summary, estimate, spec_yaml, _ = preview(form, values)  # step 4
    assert "GB needed" in estimate and not summary.startswith("⚠") and "answers" in spec_yaml
    assert counted == {"reads": 1, "estimates": 1}
    launch(wizard)
    assert counted == {"reads": 1, "estimates": 1}  # nothing changed: nothing read or counted again

    # A changed file is read again (its size and modification time are part of the key)
    rows = tmp_path / "answers.jsonl"
    rows.write_text(rows.read_text() * 2)
    launch(wizard)
    assert counted == {"reads": 2, "estimates": 2}
