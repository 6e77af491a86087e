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

Pushing (what `HfApi.create_repo` and `upload_folder` ask for, found by reading huggingface_hub 2.4 and
logging its requests):

    POST /api/validate-yaml                   the README's metadata header: 200, or 400 when it does not parse
    POST /api/repos/create                    200 {"url"}, 409 when it exists, 403 for a read-only token
                                              or a namespace the user may not write to
    GET  /api/models/<id>[/revision/<rev>]    info of a pushed repo (private ones only for their owner)
    POST /api/models/<id>/preupload/<rev>     every file "regular": its bytes travel inside the commit. The
                                              real Hub says "lfs" for big or binary files and the client then
                                              uploads them through LFS or Xet storage, which this fake leaves out.
    POST /api/models/<id>/commit/<rev>        NDJSON: a header line, then one base64 file per line

Pushed repos live in `FakeHub.repos` (files, visibility, commit messages) so a test can read them back.

Any call with an unknown token gets the Hub's 401 "Invalid credentials in Authorization header".
Besides VALID_TOKEN, the two canary tokens are valid (two users, for the token-hygiene tests), and
TOKEN_ECHO_MODEL misbehaves like a server that quotes the request's Authorization header in its error
text, so the client's exception holds the token.
Use it through the `fake_hub` fixture (the endpoint URL) or `fake_hub_server` (also the request log).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

VALID_TOKEN = "hf_fake_valid_token_for_tests"
INVALID_TOKEN = "hf_fake_revoked_token_for_tests"
READ_ONLY_TOKEN = "hf_fake_read_only_token_for_tests"  # valid, but its role is "read": writes get 403
USER = "lathe-tester"
MEMBER_ORG = "lathe-team"  # the valid user may write here
FOREIGN_ORG = "someone-elses-org"  # ... and not here
# Shaped like real user access tokens (hf_ + 34 letters and digits): they must never show up anywhere.
# Written as two parts so that no token-shaped string is committed (secret scanners would flag it).
CANARY_TOKEN = "hf_" + "CANARYaaaaDoNotLeak0123456789abcde"
CANARY_TOKEN_B = "hf_" + "CANARYbbbbDoNotLeak9876543210wxyzq"
USERS = {VALID_TOKEN: USER, READ_ONLY_TOKEN: USER, CANARY_TOKEN: "canary-user-a", CANARY_TOKEN_B: "canary-user-b"}
TOKEN_ROLES = {token: "read" if token == READ_ONLY_TOKEN else "write" for token in USERS}

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


def git_blob_id(content: bytes) -> str:
    """The id git gives a file's content; the client compares it to skip files that did not change."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class PushedRepo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)  # commit messages, oldest first

    @property
    def sha(self) -> str:
        return hashlib.sha1("\n".join(self.commits).encode()).hexdigest()


class FakeHub:
    """The server plus what it saw: (path, Authorization header or None) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.repos: dict[str, PushedRepo] = {}
        self.lock = threading.Lock()  # the client sends some requests from worker threads
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self, head: bool = False) -> None:  # noqa: N802 (http.server's naming)
                auth = self.headers.get("Authorization")
                hub.requests.append((self.path, auth))
                path = self.path.split("?")[0]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = (
                    hub.answer_push(self.command, path, auth, body)
                    or hub.answer_dataset(path, auth)
                    or hub.answer(path, auth)
                )
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

            def do_POST(self) -> None:  # noqa: N802
                self.do_GET()

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
            auth = {"type": "access_token", "accessToken": {"displayName": "tests", "role": TOKEN_ROLES[token]}}
            orgs = [{"type": "org", "name": MEMBER_ORG, "roleInOrg": "write"}]
            return 200, {}, {"type": "user", "name": USERS[token], "orgs": orgs, "auth": auth}
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

    def answer_push(self, method: str, path: str, auth: str | None, body: bytes):
        """Repo creation, pushed repos' info, preupload and commit; None for any other path."""
        token = auth.removeprefix("Bearer ") if auth else None
        if method == "POST" and path == "/api/repos/create":
            return self.create_repo(token, json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            return self.validate_yaml(json.loads(body)["content"])
        for repo_id in self.repos:
            if path in (f"/api/models/{repo_id}", f"/api/models/{repo_id}/revision/main"):
                return self.repo_info(repo_id, token)
        if method == "POST" and path.startswith("/api/models/") and "/preupload/" in path:
            repo_id = path.removeprefix("/api/models/").split("/preupload/")[0]
            return self.writable(repo_id, token) or self.preupload(repo_id, json.loads(body))
        if method == "POST" and path.startswith("/api/models/") and "/commit/" in path:
            repo_id = path.removeprefix("/api/models/").split("/commit/")[0]
            return self.writable(repo_id, token) or self.commit(repo_id, body)
        return None

    @staticmethod
    def validate_yaml(readme: str):
        import yaml

        header = readme.split("---\n")[1] if readme.startswith("---\n") else ""
        try:
            metadata = yaml.safe_load(header)
        except yaml.YAMLError as error:
            return 400, {}, {"errors": [{"message": f"Invalid YAML: {error}"}]}
        if not isinstance(metadata, dict):
            return 200, {}, {"warnings": [{"message": "Empty or missing metadata"}]}
        return 200, {}, {}

    def refused_token(self, token: str | None):
        if token is None or token not in TOKEN_ROLES:
            message = "Invalid credentials in Authorization header"
            return 401, {"X-Error-Message": message}, {"error": message}
        return None

    def may_write(self, namespace: str, token: str) -> tuple[int, dict, dict] | None:
        """403 for a read-only token, or a namespace the user is no member of (the client reads only the status)."""
        if TOKEN_ROLES[token] == "read":
            message = "You don't have the rights to create a model under this namespace: your token is read-only"
            return 403, {"X-Error-Message": message}, {"error": message}
        if namespace not in (USER, MEMBER_ORG):
            message = f'You don\'t have the rights to create a model under the namespace "{namespace}"'
            return 403, {"X-Error-Message": message}, {"error": message}
        return None

    def create_repo(self, token: str | None, payload: dict):
        namespace = payload.get("organization") or USER
        repo_id = f"{namespace}/{payload['name']}"
        refused = self.refused_token(token) or self.may_write(namespace, token)
        if refused:
            return refused
        with self.lock:
            if repo_id in self.repos:
                return 409, {}, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            # The Hub's default for a user's repo is public when no visibility is sent
            self.repos[repo_id] = PushedRepo(private=payload.get("visibility") == "private")
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def repo_info(self, repo_id: str, token: str | None):
        repo = self.repos[repo_id]
        if token is not None and token not in TOKEN_ROLES:
            return self.refused_token(token)
        if repo.private and token is None:
            return 401, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        siblings = [{"rfilename": name} for name in repo.files]
        return 200, {}, {"id": repo_id, "private": repo.private, "sha": repo.sha, "siblings": siblings}

    def writable(self, repo_id: str, token: str | None):
        refused = self.refused_token(token)
        if refused:
            return refused
        if repo_id not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        return self.may_write(repo_id.split("/")[0], token)

    def preupload(self, repo_id: str, payload: dict):
        stored = self.repos[repo_id].files
        files = [
            {
                "path": item["path"],
                "uploadMode": "regular",  # so the bytes come inline in the commit, not through LFS/Xet
                "shouldIgnore": False,
                "oid": git_blob_id(stored[item["path"]]) if item["path"] in stored else None,
            }
            for item in payload["files"]
        ]
        return 200, {}, {"files": files, "commitOid": self.repos[repo_id].sha}

    def commit(self, repo_id: str, body: bytes):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        added = {}
        for line in lines:
            if line["key"] == "file":
                added[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] != "header":  # lfsFile, deletions: never asked for by a push here
                return 400, {}, {"error": f"The fake Hub does not take {line['key']} operations"}
        repo = self.repos[repo_id]
        with self.lock:
            repo.files.update(added)
            repo.commits.append(header["summary"])
        return 200, {}, {"commitUrl": f"{self.url}/{repo_id}/commit/{repo.sha}", "commitOid": repo.sha}

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
