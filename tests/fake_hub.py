"""A local stand-in for the Hugging Face Hub API, so the real `huggingface_hub` client can be tested offline.

It answers the three calls training.hub makes, the way huggingface.co does (huggingface_hub 2.4's
`hf_raise_for_status` picks the error class from the `X-Error-Code` header, not from the status alone):

    GET /api/whoami-v2                   200 {"name": ...} for the valid token, else 401
    GET /api/models/<id>/auth-check      200, or 401/403 + X-Error-Code: GatedRepo, or 401/404 + RepoNotFound
    GET /api/models/<id>                 200 {"id", "gated"} (model info is public even for gated models)

Datasets (enough of the API for `datasets.load_dataset`, found by logging what it asks for):

    GET /api/datasets/<id>[/revision/<rev>]   info with the file list (public, gated or missing)
    GET /api/datasets/<id>/tree/<rev>[/<dir>] the files of a folder
    GET|HEAD /datasets/<id>/resolve/<rev>/<file>   the file itself; a gated one needs the valid token

Any call with an unknown token gets the Hub's 401 "Invalid credentials in Authorization header".
Besides VALID_TOKEN, the two canary tokens are valid (two users, for the token-hygiene tests), and
TOKEN_ECHO_MODEL misbehaves like a server that quotes the request's Authorization header in its error
text, so the client's exception holds the token.
Use it through the `fake_hub` fixture (the endpoint URL) or `fake_hub_server` (also the request log).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

VALID_TOKEN = "hf_fake_valid_token_for_tests"
INVALID_TOKEN = "hf_fake_revoked_token_for_tests"
USER = "lathe-tester"
# Shaped like real user access tokens (hf_ + 34 letters and digits): they must never show up anywhere
CANARY_TOKEN = "hf_CANARYaaaaDoNotLeak0123456789abcde"
CANARY_TOKEN_B = "hf_CANARYbbbbDoNotLeak9876543210wxyzq"
USERS = {VALID_TOKEN: USER, CANARY_TOKEN: "canary-user-a", CANARY_TOKEN_B: "canary-user-b"}

PUBLIC_MODEL = "lathe-tests/public-model"
GATED_APPROVED = "lathe-tests/gated-approved"  # the valid user has accepted the licence
GATED_PENDING = "lathe-tests/gated-pending"  # the valid user has not been approved
MISSING_MODEL = "lathe-tests/no-such-model"
RATE_LIMITED_MODEL = "lathe-tests/rate-limited"
SLOW_MODEL = "lathe-tests/slow-model"  # answers after SLOW_SECONDS, to test the timeout
SLOW_SECONDS = 3.0
TOKEN_ECHO_MODEL = "lathe-tests/token-echo"

GATED = {GATED_APPROVED: "manual", GATED_PENDING: "auto"}

PUBLIC_DATASET = "lathe-tests/tiny-chat"
GATED_DATASET = "lathe-tests/gated-chat"
GATED_DATASET_B = "lathe-tests/gated-notes"  # the same rows, for a second user's job
DATASET_SHA = "d" * 40
DATASET_FILES = {
    "data/train.jsonl": b"".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"What is {i}+{i}?"},
                    {"role": "assistant", "content": str(2 * i)},
                ]
            }
        ).encode()
        + b"\n"
        for i in range(6)
    ),
    "data/validation.jsonl": json.dumps(
        {"messages": [{"role": "user", "content": "What is 9+9?"}, {"role": "assistant", "content": "18"}]}
    ).encode()
    + b"\n",
}
DATASETS = {PUBLIC_DATASET, GATED_DATASET, GATED_DATASET_B}
KNOWN = {PUBLIC_MODEL, GATED_APPROVED, GATED_PENDING, RATE_LIMITED_MODEL, SLOW_MODEL}


class FakeHub:
    """The server plus what it saw: (path, Authorization header or None) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self, head: bool = False) -> None:  # noqa: N802 (http.server's naming)
                auth = self.headers.get("Authorization")
                hub.requests.append((self.path, auth))
                path = self.path.split("?")[0]
                status, headers, body = hub.answer_dataset(path, auth) or hub.answer(path, auth)
                raw = isinstance(body, bytes)
                payload = body if raw else json.dumps(body).encode()
                self.send_response(status)
                kind = "application/octet-stream" if raw else "application/json"
                for name, value in {"Content-Type": kind, **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not head:
                    self.wfile.write(payload)

            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET(head=True)

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
        if f"/{TOKEN_ECHO_MODEL}/" in path or path.endswith(f"/{TOKEN_ECHO_MODEL}"):
            message = f"Bad request: unexpected header Authorization: {auth}"
            return 400, {"X-Error-Message": message}, {"error": message}
        if token is not None and token not in USERS:
            message = "Invalid credentials in Authorization header"
            return 401, {"X-Error-Message": message}, {"error": message}
        if path == "/api/whoami-v2":
            if token is None:
                return 401, {}, {"error": "Invalid credentials in Authorization header"}
            return 200, {}, {"type": "user", "name": USERS[token], "auth": {"type": "access_token"}}
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

    def answer_dataset(self, path: str, auth: str | None):
        """The dataset endpoints, or None for a path that is not about a dataset."""
        token = auth.removeprefix("Bearer ") if auth else None
        repo = next((r for r in DATASETS | {"lathe-tests/no-such-dataset"} if f"/{r}" in path), None)
        if repo is None or not path.startswith(("/api/datasets/", "/datasets/")):
            return None
        if token is not None and token not in USERS:
            message = "Invalid credentials in Authorization header"
            return 401, {"X-Error-Message": message}, {"error": message}
        if repo not in DATASETS:
            return (404 if token else 401), {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        if path.startswith(f"/api/datasets/{repo}/tree/"):
            folder = path.split("/tree/", 1)[1].partition("/")[2]
            items = [{"type": "file", "path": f, "size": len(b), "oid": "0" * 40} for f, b in DATASET_FILES.items()]
            items.append({"type": "directory", "path": "data", "oid": "1" * 40, "size": 0})
            return 200, {}, [i for i in items if i["path"].rpartition("/")[0] == folder]
        if path.startswith(f"/api/datasets/{repo}"):
            siblings = [{"rfilename": name} for name in DATASET_FILES]
            gated = "manual" if repo in (GATED_DATASET, GATED_DATASET_B) else False
            return 200, {}, {"id": repo, "sha": DATASET_SHA, "private": False, "gated": gated, "siblings": siblings}
        if "/resolve/" in path:
            if repo in (GATED_DATASET, GATED_DATASET_B) and token is None:
                message = f"Access to dataset {repo} is restricted. You must be authenticated to access it."
                return 401, {"X-Error-Code": "GatedRepo", "X-Error-Message": message}, {"error": message}
            name = path.split("/resolve/", 1)[1].partition("/")[2]
            if name in DATASET_FILES:
                # The ETag must follow the content: huggingface_hub stores files by it, one blob per ETag
                etag = hashlib.sha256(DATASET_FILES[name]).hexdigest()
                return 200, {"ETag": f'"{etag}"', "X-Repo-Commit": DATASET_SHA}, DATASET_FILES[name]
            return 404, {"X-Error-Code": "EntryNotFound"}, {"error": "Entry not found"}
        return 404, {}, {"error": "Sorry, we can't find the page you are looking for."}

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
