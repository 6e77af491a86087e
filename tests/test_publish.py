"""Push to the Hub through the real huggingface_hub client, against the local fake Hub (tests/fake_hub.py):
repo creation, upload, a reused repo, the merged model, the 401 and 403 messages, the CLI and the wizard."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FOREIGN_ORG, INVALID_TOKEN, MEMBER_ORG, READ_ONLY_TOKEN, USER, VALID_TOKEN
from helpers import make_adapter_job

from training.errors import UserError
from training.publish import PUSH_LOG, push_job

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["fake_hub"]


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory, tiny_model_dir):
    return make_adapter_job(tmp_path_factory.mktemp("publish") / "tiny-job", tiny_model_dir)


@pytest.fixture
def job(finished_job, tmp_path):
    """A copy per test, so that one test's pushes.jsonl or eval.json do not reach another."""
    return Path(shutil.copytree(finished_job, tmp_path / finished_job.name))


def card_of(hub, repo_id: str):
    from huggingface_hub import ModelCard

    return ModelCard(hub.repos[repo_id].files["README.md"].decode())


PUSH_PATHS = ("/api/whoami-v2", "/api/repos/", "/api/models/", "/api/validate-yaml")


def assert_token_only_in_headers(hub, token: str):
    ours = [(path, auth) for path, auth in hub.requests if path.startswith(PUSH_PATHS)]
    assert ours
    assert all(auth == f"Bearer {token}" for _, auth in ours), [(p, a) for p, a in ours if a != f"Bearer {token}"]
    # Other requests reach the endpoint too: huggingface_hub's agent registry (/api/agent-harnesses, to word its
    # User-Agent) and gradio's usage telemetry (/api/telemetry/...). None of them may carry the token.
    assert all(auth is None for path, auth in hub.requests if not path.startswith(PUSH_PATHS))
    assert not any(token in path for path, _ in hub.requests)


def pushes(job) -> list[dict]:
    log = job / PUSH_LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def test_pushing_an_adapter_creates_a_private_repo_with_a_loadable_card(job, tiny_model_dir, fake_hub_server):
    hub = fake_hub_server
    url = push_job(job, "tiny-adapter", VALID_TOKEN, endpoint=hub.url)

    repo_id = f"{USER}/tiny-adapter"  # a bare name goes to the token's own account
    assert url == f"{hub.url}/{repo_id}"
    repo = hub.repos[repo_id]
    assert repo.private
    expected = {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    assert expected | {"README.md", "lathe-spec.yaml"} <= set(repo.files)
    assert repo.files["adapter_model.safetensors"] == (job / "adapter" / "adapter_model.safetensors").read_bytes()
    assert repo.commits == ["Upload LoRA adapter from Lathe job tiny-job"]  # one commit for the whole folder

    card = card_of(hub, repo_id)
    assert card.data.base_model == str(tiny_model_dir)
    assert card.data.license == "other" and {"lathe", "trl", "sft", "lora"} <= set(card.data.tags)
    assert f'PeftModel.from_pretrained(base, "{repo_id}")' in card.text

    assert_token_only_in_headers(hub, VALID_TOKEN)
    [record] = pushes(job)
    assert record["repo"] == repo_id and record["url"] == url and record["commit"] == repo.sha
    assert record["private"] and record["created"] and record["what"] == "adapter"
    assert not any(VALID_TOKEN in p.read_bytes().decode(errors="replace") for p in job.rglob("*") if p.is_file())


def test_pushing_again_reuses_the_repo_and_keeps_its_visibility(job, fake_hub_server):
    hub = fake_hub_server
    repo_id = f"{MEMBER_ORG}/shared"  # an organisation the user may write to
    push_job(job, repo_id, VALID_TOKEN, private=False, endpoint=hub.url)
    assert not hub.repos[repo_id].private

    # The job was evaluated since: the card changes, so the second push makes a second commit
    (job / "eval.json").write_text(json.dumps({"base": {"loss": 2.5}, "tuned": {"loss": 1.25}}))
    url = push_job(job, repo_id, VALID_TOKEN, private=True, endpoint=hub.url)

    repo = hub.repos[repo_id]
    assert url == f"{hub.url}/{repo_id}" and len(repo.commits) == 2
    assert not repo.private  # an existing repo keeps its visibility; the checkbox is for new ones
    assert "tuned_loss" in repo.files["README.md"].decode()
    first, second = pushes(job)
    assert first["created"] and not second["created"] and second["private"] is False
    assert second["commit"] == repo.sha != first["commit"]

    # Nothing changed: the client skips the empty commit, and the push still succeeds
    push_job(job, repo_id, VALID_TOKEN, endpoint=hub.url)
    assert len(repo.commits) == 2 and pushes(job)[-1]["commit"] == repo.sha


def test_pushing_the_merged_model_uploads_a_standalone_model(job, fake_hub_server, tmp_path):
    from transformers import AutoModelForCausalLM, GenerationConfig

    hub = fake_hub_server
    url = push_job(job, "tiny-merged", VALID_TOKEN, merged=True, endpoint=hub.url)
    repo_id = f"{USER}/tiny-merged"
    files = hub.repos[repo_id].files
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"} <= set(files)
    assert "adapter_config.json" not in files
    card = card_of(hub, repo_id)
    assert (
        card.data.library_name == "transformers" and f'AutoModelForCausalLM.from_pretrained("{repo_id}")' in card.text
    )
    assert pushes(job)[-1]["what"] == "merged" and url.endswith(repo_id)

    # What reached the Hub loads on its own, and stops on the chat template's end of turn
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    for name, content in files.items():
        (downloaded / name).write_bytes(content)
    model = AutoModelForCausalLM.from_pretrained(downloaded)
    assert model.config.num_hidden_layers == 2
    assert len(GenerationConfig.from_pretrained(downloaded).eos_token_id) >= 1


@pytest.mark.parametrize(
    ("token", "repo", "expected"),
    [
        (INVALID_TOKEN, "x", ["token:", "refused this token", "step 1"]),
        (READ_ONLY_TOKEN, "y", ["token:", "read-only", "write access at https://huggingface.co/settings/tokens"]),
        (VALID_TOKEN, f"{FOREIGN_ORG}/z", ["repo:", f"Ask an admin of {FOREIGN_ORG}", f"{USER}/z"]),
    ],
    ids=["revoked-401", "read-only-403", "foreign-org-403"],
)
def test_refused_pushes_say_what_to_fix_without_the_token(job, fake_hub_server, token, repo, expected):
    with pytest.raises(UserError) as error:
        push_job(job, repo, token, endpoint=fake_hub_server.url)
    message = str(error.value)
    assert all(part in message for part in expected), message
    assert token not in message
    assert fake_hub_server.repos == {} and pushes(job) == []
    assert_token_only_in_headers(fake_hub_server, token)


@pytest.mark.parametrize(
    ("token", "repo", "expected"),
    [
        (None, "x", "token: pushing needs a Hugging Face token"),
        (VALID_TOKEN, "", "repo: give the repo"),
        (VALID_TOKEN, "a/b/c", "repo: 'a/b/c' is not a valid repo id"),
        (VALID_TOKEN, "bad name!", "repo: 'bad name!' is not a valid repo id"),
        (VALID_TOKEN, VALID_TOKEN, "repo: this looks like a token"),
    ],
    ids=["no-token", "no-repo", "two-slashes", "bad-characters", "token-in-repo-field"],
)
def test_bad_input_is_named_before_any_request(job, fake_hub_server, token, repo, expected):
    with pytest.raises(UserError, match="^" + re.escape(expected)) as error:
        push_job(job, repo, token, endpoint=fake_hub_server.url)
    assert VALID_TOKEN not in str(error.value)
    assert fake_hub_server.requests == []  # the token never travelled, not even in a URL


def test_an_unreachable_hub_is_said_plainly(job, hub_online):
    with socket.socket() as sock:  # a port nobody listens on: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(UserError, match="Can't reach the Hugging Face Hub"):
        push_job(job, "x", VALID_TOKEN, endpoint=closed)


def run_cli(hub, *args: str, token: str | None) -> tuple[int, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_IMPLICIT_TOKEN="1")
    if token:
        env["HF_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "app.py", "push", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout + done.stderr


def test_the_cli_pushes_with_the_token_from_the_environment_only(job, fake_hub_server):
    hub = fake_hub_server
    code, out = run_cli(hub, str(job), "--repo", "from-cli", "--public", token=VALID_TOKEN)
    assert code == 0, out
    assert f"pushed: {hub.url}/{USER}/from-cli" in out and VALID_TOKEN not in out
    assert not hub.repos[f"{USER}/from-cli"].private  # --public
    assert_token_only_in_headers(hub, VALID_TOKEN)

    code, out = run_cli(hub, str(job), "--repo", "from-cli-2", token=READ_ONLY_TOKEN)
    assert code == 2 and "error: token: this token is read-only" in out, out
    assert "Traceback" not in out and READ_ONLY_TOKEN not in out

    code, out = run_cli(hub, str(job), "--repo", "from-cli-3", token=None)
    assert code == 2 and "error: token:" in out and "HF_TOKEN" in out and "Traceback" not in out, out

    code, out = run_cli(hub, str(job), "--repo", "x", "--token", VALID_TOKEN, token=None)
    assert code != 0 and "unrecognized arguments: --token" in out  # no way to put it on a command line
    assert set(hub.repos) == {f"{USER}/from-cli"}


def test_the_wizard_pushes_with_the_sessions_token(job, fake_hub_server, monkeypatch):
    from gradio_client import Client
    from huggingface_hub import constants

    from training.jobs import JobManager
    from wizard.app import serve_wizard

    hub = fake_hub_server
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # where HfApi() goes when given no endpoint
    demo = serve_wizard(JobManager(job.parent), port=None, block=False)
    try:
        client = Client(demo.local_url, verbose=False)
        # Check access with the embedded model asks no server; it moves the token into the session's state
        client.predict("embedded:smollm2-135m-instruct", VALID_TOKEN, api_name="/check_access")
        result = client.predict(job.name, "from-wizard", True, False, api_name="/push_to_hub")
        assert f"Pushed the adapter of **{job.name}** to [{hub.url}/{USER}/from-wizard]" in result
        assert hub.repos[f"{USER}/from-wizard"].private
        assert_token_only_in_headers(hub, VALID_TOKEN)

        refused = client.predict(job.name, f"{FOREIGN_ORG}/nope", True, False, api_name="/push_to_hub")
        assert refused.startswith("⚠ repo:") and VALID_TOKEN not in refused
    finally:
        demo.close()
