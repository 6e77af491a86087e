"""No call home: the app started as a person starts it makes no outbound request while it starts, serves its
page and answers a check. Every request a Python HTTP client makes goes through the proxy the environment
names, and Hub calls go to HF_ENDPOINT; both point at a local recorder here, which must hear nothing."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]


class Recorder(http.server.ThreadingHTTPServer):
    """A proxy (and fake Hub) that answers nothing useful and remembers every request line it was sent."""

    def __init__(self):
        self.heard: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self):
                recorder.heard.append(f"{self.command} {self.path} (Host: {self.headers.get('Host')})")
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_CONNECT = do_PUT = _record

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.shutdown()


def routed_through(recorder: Recorder) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    proxies = {name: recorder.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    proxies |= {name.lower(): value for name, value in proxies.items()}
    # The page itself is fetched directly; everything else (gradio's analytics, version checks, the Hub) is not
    return (
        env
        | proxies
        | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        | {
            "HF_ENDPOINT": recorder.url,
            "HF_HUB_OFFLINE": "0",
        }
    )


def test_the_recorder_hears_a_call_home_when_there_is_one(recorder):
    """The trap works: a library call to the outside, in a process with the same environment, is heard."""
    code = "import httpx; httpx.get('https://api.gradio.app/pkg-version', timeout=5)"
    subprocess.run([sys.executable, "-c", code], env=routed_through(recorder), capture_output=True, timeout=60)
    assert any("api.gradio.app" in line for line in recorder.heard), recorder.heard


def test_the_app_makes_no_outbound_request_while_it_starts_and_serves(recorder, tmp_path):
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "app.py", "--jobs-dir", str(tmp_path / "jobs"), "--port", str(port)],
        cwd=ROOT,
        env=routed_through(recorder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    page = f"http://127.0.0.1:{port}/"

    def served() -> bool:
        try:
            return direct.open(page, timeout=5).status == 200
        except OSError:
            return False

    try:
        assert wait_for(served, timeout=180, interval=0.5), app.stderr.read() if app.poll() is not None else "no page"
        direct.open(page + "gradio_api/info", timeout=30).read()  # what a client asks first
        direct.open(page + "config", timeout=30).read()
        wait_for(lambda: bool(recorder.heard), timeout=5)  # launch-time analytics run in a thread: give it time
    finally:
        app.terminate()
        app.wait(timeout=30)
    assert recorder.heard == []
