"""Token hygiene end to end: the app served as `python app.py` would be on a VM, two browser sessions with
their own canary tokens, and the fake Hub recording which token each call carried.

The app runs in its own process with the operator's token in HF_TOKEN and a token saved on the machine
(HF_HOME/token): neither may be used for a session's action. Session A checks access, trains on a gated Hub
dataset, is stopped from session B (with confirmation, recorded in the job's log), resumes, chats, and
launches a job whose Hub error quotes the token. Session B checks access and trains on another gated
dataset. Afterwards no token appears in any job file (training_args.bin included), the app's log, the
served pages or the worker's command line, and the fake Hub saw each session's token on its own calls only.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_hub import (
    CANARY_TOKEN,
    CANARY_TOKEN_B,
    GATED_APPROVED,
    GATED_DATASET,
    GATED_DATASET_B,
    TOKEN_ECHO_MODEL,
    FakeHub,
)
from gradio_client import Client
from helpers import form_values, value_of, wait_for

from training.jobdir import read_status
from training.redact import MASK
from wizard.form import SOURCE_DEMO, SOURCE_HUB

pytestmark = pytest.mark.trains  # trains a small model in a worker or in-process: left out of test-fast

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_TOKEN = "hf_" + "OPERATORsavedOnThisMachine01234x"  # the machine's own token: no session may use it
SECRETS = (CANARY_TOKEN, CANARY_TOKEN_B, OPERATOR_TOKEN)


@dataclass
class Hosted:
    url: str
    hub: FakeHub
    jobs_dir: Path
    hf_home: Path
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=5).status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def hosted(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("hosted")
    hf_home = root / "hf-home"
    hf_home.mkdir()
    (hf_home / "token").write_text(OPERATOR_TOKEN)  # what `hf auth login` leaves on a machine
    with FakeHub() as hub:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING_FACE"))}
        env.update(
            HF_ENDPOINT=hub.url,
            HF_HUB_OFFLINE="0",
            HF_HOME=str(hf_home),
            HF_TOKEN=OPERATOR_TOKEN,
            GRADIO_ANALYTICS_ENABLED="False",
        )
        port, log = free_port(), root / "app.log"
        with open(log, "wb") as output:
            app = subprocess.Popen(
                [
                    *(sys.executable, "app.py", "--jobs-dir", str(root / "jobs"), "--port", str(port)),
                    *("--data-dir", str(tiny_model_dir.parent)),  # the web UI reads local models only from here
                ],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}/"
        try:
            assert wait_for(lambda: app.poll() is not None or served(url), timeout=180), "the app did not start"
            assert app.poll() is None, log.read_text()
            yield Hosted(url, hub, root / "jobs", hf_home, log)
        finally:
            app.terminate()
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()


def job_view(client: Client, job_id: str) -> tuple[int, str, str]:
    """(step, status text, log lines) as the run view shows them."""
    status, progress, *_, logs = client.predict(job_id, api_name="/job_view")
    match = re.search(r"step (\d+) of", progress or "")
    return (int(match.group(1)) if match else 0), status, logs or ""


def tiny_job(client: Client, name: str, dataset: str, max_steps: int, tiny_model_dir: Path) -> list:
    return form_values(
        client,
        "/launch",
        **{
            "Job name": name,
            "Model": str(tiny_model_dir),
            "Data source": SOURCE_HUB,
            "Dataset id": dataset,
            "Mix in everyday questions (demo:general)": False,
            "Validation split": 0,
            "Stop after": "Max steps",
            "Max steps": max_steps,
            "Save steps": 50,
            "Batch size": 2,
            "Precision": "fp32",
        },
    )


def launch(client: Client, values: list) -> str:
    message, job_id = client.predict(*values, api_name="/launch")
    assert "Launched" in message, message
    return value_of(job_id)


def stop_with_confirmation(client: Client, job_id: str) -> None:
    question = client.predict(job_id, api_name="/ask_to_stop")  # (the Group it shows is not an API output)
    assert f"Stop **{job_id}**?" in question and "recorded in its log" in question
    client.predict(job_id, api_name="/stop_job")


def test_tokens_stay_with_their_session_and_leak_nowhere(hosted, tiny_model_dir):
    hub = hosted.hub
    session_a, session_b = Client(hosted.url, verbose=False), Client(hosted.url, verbose=False)

    def calls_during(action):
        start = len(hub.requests)
        result = action()
        return result, hub.requests[start:]

    # Each session checks access with its own token: every Hub call it makes carries that token
    for client, token, user in (
        (session_a, CANARY_TOKEN, "canary-user-a"),
        (session_b, CANARY_TOKEN_B, "canary-user-b"),
    ):
        (access, box), calls = calls_during(
            lambda c=client, t=token: c.predict(GATED_APPROVED, t, api_name="/check_access")
        )
        assert f"Signed in as {user}" in access and box == "", access
        # (huggingface_hub also fetches its public agent-harness list once a day, without a token)
        calls = [(path, auth) for path, auth in calls if not path.startswith("/api/agent-harnesses")]
        assert calls and {auth for _, auth in calls} == {f"Bearer {token}"}, calls

    # A token pasted into the dataset field is refused by name, and never travels to the Hub in a URL
    pasted = form_values(session_a, "/next_2", **{"Data source": SOURCE_HUB, "Dataset id": CANARY_TOKEN})
    result, calls = calls_during(lambda: session_a.predict(*pasted, api_name="/next_2"))
    assert "looks like it holds a Hugging Face token" in str(result) and CANARY_TOKEN not in str(result)
    assert not calls

    # A trains on a gated dataset; B's job, on another, waits its turn
    a_id = launch(session_a, tiny_job(session_a, "canary-a", GATED_DATASET, 1000, tiny_model_dir))
    a_launched = len(hub.requests)  # the app's own checks are done; A's worker is still importing
    b_id = launch(session_b, tiny_job(session_b, "canary-b", GATED_DATASET_B, 3, tiny_model_dir))
    assert wait_for(lambda: job_view(session_a, a_id)[0] >= 2, timeout=300, interval=0.5), job_view(session_a, a_id)
    pid = read_status(hosted.jobs_dir / a_id)["pid"]
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert "training.worker" in command_line and not any(s in command_line for s in SECRETS)

    # B watches A's job and stops it, after confirming; A's log says so
    stop_with_confirmation(session_b, a_id)
    assert wait_for(lambda: "stopped" in job_view(session_a, a_id)[1], timeout=180, interval=0.5)
    stopped_at, _, logs = job_view(session_a, a_id)
    assert re.search(r"stop requested from the wizard at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", logs), logs
    assert "stop requested from the wizard at" in (hosted.jobs_dir / a_id / "worker.log").read_text()

    # A resumes with its own token (after B's job, which now runs with B's), trains on, and is stopped again
    # (the run view says "stopped" at the worker's last event; resume waits for its process to have exited)
    assert wait_for(lambda: "Resuming" in session_a.predict(a_id, api_name="/resume_job"), timeout=60, interval=1)
    assert wait_for(lambda: "completed" in job_view(session_b, b_id)[1], timeout=300, interval=0.5), job_view(
        session_b, b_id
    )
    assert wait_for(lambda: job_view(session_a, a_id)[0] > stopped_at, timeout=300, interval=0.5)
    stop_with_confirmation(session_a, a_id)
    assert wait_for(lambda: "stopped" in job_view(session_a, a_id)[1], timeout=180, interval=0.5)

    # Chat with A's result
    assert "Loaded" in session_a.predict(a_id, api_name="/load_chat")
    tuned, base, stats, _ = session_a.predict(a_id, "Who are you?", "", 0.0, 1.0, 8, [], [], api_name="/chat")
    assert tuned[-1]["content"] and base[-1]["content"] and "tokens/s" in stats

    # A job whose Hub error quotes the token: it fails, and the message and worker.log are masked
    failing = form_values(
        session_a,
        "/launch",
        **{
            "Job name": "canary-fail",
            "Model": TOKEN_ECHO_MODEL,
            "Data source": SOURCE_DEMO,
            "Stop after": "Max steps",
            "Max steps": 2,
        },
    )
    fail_id = launch(session_a, failing)
    assert wait_for(lambda: "failed" in job_view(session_a, fail_id)[1], timeout=300, interval=0.5)
    failure = job_view(session_a, fail_id)[1]
    assert "Training failed" in failure and not any(s in failure for s in SECRETS), failure
    worker_log = (hosted.jobs_dir / fail_id / "worker.log").read_text()
    assert f"Authorization: Bearer {MASK}" in worker_log, worker_log[-3000:]  # the chained Hub error, masked

    # The fake Hub: every call carried its own session's token, and the machine's token was never used
    for path, auth in hub.requests:
        assert not auth or OPERATOR_TOKEN not in auth, path
        if GATED_DATASET in path or TOKEN_ECHO_MODEL in path:
            assert auth in (None, f"Bearer {CANARY_TOKEN}"), (path, auth)
        if GATED_DATASET_B in path:
            assert auth in (None, f"Bearer {CANARY_TOKEN_B}"), (path, auth)
    workers_a = [auth for path, auth in hub.requests[a_launched:] if GATED_DATASET in path]
    assert f"Bearer {CANARY_TOKEN}" in workers_a  # A's worker (not only the app) fetched with A's token
    assert any(auth == f"Bearer {CANARY_TOKEN_B}" for path, auth in hub.requests if GATED_DATASET_B in path)
    assert (hosted.hf_home / "token").read_text() == OPERATOR_TOKEN  # nothing logged in (no login() call)

    # No token in any job file, the app's log or what the server hands a browser
    checked = 0
    for path in hosted.jobs_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s.encode() in data for s in SECRETS), path
            checked += 1
    assert any(hosted.jobs_dir.rglob("training_args.bin")) and checked > 20
    app_log = hosted.log.read_text(errors="replace")
    assert not any(s in app_log for s in SECRETS), app_log[-3000:]
    for route in ("", "config", "gradio_api/info", "gradio_api/openapi.json"):
        body = urllib.request.urlopen(hosted.url + route, timeout=30).read().decode(errors="replace")
        assert not any(s in body for s in SECRETS), route
