"""`app.py serve` under load, on loopback: it never hangs, a hang-up frees the model, SIGTERM ends it.

Bounded in count and time. The numbers these tests print are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import make_adapter_job, wait_for
from test_openai_api import QUESTION, running

ROOT = Path(__file__).resolve().parents[1]
BURST = 60


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory, tiny_model_dir):
    return make_adapter_job(tmp_path_factory.mktemp("load") / "load-20261201-000000", tiny_model_dir)


@pytest.fixture(scope="module")
def completions(tiny_job):
    from training.openai_api import load

    return load(tiny_job)


@pytest.fixture(scope="module")
def served(completions):
    from training.openai_api import create_app

    with running(create_app(completions, max_waiting=16, max_body_mb=1)) as url:
        yield url


@pytest.fixture(scope="module")
def server(tiny_job, tmp_path_factory):
    """The real thing: `app.py serve` in its own process, as deployed (the load comes from this process)."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "app.py", "serve", str(tiny_job), "--port", str(port), "--max-waiting", "16"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),  # a file, never an unread pipe: uvicorn logs every request
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    process.log = log
    url = f"http://127.0.0.1:{port}/v1"

    def up():
        try:
            return httpx.get(f"{url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    assert wait_for(up, timeout=300) and process.poll() is None, log.read_text()[-3000:]
    yield url, process
    if process.poll() is None:
        process.kill()


def body(job, max_tokens: int, stream: bool = False, messages=QUESTION) -> dict:
    return {"model": job.name, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": stream}


def test_one_stream_and_60_at_once_each_complete_or_get_a_fast_429(server, tiny_job):
    served = server[0]
    stream_done = threading.Event()
    # one client with a connection each, as 61 separate programs would have
    http = httpx.Client(limits=httpx.Limits(max_connections=BURST + 10), timeout=120)

    def stream():
        with http.stream("POST", f"{served}/chat/completions", json=body(tiny_job, 400, True)) as r:
            assert r.status_code == 200
            events = [line for line in r.iter_lines() if line]
        assert events[-1] == "data: [DONE]"
        stream_done.set()

    def ask(_):
        started = time.perf_counter()
        response = http.post(f"{served}/chat/completions", json=body(tiny_job, 8))
        return response.status_code, time.perf_counter() - started, response.headers.get("retry-after")

    streamer = threading.Thread(target=stream)
    streamer.start()
    time.sleep(0.3)  # the stream holds the model
    started = time.perf_counter()
    with ThreadPoolExecutor(BURST) as pool:
        burst = pool.map(ask, range(BURST))
        # /v1/models answers while the burst waits
        during = []
        for _ in range(5):
            t = time.perf_counter()
            assert httpx.get(f"{served}/models", timeout=10).status_code == 200
            during.append(time.perf_counter() - t)
        results = list(burst)
    total = time.perf_counter() - started
    streamer.join(timeout=120)
    assert stream_done.is_set()
    codes = [code for code, _, _ in results]
    refused = [seconds for code, seconds, _ in results if code == 429]
    answered = [seconds for code, seconds, _ in results if code == 200]
    assert set(codes) <= {200, 429} and len(answered) >= 16 and refused, codes
    assert all(retry and int(retry) >= 1 for code, _, retry in results if code == 429)
    assert max(refused) < 5.0, max(refused)  # refused at once, not after waiting
    assert max(during) < 2.0, during
    assert httpx.get(f"{served}/models", timeout=10).status_code == 200  # and after
    print(
        f"\nburst of {BURST} + 1 stream: {len(answered)} answered (slowest {max(answered):.1f} s), "
        f"{len(refused)} refused with 429 (slowest {max(refused):.2f} s, median "
        f"{sorted(refused)[len(refused) // 2]:.2f} s); /v1/models during: max {max(during) * 1000:.0f} ms; "
        f"all done in {total:.1f} s"
    )


def hang_up_after(url: str, payload: dict, seconds: float, started=lambda: True) -> None:
    """Send a request on a raw socket and close it without reading the answer, as a client that gives up
    `seconds` after `started()` is true."""
    data = json.dumps(payload).encode()
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as connection:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        connection.sendall(head.encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        assert wait_for(started, timeout=120, interval=0.01)
        time.sleep(seconds)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_hangs_up_frees_the_model_within_a_token_or_two(served, completions, tiny_job, stream):
    session = completions.session
    original = session.stream
    times: list[float] = []

    def recording(*args, **kwargs):
        for piece in original(*args, **kwargs):
            times.append(time.perf_counter())
            yield piece

    session.stream = recording
    try:
        long = completions.session.context_window - 64  # as long as the model allows: many seconds
        # A few tokens in, then gone: the tiny model writes ~450 tokens/s on a quiet CPU, so a fixed half
        # second would let it finish its answer first on a fast machine
        hang_up_after(served, body(tiny_job, long, stream), 0.02, started=lambda: len(times) >= 3)
        hung_up = time.perf_counter()
        locks = (completions._lock, session._lock)
        assert wait_for(lambda: not any(lock.locked() for lock in locks), timeout=60, interval=0.005)
        freed = time.perf_counter() - hung_up
    finally:
        session.stream = original
    stats = session.last_stats
    after = [t for t in times if t > hung_up]
    per_token = 1 / stats.tokens_per_second
    assert times and stats.new_tokens < long / 2, stats  # it was stopped, not finished
    # tokens decoded after the hang-up: a request is noticed gone within 50 ms (the polling interval)
    allowed = 2 + int(0.06 / per_token)
    assert len(after) <= allowed, (len(after), allowed, per_token)
    print(
        f"\nhang-up ({'stream' if stream else 'non-stream'}): model free {freed * 1000:.0f} ms later, "
        f"{len(after)} tokens after it at {per_token * 1000:.1f} ms/token"
    )
    assert httpx.post(f"{served}/chat/completions", json=body(tiny_job, 2), timeout=60).status_code == 200


def test_big_bodies_and_huge_prompts_are_refused_before_any_work(served, tiny_job, completions):
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    big = httpx.post(f"{served}/chat/completions", content=b"x" * (2 * 2**20), timeout=30)
    assert big.status_code == 413 and "1 MB limit" in big.json()["error"]["message"]
    # within the body limit but far longer than the model can read: refused before it is tokenized
    window = completions.session.context_window
    long_message = [{"role": "user", "content": "word " * (window * 7)}]
    long = httpx.post(f"{served}/chat/completions", json=body(tiny_job, 4, messages=long_message), timeout=30)
    assert long.status_code in (400, 413), long.text
    elapsed = time.perf_counter() - started
    growth_mb = (process.memory_info().rss - before) / 2**20
    assert elapsed < 5 and growth_mb < 200, (elapsed, growth_mb)
    print(f"\n2 MB body refused, long prompt refused: {elapsed * 1000:.0f} ms, RSS +{growth_mb:.0f} MB")


def test_sigterm_ends_the_server_within_5_seconds_mid_stream(server, tiny_job):
    url, process = server  # the last test: it ends the module's server
    client = threading.Thread(target=lambda: hang_up_after(url, body(tiny_job, 3000, True), 30), daemon=True)
    waiting = threading.Thread(target=lambda: hang_up_after(url, body(tiny_job, 50), 30), daemon=True)
    client.start()  # a long stream in flight, and a request waiting behind it
    time.sleep(0.5)
    waiting.start()
    time.sleep(1.0)
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    took = time.perf_counter() - started
    assert took < 5.0, took
    assert "Traceback" not in process.log.read_text()
    print(f"\nSIGTERM mid-stream: exited in {took:.2f} s")
