"""Hosting safely: the login, the routes it guards, login throttling, path traversal and upload checks.

Drives the real app launched in-process with a login, over plain HTTP (raw sockets where a client library
would tidy the path) and gradio_client, as an attacker or a script would.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from gradio_client import Client

from training.jobs import JobManager
from wizard.app import serve_wizard
from wizard.auth import Authenticator, LoginLimiter, TooManyAttempts, add_user, read_auth_file, verify_password
from wizard.server import gradio_files_folder

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "alice", "correct-horse-battery"
MAX_FAILURES, CLIENT_FAILURES, LOCKOUT = 3, 12, 60.0


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The wizard with a login on (and a 1 MB upload limit), plus a logged-in session's cookies."""
    data = tmp_path_factory.mktemp("served")
    add_user(data / "users.txt", USER, PASSWORD)
    add_user(data / "users.txt", "bob", "bobs-password-1")
    clock = FakeClock()
    limiter = LoginLimiter(max_failures=MAX_FAILURES, max_client_failures=CLIENT_FAILURES, lockout=LOCKOUT, clock=clock)
    manager = JobManager(data / "jobs")
    demo = serve_wizard(
        manager, port=None, block=False, max_upload_mb=1, auth=Authenticator.from_file(data / "users.txt", limiter)
    )
    url = demo.local_url.rstrip("/")
    login = httpx.post(f"{url}/login", data={"username": USER, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    yield {
        "demo": demo,
        "url": url,
        "cookies": dict(login.cookies),
        "clock": clock,
        "limiter": limiter,
        "data": data,
        "manager": manager,
    }
    demo.close()


@pytest.fixture(scope="module")
def canaries(served):
    """Secret files planted outside the app's folders, and symlinks to them planted inside its folders."""
    content = f"LATHE-CANARY-{secrets.token_hex(12)}"
    planted = [
        Path(tempfile.gettempdir()) / f"lathe-canary-{os.getpid()}.txt",
        ROOT / f"lathe-canary-{os.getpid()}.txt",
    ]
    gradio_files = gradio_files_folder(served["manager"].jobs_dir)
    links = [
        gradio_files / "planted" / "link.txt",
        served["data"] / "uploads" / "link.jsonl",
        served["manager"].jobs_dir / "link.txt",
    ]
    for path in planted:
        path.write_text(content)
    for link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(planted[0])
    yield {"content": content, "files": planted, "links": links}
    for path in [*planted, *links]:
        path.unlink(missing_ok=True)


def raw_get(url: str, target: str, cookies: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET exactly this request-target: httpx and browsers would normalise ../ and re-encode it."""
    parts = urlsplit(url)
    cookie = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(request.encode("utf-8", "surrogateescape"))
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0
    return status, response


# ---- the command line: exposure rules and the auth file ----


def run_app(*args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    """Run app.py in a new session: with no terminal, getpass reads standard input as a terminal would."""
    environment = {key: value for key, value in os.environ.items() if key != "LATHE_AUTH_FILE"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        start_new_session=True,
    )


def test_a_non_loopback_host_without_a_login_is_refused_with_how_to_set_one_up():
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        result = run_app("--host", host)
        assert result.returncode != 0
        assert "needs a login" in result.stderr and "add-user" in result.stderr and "--auth-file" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_bad_missing_or_empty_auth_file_is_a_clear_error_at_start_up(tmp_path):
    empty, plain = tmp_path / "empty.txt", tmp_path / "plain.txt"
    empty.write_text("# nobody yet\n")
    plain.write_text("alice:hunter2\n")  # a plain-text password is never accepted
    cases = {tmp_path / "missing.txt": "does not exist", empty: "holds no users", plain: "line 1 is not"}
    for path, message in cases.items():
        result = run_app("--host", "0.0.0.0", "--auth-file", str(path))
        assert result.returncode != 0 and message in result.stderr and "add-user" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    result = run_app("--host", "0.0.0.0", env={"LATHE_AUTH_FILE": str(empty)})  # the environment variable too
    assert result.returncode != 0 and "holds no users" in result.stderr


def test_add_user_writes_a_salted_scrypt_hash_readable_by_its_owner_only(tmp_path):
    users = tmp_path / "users.txt"
    assert run_app("add-user", str(users), USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert run_app("add-user", str(users), "bob", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    assert PASSWORD not in text and text.count("scrypt$") == 2
    stored = read_auth_file(users)
    assert stored[USER] != stored["bob"]  # salted: the same password hashes differently
    assert verify_password(PASSWORD, stored[USER]) and not verify_password("wrong-password", stored[USER])
    # Changing a password replaces the line
    assert run_app("add-user", str(users), USER, "--password-stdin", stdin="another-password\n").returncode == 0
    stored = read_auth_file(users)
    assert len(stored) == 2 and verify_password("another-password", stored[USER])
    short = run_app("add-user", str(users), "carol", "--password-stdin", stdin="short\n")
    bad_name = run_app("add-user", str(users), "carol:x", "--password-stdin", stdin=PASSWORD + "\n")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    assert bad_name.returncode != 0 and "username" in bad_name.stderr and "Traceback" not in bad_name.stderr


def test_add_user_asks_for_the_password_twice_and_changes_nothing_when_they_differ(tmp_path):
    users = tmp_path / "users.txt"
    differ = run_app("add-user", str(users), USER, stdin=f"{PASSWORD}\nsomething-else\n")
    assert differ.returncode != 0 and "differ" in differ.stderr and not users.exists()
    same = run_app("add-user", str(users), USER, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert same.returncode == 0, same.stderr
    assert verify_password(PASSWORD, read_auth_file(users)[USER])


# ---- every route that is not public asks for the login ----

PRIVATE_ROUTES = [
    ("GET", "/config"),
    ("GET", "/gradio_api/info"),
    ("GET", "/gradio_api/openapi.json"),
    ("GET", "/gradio_api/file=/etc/hostname"),
    ("GET", "/gradio_api/file/etc/hostname"),
    ("GET", "/gradio_api/proxy=https://example.com/x"),
    ("POST", "/gradio_api/upload"),
    ("GET", "/gradio_api/upload_progress?upload_id=x"),
    ("POST", "/gradio_api/queue/join"),
    ("GET", "/gradio_api/queue/data?session_hash=x"),
    ("GET", "/gradio_api/queue/status"),
    ("POST", "/gradio_api/component_server"),
    ("GET", "/gradio_api/deep_link"),
    ("GET", "/monitoring"),
    ("GET", "/monitoring/summary"),
    ("POST", "/gradio_api/process_recording"),
]


def test_every_private_route_answers_401_without_a_login_and_works_after_it(served):
    url, cookies = served["url"], served["cookies"]
    for method, route in PRIVATE_ROUTES:
        response = httpx.request(method, url + route, timeout=30)
        assert response.status_code in (401, 403), (route, response.status_code, response.text[:200])
    # The login page's note (from the refused config) tells a person about the pause before they meet it
    note = httpx.get(f"{url}/config", timeout=30).json()["detail"]["auth_message"]
    assert f"After {MAX_FAILURES} failed attempts" in note and "add-user" in note
    # FastAPI's own schema is switched off rather than left public
    assert httpx.get(f"{url}/openapi.json", timeout=30).status_code == 404
    # Logged in, the same routes answer
    assert httpx.get(f"{url}/config", cookies=cookies, timeout=30).status_code == 200
    assert httpx.get(f"{url}/gradio_api/info", cookies=cookies, timeout=30).status_code == 200
    upload = httpx.post(f"{url}/gradio_api/upload", files={"files": ("a.jsonl", b"{}\n")}, cookies=cookies, timeout=30)
    assert upload.status_code == 200
    # The health check's route answers without a login (the Dockerfile's HEALTHCHECK uses it)
    assert httpx.get(f"{url}/gradio_api/app_id", timeout=30).status_code == 200


def test_each_api_endpoint_needs_the_login(served):
    url = served["url"]
    with pytest.raises(Exception, match="(?i)login|auth|401"):
        Client(url, verbose=False)
    client = Client(url, auth=(USER, PASSWORD), verbose=False)
    names = list(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert len(names) >= 8, names
    for name in names:
        for prefix in ("call", "call/v2", "run", "api"):
            response = httpx.post(f"{url}/gradio_api/{prefix}/{name.lstrip('/')}", json={"data": []}, timeout=30)
            assert response.status_code in (401, 403), (prefix, name, response.status_code)
    # Logged in, an endpoint runs: the page load re-attaches to the (empty) list of jobs
    jobs = client.predict(api_name="/attach")[0]
    assert jobs["__type__"] == "update" and jobs["choices"] == []


# ---- path traversal: nothing outside the app's own folders is ever served ----


def traversal_payloads(target: Path, gradio_files: Path, links: list[Path]) -> list[str]:
    absolute = str(target)
    up = "../" * 12 + absolute.lstrip("/")
    relative = os.path.relpath(target, ROOT)  # the tests (and the app) run from the repo root
    dot_forms = [
        "../",
        "%2e%2e/",
        "%2e%2e%2f",
        "..%2f",
        "%252e%252e%252f",
        "..%252f",
        "..\\",
        "..%5c",
        "....//",
        "..;/",
        "%c0%ae%c0%ae/",
        "\u2024\u2024/",
        "\uff0e\uff0e/",
        "%uff0e%uff0e/",
        ".%2e/",
        "%2e./",
    ]
    payloads = [absolute, up, relative, f"./{relative}", f"{gradio_files}/{up}", f"{gradio_files}/../../{relative}"]
    payloads += [form * 12 + absolute.lstrip("/") for form in dot_forms]
    payloads += [f"{gradio_files}/" + form * 12 + absolute.lstrip("/") for form in dot_forms[:8]]
    payloads += [quote(absolute, safe=""), quote(quote(absolute, safe=""), safe=""), quote(up, safe="")]
    payloads += [quote(quote(up, safe=""), safe=""), absolute.replace("/", "\\"), up.replace("/", "\\")]
    payloads += [absolute.replace("/", "%5c"), "/" + absolute, "//" + absolute.lstrip("/"), f"file://{absolute}"]
    payloads += [f"{absolute}%00", f"{absolute}%00.jsonl", f"{absolute}\x00.txt", f"{up}%00.png", f"{absolute}/."]
    payloads += [f"{absolute}%20", f"{absolute}.", f"{absolute}/", absolute.upper(), f"~/../../{up}"]
    payloads += [str(link) for link in links] + [quote(str(link), safe="") for link in links]
    return payloads


FILE_ROUTES = [
    "/gradio_api/file={}",
    "/file={}",
    "/gradio_api/file/{}",
    "/file/{}",
    "/static/{}",
    "/assets/{}",
    "/svelte/{}",
    "/gradio_api/proxy={}",
    "/gradio_api/custom_component/1/client/index/{}",
    "/{}",
]


def test_no_path_traversal_payload_reaches_a_planted_canary(served, canaries):
    url, cookies = served["url"], served["cookies"]
    gradio_files = gradio_files_folder(served["manager"].jobs_dir)
    leaks, sent = [], 0
    for target in canaries["files"]:
        payloads = traversal_payloads(target, gradio_files, canaries["links"])
        assert len(payloads) >= 50
        for payload in payloads:
            for route in FILE_ROUTES:
                # a request-target cannot hold spaces or raw control bytes; percent-encode just those
                request_target = route.format(payload).replace(" ", "%20").replace("\x00", "%00")
                for encoded in {request_target, route.format(payload)}:
                    status, body = raw_get(url, encoded, cookies)
                    sent += 1
                    if canaries["content"].encode() in body:
                        leaks.append((encoded, status))
    assert sent >= 1000 and leaks == [], leaks[:5]
    # The canary itself is intact and a file the app did create is served, so the routes were really live
    upload = httpx.post(f"{url}/gradio_api/upload", files={"files": ("ok.jsonl", b'{"x": 1}\n')}, cookies=cookies)
    status, body = raw_get(url, f"/gradio_api/file={upload.json()[0]}", cookies)
    assert status == 200 and body.endswith(b'{"x": 1}\n')


def test_upload_file_names_never_escape_the_upload_folder(served, canaries):
    url, cookies = served["url"], served["cookies"]
    gradio_files = gradio_files_folder(served["manager"].jobs_dir).resolve()
    marker = f"lathe-written-{secrets.token_hex(6)}"
    names = [p.replace("\x00", "") or "x" for p in traversal_payloads(canaries["files"][0], gradio_files, [])]
    names += [f"../../../../tmp/{marker}.jsonl", f"..\\..\\..\\{marker}.jsonl", f"/tmp/{marker}.jsonl", f"../{marker}"]
    for name in names:
        response = httpx.post(f"{url}/gradio_api/upload", files={"files": (name, b"uploaded\n")}, cookies=cookies)
        if response.status_code == 200:
            stored = Path(response.json()[0]).resolve()
            assert stored.is_relative_to(gradio_files) and stored.read_bytes() == b"uploaded\n", (name, stored)
        else:
            assert response.status_code == 400, (name, response.status_code)
    assert all(path.read_text() == canaries["content"] for path in canaries["files"])  # never overwritten
    # where a ../ name could land; inside gradio's folder is where each upload belongs (under its base name)
    places = [Path(tempfile.gettempdir()), ROOT, gradio_files.parent, *served["data"].iterdir()]
    assert not [hit for place in places if place.is_dir() for hit in place.glob(f"{marker}*")]
    assert list(gradio_files.rglob(f"{marker}*"))  # the uploads did happen


# ---- uploads: the size limit and the type allow-list ----


def all_files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file() or path.is_symlink()}


def test_an_upload_over_the_limit_is_refused_and_leaves_no_temp_file(served):
    url, cookies = served["url"], served["cookies"]
    gradio_files = gradio_files_folder(served["manager"].jobs_dir)
    before = all_files(gradio_files)
    too_big = httpx.post(
        f"{url}/gradio_api/upload", files={"files": ("big.jsonl", b"x" * (3 * 2**20))}, cookies=cookies, timeout=60
    )
    assert too_big.status_code == 413 and "maximum allowed size of 1048576 bytes" in too_big.text
    assert all_files(gradio_files) == before


def run_upload_event(served, file_data: dict) -> list:
    """Fire the data step's upload event through gradio's queue, as the browser does; return its outputs."""
    url, cookies = served["url"], served["cookies"]
    config = httpx.get(f"{url}/config", cookies=cookies, timeout=30).json()
    file_id = next(c["id"] for c in config["components"] if c.get("props", {}).get("label", "").startswith("Your data"))
    event = next(d for d in config["dependencies"] if [file_id, "upload"] in d["targets"])
    session = secrets.token_hex(8)
    body = {"data": [file_data], "fn_index": event["id"], "trigger_id": file_id, "session_hash": session}
    assert httpx.post(f"{url}/gradio_api/queue/join", json=body, cookies=cookies, timeout=30).status_code == 200
    with httpx.stream("GET", f"{url}/gradio_api/queue/data?session_hash={session}", cookies=cookies, timeout=60) as s:
        for line in s.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert message["success"], message
                return message["output"]["data"]
    raise AssertionError("the upload event never completed")


def test_an_upload_of_another_type_is_refused_naming_the_allowed_ones_and_deleted(served):
    url, cookies = served["url"], served["cookies"]
    for name in ("payload.exe", "page.html", "noextension"):
        stored = httpx.post(f"{url}/gradio_api/upload", files={"files": (name, b"MZ\x90\x00")}, cookies=cookies).json()[
            0
        ]
        assert Path(stored).exists()
        _file, kept_path, _kind, note = run_upload_event(
            served, {"path": stored, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
        )
        assert kept_path == "" and ".jsonl, .json, .csv, .tsv, .parquet, .txt or .gz" in note, note
        assert not Path(stored).exists() and not Path(stored).parent.exists()
    # A data file is kept in the uploads folder under a name made from its content
    stored = httpx.post(
        f"{url}/gradio_api/upload", files={"files": ("rows.jsonl", b'{"text": "hi"}\n')}, cookies=cookies
    ).json()[0]
    _file, kept_path, kind, note = run_upload_event(
        served, {"path": stored, "orig_name": "rows.jsonl", "meta": {"_type": "gradio.FileData"}}
    )
    assert note == "" and Path(kept_path).parent == served["data"] / "uploads" and Path(kept_path).suffix == ".jsonl"
    assert Path(kept_path).read_bytes() == b'{"text": "hi"}\n'


# ---- login throttling ----


def login(url: str, username: str, password: str) -> int:
    return httpx.post(f"{url}/login", data={"username": username, "password": password}, timeout=30).status_code


def test_repeated_failed_logins_lock_the_username_even_with_the_right_password(served):
    url, clock = served["url"], served["clock"]
    for _ in range(MAX_FAILURES):
        assert login(url, "bob", "not-the-password") == 400
    refused = httpx.post(f"{url}/login", data={"username": "bob", "password": "bobs-password-1"}, timeout=30)
    assert refused.status_code == 400 and "Too many failed logins" in refused.text and refused.headers["Retry-After"]
    assert login(url, USER, PASSWORD) == 200  # another user is not locked out
    clock.now += LOCKOUT + 1
    assert login(url, "bob", "bobs-password-1") == 200


def test_one_client_trying_many_usernames_is_locked_out(served):
    url, clock = served["url"], served["clock"]
    clock.now += 10 * LOCKOUT  # start clean
    for number in range(CLIENT_FAILURES):
        assert login(url, f"guess{number}", "password123") == 400
    assert login(url, USER, PASSWORD) == 400  # from this address, even the right login waits
    # the lock is on the real client address (the middleware saw it), not on every client
    with pytest.raises(TooManyAttempts):
        served["limiter"].check("someone-else", "127.0.0.1")
    served["limiter"].check("someone-else", "192.0.2.7")
    clock.now += LOCKOUT + 1
    assert login(url, USER, PASSWORD) == 200


def test_the_limiter_counts_failures_within_its_window_only():
    clock = FakeClock()
    limiter = LoginLimiter(max_failures=3, max_client_failures=100, window=60, lockout=30, clock=clock)
    for _ in range(2):
        limiter.failed("carol", "10.0.0.1")
        clock.now += 61  # failures spread wider than the window never add up
    limiter.failed("carol", "10.0.0.1")
    limiter.check("carol", "10.0.0.1")
    limiter.failed("carol", "10.0.0.1")
    limiter.failed("carol", "10.0.0.1")
    with pytest.raises(TooManyAttempts, match="Too many failed logins"):
        limiter.check("carol", "10.0.0.2")  # the username is locked whatever the address
    clock.now += 31
    limiter.check("carol", "10.0.0.1")
