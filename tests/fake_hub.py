"""A local stand-in for the Hugging Face Hub API, so the real `huggingface_hub` client can be tested offline.

It answers the three calls training.hub makes, the way huggingface.co does (huggingface_hub 2.4's
`hf_raise_for_status` picks the error class from the `X-Error-Code` header, not from the status alone):

    GET /api/whoami-v2                   200 {"name": ...} for the valid token, else 401
    GET /api/models/<id>/auth-check      200, or 401/403 + X-Error-Code: GatedRepo, or 401/404 + RepoNotFound
    GET /api/models/<id>                 200 {"id", "gated"} (model info is public even for gated models)

Any call with an unknown token gets the Hub's 401 "Invalid credentials in Authorization header".
Use it through the `fake_hub` fixture (the endpoint URL) or `fake_hub_server` (also the request log).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

VALID_TOKEN = "hf_fake_valid_token_for_tests"
INVALID_TOKEN = "hf_fake_revoked_token_for_tests"
USER = "lathe-tester"

PUBLIC_MODEL = "lathe-tests/public-model"
GATED_APPROVED = "lathe-tests/gated-approved"  # the valid user has accepted the licence
GATED_PENDING = "lathe-tests/gated-pending"  # the valid user has not been approved
MISSING_MODEL = "lathe-tests/no-such-model"
RATE_LIMITED_MODEL = "lathe-tests/rate-limited"
SLOW_MODEL = "lathe-tests/slow-model"  # answers after SLOW_SECONDS, to test the timeout
SLOW_SECONDS = 3.0

GATED = {GATED_APPROVED: "manual", GATED_PENDING: "auto"}
KNOWN = {PUBLIC_MODEL, GATED_APPROVED, GATED_PENDING, RATE_LIMITED_MODEL, SLOW_MODEL}


class FakeHub:
    """The server plus what it saw: (path, Authorization header or None) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                auth = self.headers.get("Authorization")
                hub.requests.append((self.path, auth))
                status, headers, body = hub.answer(self.path.split("?")[0], auth)
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # a slow answer must not hold up shutdown
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval so that shutdown() at the end of each test returns at once.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )

    def answer(self, path: str, auth: str | None) -> tuple[int, dict[str, str], dict]:
        token = auth.removeprefix("Bearer ") if auth else None
        if token is not None and token != VALID_TOKEN:
            message = "Invalid credentials in Authorization header"
            return 401, {"X-Error-Message": message}, {"error": message}
        if path == "/api/whoami-v2":
            if token is None:
                return 401, {}, {"error": "Invalid credentials in Authorization header"}
            return 200, {}, {"type": "user", "name": USER, "auth": {"type": "access_token"}}
        if not path.startswith("/api/models/"):
            return 404, {}, {"error": "Sorry, we can't find the page you are looking for."}
        repo_id = path.removeprefix("/api/models/")
        auth_check = repo_id.endswith("/auth-check")
        repo_id = repo_id.removesuffix("/auth-check")

        if repo_id not in KNOWN:
            # The Hub says 401 to anonymous callers and 404 to signed-in ones, with the same error code.
            message = "Repository not found"
            return (
                (404 if token else 401),
                {"X-Error-Code": "RepoNotFound", "X-Error-Message": message},
                {"error": message},
            )
        if repo_id == RATE_LIMITED_MODEL:
            return 429, {"Retry-After": "60"}, {"error": "You have exceeded our rate limit."}
        if repo_id == SLOW_MODEL:
            time.sleep(SLOW_SECONDS)
        if not auth_check:
            return 200, {}, {"id": repo_id, "gated": GATED.get(repo_id, False), "private": False}
        if repo_id in GATED and (token is None or repo_id == GATED_PENDING):
            message = (
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo_id} to ask for access."
            )
            # 401 for anonymous callers, 403 for a signed-in user who has not been approved.
            return (
                (403 if token else 401),
                {"X-Error-Code": "GatedRepo", "X-Error-Message": message},
                {"error": message},
            )
        return 200, {}, {}

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_online(monkeypatch) -> None:
    """Lift HF_HUB_OFFLINE for one test: conftest sets it so that no test reaches the real Hub by accident."""
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import, into this constant.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def fake_hub_server(hub_online):
    """A running FakeHub (with offline mode lifted)."""
    with FakeHub() as hub:
        yield hub


@pytest.fixture
def fake_hub(fake_hub_server) -> str:
    """The fake Hub's endpoint URL, to pass as `endpoint=`."""
    return fake_hub_server.url
