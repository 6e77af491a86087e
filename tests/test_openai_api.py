"""`app.py serve`: the official `openai` client talks to a tiny job's model, streamed and not."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest
from helpers import make_adapter_job, wait_for

ROOT = Path(__file__).resolve().parents[1]
QUESTION = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory, tiny_model_dir):
    """A finished-looking adapter job over the tiny model, with an adapter that changes answers."""
    return make_adapter_job(tmp_path_factory.mktemp("api") / "identity-20261130-120000", tiny_model_dir)


@pytest.fixture(scope="module")
def completions(tiny_job):
    from training.openai_api import load

    return load(tiny_job)


@contextlib.contextmanager
def running(app):
    """uvicorn in a background thread on a free port; yields the OpenAI base_url."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def base_url(completions):
    from training.openai_api import create_app

    with running(create_app(completions)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


def expected_reply(completions, max_new_tokens: int, messages=QUESTION):
    """What ChatSession itself answers (greedy), with its stats."""
    from training.chat import GenerationSettings

    text = completions.session.reply(messages, settings=GenerationSettings(max_new_tokens=max_new_tokens))
    return text, completions.session.last_stats


def test_models_list_names_the_job(client, tiny_job):
    assert [model.id for model in client.models.list().data] == [tiny_job.name]
    assert client.models.retrieve(tiny_job.name).id == tiny_job.name


def test_an_answer_equals_chat_session_reply_with_usage(client, completions, tiny_job):
    messages = [{"role": "system", "content": "You are terse."}, *QUESTION]
    text, stats = expected_reply(completions, 12, messages)
    answer = client.chat.completions.create(model=tiny_job.name, messages=messages, temperature=0, max_tokens=12)
    assert text and answer.choices[0].message.content == text
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == stats.finish_reason
    assert answer.usage.prompt_tokens == completions.session.prompt_tokens(messages) == stats.prompt_tokens > 5
    assert answer.usage.completion_tokens == stats.new_tokens
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_content_given_as_text_parts_answers_like_a_string(client, completions, tiny_job):
    text, _ = expected_reply(completions, 8)
    parts = [{"role": "user", "content": [{"type": "text", "text": "Who are "}, {"type": "text", "text": "you?"}]}]
    answer = client.chat.completions.create(model=tiny_job.name, messages=parts, temperature=0, max_tokens=8)
    assert answer.choices[0].message.content == text


def test_streamed_deltas_join_to_the_same_answer(client, completions, tiny_job):
    text, stats = expected_reply(completions, 12)
    chunks = list(
        client.chat.completions.create(
            model=tiny_job.name,
            messages=QUESTION,
            temperature=0,
            max_completion_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([piece for piece in content if piece]) > 1  # really streamed, not one lump
    assert "".join(content) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [stats.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == stats.new_tokens
    assert len({c.id for c in chunks}) == 1


def test_the_raw_stream_is_server_sent_events_ending_in_done(base_url, tiny_job):
    body = {"model": tiny_job.name, "messages": QUESTION, "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "length" and last["choices"][0]["delta"] == {}


def test_max_tokens_reports_length_truthfully(client, tiny_job):
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        answer = client.chat.completions.create(model=tiny_job.name, messages=QUESTION, temperature=0, **limit)
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == 3


def test_a_reply_that_ends_itself_reports_stop(client, completions, tiny_job):
    """Make the greedy first token an end token: the answer stops there, and says "stop", not "length"."""
    import torch

    session = completions.session
    with torch.inference_mode():
        first = int(session.model(**session._inputs(QUESTION)).logits[0, -1].argmax())
    config = session.model.generation_config
    original = config.eos_token_id
    config.eos_token_id = [original, first]
    try:
        answer = client.chat.completions.create(model=tiny_job.name, messages=QUESTION, temperature=0, max_tokens=10)
    finally:
        config.eos_token_id = original
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens == 1


def test_sampling_with_a_seed_repeats_itself(client, tiny_job):
    def ask():
        return client.chat.completions.create(
            model=tiny_job.name, messages=QUESTION, temperature=1.0, top_p=0.9, seed=7, max_tokens=10
        )

    assert ask().choices[0].message.content == ask().choices[0].message.content


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"messages": []}, "messages", "at least 1 item"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "'user'"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a string, or a list"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content", "text only"),
        ({"messages": QUESTION, "max_tokens": "5"}, "max_tokens", "valid integer"),
        ({"messages": QUESTION, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"messages": QUESTION, "max_tokens": 100_000}, "max_tokens", "at most"),
        ({"messages": QUESTION, "temperature": 3}, "temperature", "less than or equal to 2"),
        ({"messages": QUESTION, "top_p": 0}, "top_p", "greater than 0"),
        ({"messages": QUESTION, "stop": ["\n"]}, "stop", "does not support"),
        ({"messages": QUESTION, "n": 2}, "n", "does not support"),
        (
            {"messages": QUESTION, "tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools",
            "response_template",
        ),
    ],
)
def test_a_bad_request_names_the_field(client, tiny_job, kwargs, param, words):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=tiny_job.name, **kwargs)
    error = caught.value.body
    assert error["param"].startswith(param) and error["message"].startswith(param)
    assert words in error["message"]
    assert caught.value.status_code == 400 and "Traceback" not in error["message"]


def test_malformed_bodies_and_unknown_names_get_openai_error_objects(base_url, client):
    url = f"{base_url}/chat/completions"
    missing = httpx.post(url, json={"model": "x"}, timeout=30)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    broken = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}, timeout=30)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    nowhere = httpx.get(f"{base_url}/completions", timeout=30)
    assert nowhere.status_code == 404 and "/v1/chat/completions" in nowhere.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)


def test_a_client_that_hangs_up_mid_stream_frees_the_model(base_url, client, completions, tiny_job):
    import time

    limit = 200  # a few seconds of generating on this CPU if nothing stopped it
    started = time.perf_counter()
    expected_reply(completions, limit)
    full_answer_s = time.perf_counter() - started
    assert completions.session.last_stats.new_tokens == limit  # no early end: a hang-up is what stops it below

    body = {"model": tiny_job.name, "messages": QUESTION, "max_tokens": limit, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=120) as response:
        lines = response.iter_lines()
        next(lines), next(lines), next(lines)  # the role chunk and some content: generation is under way
        hung_up = time.perf_counter()
    locks = (completions._lock, completions.session._lock)
    assert wait_for(lambda: not any(lock.locked() for lock in locks), timeout=60, interval=0.01)
    # ChatSession joins its generating thread before the lock is freed, so this is when generation stopped
    assert time.perf_counter() - hung_up < full_answer_s / 2, (time.perf_counter() - hung_up, full_answer_s)
    answer = client.with_options(timeout=60).chat.completions.create(
        model=tiny_job.name, messages=QUESTION, temperature=0, max_tokens=2
    )
    assert answer.usage.completion_tokens == 2


def test_requests_at_once_are_answered_one_at_a_time_and_alike(client, completions, tiny_job):
    text, _ = expected_reply(completions, 10)
    answers = []

    def ask():
        reply = client.chat.completions.create(model=tiny_job.name, messages=QUESTION, temperature=0, max_tokens=10)
        answers.append(reply.choices[0].message.content)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == [text] * 3


def test_an_api_key_is_required_when_set(completions, tiny_job):
    from training.openai_api import create_app

    with running(create_app(completions, api_key="s3cret-key")) as url:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong-key", max_retries=0).models.list()
        assert httpx.get(f"{url}/models", timeout=30).status_code == 401  # no header at all
        right = openai.OpenAI(base_url=url, api_key="s3cret-key", max_retries=0)
        assert right.models.list().data[0].id == tiny_job.name


def test_base_serves_the_untouched_base_model_alone(tiny_job, completions):
    from training.chat import GenerationSettings
    from training.openai_api import load

    base = load(tiny_job, tuned=False)
    assert base.model_id == f"{tiny_job.name}-base"
    assert base.session.model is None  # only the model that answers is in memory
    settings = GenerationSettings(max_new_tokens=10)
    assert base.session.reply(QUESTION, tuned=False, settings=settings) != completions.session.reply(
        QUESTION, settings=settings
    )
    assert completions.session.base_model is None  # and the tuned server holds no base copy


def test_exposure_check_allows_loopback_and_refuses_others_without_a_key():
    from training.errors import UserError
    from training.openai_api import check_exposure

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(host, None)
    check_exposure("0.0.0.0", "a-key")
    for host in ("0.0.0.0", "::", "192.168.1.10", "myhost.example"):
        with pytest.raises(UserError, match="LATHE_API_KEY"):
            check_exposure(host, None)


def run_app(*args, env=None, timeout=300):
    import os

    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment
    )


def test_cli_refuses_a_public_host_without_a_key(tiny_job):
    result = run_app("serve", str(tiny_job), "--host", "0.0.0.0", env={"LATHE_API_KEY": ""})
    assert result.returncode == 2
    assert "--host 0.0.0.0" in result.stderr and "LATHE_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_says_a_folder_is_not_a_job(tmp_path):
    result = run_app("serve", str(tmp_path))
    assert result.returncode == 2 and "is not a job folder" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_refuses_a_reward_model_job(tmp_path, tiny_model_dir):
    from training.spec import JobSpec

    spec = JobSpec().with_overrides(
        {"model.name_or_path": str(tiny_model_dir), "method.objective": "reward", "data.source": "demo:preferences"}
    )
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())
    (tmp_path / "adapter").mkdir()
    result = run_app("serve", str(tmp_path), "--port", str(free_port()))
    assert result.returncode == 2 and "reward model" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_keeps_the_wizards_options_apart(tmp_path):
    result = run_app("--port", "9000", "serve", str(tmp_path))
    assert result.returncode == 2 and "write them after it" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
