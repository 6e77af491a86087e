"""The web UI reads only its own folders: every path field and every job lookup, through the real app.

The wizard runs with a login; a logged-in person types absolute paths, `..`, a symlink out of the upload
folder and the login file itself into each field that names a file or folder, and job names that are paths
into each action that looks a job up. Nothing is read, and the answer is the same whether the file exists.
The command line keeps full local access.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from gradio_client import Client
from helpers import form_values

from training.jobs import JobManager
from training.web_paths import NotAJob, WebRoots, resolve_job_name, web_path_problems
from wizard.app import serve_wizard
from wizard.auth import Authenticator, add_user
from wizard.form import SOURCE_HUB, SOURCE_UPLOAD

USER, PASSWORD = "alice", "correct-horse-battery"
CANARY = f"LATHE-PATH-CANARY-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("confined")
    add_user(root / "users.txt", USER, PASSWORD)
    secret = root / "outside" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_text("".join(f'{{"prompt": "{CANARY} {i}", "completion": "x"}}\n' for i in range(20)))
    allowed = root / "operator-data"
    allowed.mkdir()
    (allowed / "ok.jsonl").write_text(
        "".join(f'{{"prompt": "allowed row {i}", "completion": "y"}}\n' for i in range(20))
    )
    manager = JobManager(root / "jobs")
    uploads = root / "uploads"
    uploads.mkdir(exist_ok=True)
    (uploads / "link.jsonl").symlink_to(secret)
    outside_job = root / "outside" / "victim-job"
    outside_job.mkdir()
    (outside_job / "spec.yaml").write_text("name: victim\n")
    demo = serve_wizard(
        manager,
        port=None,
        block=False,
        auth=Authenticator.from_file(root / "users.txt"),
        data_dirs=(str(allowed),),
    )
    client = Client(demo.local_url, auth=(USER, PASSWORD), verbose=False)
    yield {"client": client, "root": root, "secret": secret, "uploads": uploads, "allowed": allowed}
    demo.close()


def outside_paths(served) -> dict[str, str]:
    root, uploads = served["root"], served["uploads"]
    return {
        "absolute": str(served["secret"]),
        "dot-dot": f"{uploads}/../outside/secret.jsonl",
        "symlink out": str(uploads / "link.jsonl"),
        "login file": str(root / "users.txt"),
        "missing": str(root / "outside" / "no-such-file.jsonl"),  # must read like the ones that exist
    }


def uploaded_path_index(client) -> int:
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/preview_data"]
    labels = [p["label"] for p in parameters["parameters"]]
    return labels.index("Demo dataset") + 1  # the hidden box that holds the uploaded file's path


def preview(client, index=None, value=None, **by_label) -> str:
    values = form_values(client, "/preview_data", **by_label)
    if index is not None:
        values[index] = value
    return str(client.predict(*values, api_name="/preview_data"))


def test_every_path_field_refuses_outside_paths_without_revealing_whether_they_exist(served):
    client = served["client"]
    index = uploaded_path_index(client)
    fields = {
        "uploaded path": lambda p: preview(client, index, p, **{"Data source": SOURCE_UPLOAD}),
        "validation source": lambda p: preview(client, **{"Or separate validation data": p}),
        "hub dataset": lambda p: preview(client, **{"Data source": SOURCE_HUB, "Dataset id": p}),
        "model folder": lambda p: preview(client, **{"Model": p}),
    }
    for field, ask in fields.items():
        answers = {}
        for name, path in outside_paths(served).items():
            answer = ask(path)
            assert CANARY not in answer and "scrypt" not in answer, (field, name, answer[:300])
            assert "web UI" in answer or "Hub id" in answer, (field, name, answer[:300])
            answers[name] = answer.replace(path, "PATH")
        assert len(set(answers.values())) == 1, (field, answers)  # exists or not: one answer
    # What the operator allows is read, so the refusals above are the confinement, not a broken check
    allowed = preview(client, index, str(served["allowed"] / "ok.jsonl"), **{"Data source": SOURCE_UPLOAD})
    assert "allowed row" in allowed and "web UI" not in allowed


def test_every_job_lookup_refuses_names_that_are_paths(served):
    client = served["client"]
    victim = str(served["root"] / "outside" / "victim-job")
    for name in (victim, "../outside/victim-job", "..", "a/b", "/etc"):
        assert "not a job name" in client.predict(name, api_name="/resume_job")
        assert "not a job name" in client.predict(name, api_name="/load_chat")
        assert "pick one from the list" in str(client.predict(name, api_name="/job_view"))
        assert "pick one from the list" in str(client.predict(name, api_name="/stop_job"))
        assert "Pick a finished job" in str(client.predict(name, api_name="/show_results"))
    assert not (Path(victim) / "stop").exists() and not list(Path(victim).glob("STOP*"))
    assert not (Path(victim) / "status.json").exists()  # nothing was queued or trained there


def test_job_names_resolve_under_the_jobs_folder_only(tmp_path):
    assert resolve_job_name(tmp_path, "my-job-20260101-000000") == tmp_path / "my-job-20260101-000000"
    for name in ("/abs", "../up", "a/b", "a\\b", "..", ".hidden", "", "x" * 300, "a\x00b"):
        with pytest.raises(NotAJob, match="not a job name"):
            resolve_job_name(tmp_path, name)
    manager = JobManager(tmp_path / "jobs")
    for action in (manager.snapshot, manager.resume, manager.stop):
        with pytest.raises(KeyError, match="not a job name"):
            action("../jobs-elsewhere")


def test_the_command_line_keeps_full_local_access(tmp_path):
    from training.spec import JobSpec

    outside = tmp_path / "anywhere.jsonl"
    outside.write_text('{"prompt": "a", "completion": "b"}\n')
    spec = JobSpec().with_overrides({"data.source": str(outside)})
    roots = WebRoots.make(tmp_path / "uploads", tmp_path / "jobs")
    assert [field for field, _ in web_path_problems(spec, roots)] == ["data.source"]  # the web UI refuses it
    from training.data.check import check_data  # the CLI's check reads it: no confinement there

    assert check_data(spec.with_overrides({"data.validation_split": 0.0})).usable is not None


def test_a_hub_id_is_checked_as_one_and_only_a_model_id_looks_at_the_disk(tmp_path, monkeypatch):
    """transformers reads a local folder before the Hub, so a model id that names one is refused in the web
    UI; a `hub:` data source is read from the Hub only, so the same id is fine there."""
    from training.spec import JobSpec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    roots = WebRoots.make(tmp_path / "uploads", tmp_path / "jobs")
    as_model = JobSpec().with_overrides({"model.name_or_path": "owner/name"})
    assert [field for field, _ in web_path_problems(as_model, roots)] == ["model.name_or_path"]
    as_data = JobSpec().with_overrides({"data.source": "hub:owner/name", "data.mix_in": []})
    assert web_path_problems(as_data, roots) == []
    bad = JobSpec().with_overrides({"data.source": "hub:not a hub id", "data.mix_in": []})
    assert "is not a Hugging Face Hub id" in web_path_problems(bad, roots)[0][1]
