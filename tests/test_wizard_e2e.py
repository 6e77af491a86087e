"""The running app driven through its endpoints with gradio_client, as a script (or the browser) would.

Builds jobs from the wizard's own form with the demo data, launches, watches loss arrive, stops one
job early, lets another finish, and chats with the result. A canary token goes through the whole
flow and must never show up in job files, logs, the worker's command line or the served page.
"""

from __future__ import annotations

import re
import tempfile
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client
from helpers import form_values, value_of, wait_for

from training.jobdir import read_status
from training.jobs import JobManager
from wizard.app import serve_wizard

pytestmark = pytest.mark.slow
CANARY = "hf_" + "canaryTOKENdoNotLeak0123456789abcdef"


@pytest.fixture(scope="module")
def app(tmp_path_factory, embedded_model_dir, tiny_model_dir):
    root = tmp_path_factory.mktemp("wizard")
    jobs_dir, data_dir = root / "jobs", root / "data"
    data_dir.mkdir()
    # The jobs here train the tiny model (the browser test clicks through with the embedded one): what these
    # tests prove is the app's plumbing, which does not depend on the model's size
    folders = (str(data_dir), str(tiny_model_dir.parent))
    demo = serve_wizard(JobManager(jobs_dir), port=None, block=False, data_dirs=folders)
    yield demo, jobs_dir
    demo.close()


def step_of(client: Client, job_id: str) -> tuple[int, str]:
    status, progress, *_ = client.predict(job_id, api_name="/job_view")
    match = re.search(r"step (\d+) of", progress or "")
    return (int(match.group(1)) if match else 0), status


def test_launch_watch_stop_finish_and_chat(app, tiny_model_dir):
    demo, jobs_dir = app
    tiny = {"Model": str(tiny_model_dir), "Precision": "fp32"}
    client = Client(demo.local_url, verbose=False)

    access, _token_box = client.predict("embedded:smollm2-135m-instruct", CANARY, api_name="/check_access")
    assert "no token" in access and CANARY not in access

    # A long job: watch loss arrive, then stop it early.
    long_job = form_values(
        client, "/launch", **{**tiny, "Job name": "long", "Stop after": "Max steps", "Max steps": 100_000}
    )
    message, long_id = client.predict(*long_job, api_name="/launch")
    long_id = value_of(long_id)
    assert "Launched" in message
    assert wait_for(lambda: step_of(client, long_id)[0] >= 2, timeout=300, interval=1.0), step_of(client, long_id)
    pid = read_status(jobs_dir / long_id)["pid"]
    assert CANARY not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    # A second Launch while it trains, with "queue it" unticked, is refused with the reason
    refused = form_values(
        client, "/launch", **{**tiny, "Job name": "refused", "If another job is training, queue this one": False}
    )
    message, _ = client.predict(*refused, api_name="/launch")
    assert f"{long_id} is already training" in message
    assert not any(p.name.startswith("refused") for p in jobs_dir.iterdir())
    client.predict(long_id, api_name="/stop_job")
    assert wait_for(lambda: "stopped" in step_of(client, long_id)[1], timeout=120, interval=1.0), step_of(
        client, long_id
    )
    stopped_at = step_of(client, long_id)[0]
    assert 2 <= stopped_at < 100_000

    # A short job that finishes, then the chat: the tuned model answers differently from the base.
    short_job = form_values(
        client,
        "/launch",
        **{
            **tiny,
            "Job name": "short",
            "Stop after": "Max steps",
            "Max steps": 8,
            "Learning rate": 1e-2,
            "Evaluate": False,
        },
    )
    _, short_id = client.predict(*short_job, api_name="/launch")
    short_id = value_of(short_id)
    assert wait_for(lambda: "completed" in step_of(client, short_id)[1], timeout=300, interval=1.0), step_of(
        client, short_id
    )

    assert "Loaded" in client.predict(short_id, api_name="/load_chat")
    tuned, base, stats, _ = client.predict(short_id, "Who are you?", "", 0.0, 1.0, 32, [], [], api_name="/chat")
    tuned_reply, base_reply = tuned[-1]["content"], base[-1]["content"]
    assert tuned_reply and base_reply and tuned_reply != base_reply
    assert "first token" in stats and "tokens/s" in stats

    # The canary token reached no file, log or served page.
    for path in jobs_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    for route in ("/", "/config", "/gradio_api/info"):
        body = urllib.request.urlopen(demo.local_url.rstrip("/") + route, timeout=30).read().decode(errors="replace")
        assert CANARY not in body, route


def test_next_refuses_an_invalid_step_and_names_the_field(app):
    demo, _ = app
    client = Client(demo.local_url, verbose=False)
    values = form_values(client, "/next_3", **{"Learning rate": 5.0, "Stop after": "Max steps", "Max steps": None})
    result = client.predict(*values, api_name="/next_3")
    problems = next(item for item in result if isinstance(item, str))  # the step's problem list
    assert "Learning rate" in problems and "less than or equal to 1" in problems
    assert "Max steps" in problems or "neither epochs nor max_steps" in problems


def test_next_checks_the_disk_and_the_hardware_for_its_step(app):
    demo, jobs_dir = app
    client = Client(demo.local_url, verbose=False)

    def problems(endpoint, **by_label):
        result = client.predict(*form_values(client, endpoint, **by_label), api_name=endpoint)
        return next(item for item in result if isinstance(item, str))

    outside = problems("/next_1", Model="/no/such/model")  # the web UI reads only the operator's folders
    assert "data folders" in outside and "Model" in outside
    missing = str(jobs_dir.parent / "data" / "no-such-model")
    assert f"{missing} is not a folder here" in problems("/next_1", Model=missing)
    import torch

    if not torch.cuda.is_available():  # fp16 is fine on a GPU
        assert "fp16 needs a GPU" in problems("/next_3", Precision="fp16")
    assert problems("/next_3") == ""  # the defaults pass


def test_launch_of_a_job_estimated_not_to_fit_needs_a_tick(app):
    demo, jobs_dir = app
    client = Client(demo.local_url, verbose=False)
    huge = form_values(client, "/launch", **{"Job name": "huge", "Method": "full", "Batch size": 1024})
    message, _ = client.predict(*huge, api_name="/launch")
    assert "Estimated not to fit" in message
    assert not any(p.name.startswith("huge") for p in jobs_dir.iterdir())


def test_measure_times_real_steps_in_a_worker_and_leaves_no_job(app, tiny_model_dir, monkeypatch):
    demo, jobs_dir = app
    client = Client(demo.local_url, verbose=False)
    made, real_mkdtemp = [], tempfile.mkdtemp  # the measuring run's folder is a temporary one

    def recording_mkdtemp(*args, **kwargs):
        made.append(Path(real_mkdtemp(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    before = sorted(jobs_dir.iterdir()) if jobs_dir.exists() else []
    measured = form_values(client, "/measure_speed", Model=str(tiny_model_dir), Precision="fp32")
    result = client.predict(*measured, api_name="/measure_speed")
    assert re.search(r"measured here: \d+ tokens/s", result), result
    measured_in = [folder for folder in made if folder.name.startswith("lathe-measure-")]
    assert len(measured_in) == 1 and not measured_in[0].exists()  # it ran in its own folder, then deleted it
    assert (sorted(jobs_dir.iterdir()) if jobs_dir.exists() else []) == before  # and left no job behind


def test_an_hourly_price_adds_the_cost(app):
    demo, _ = app
    client = Client(demo.local_url, verbose=False)
    values = form_values(client, "/price_estimate", **{"Price per hour (optional)": 3.0})
    result = client.predict(*values, api_name="/price_estimate")
    assert re.search(r"cost: about \d+\.\d\d at 3 per hour", result), result
