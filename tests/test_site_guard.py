"""No other website can act as a user: the wizard, launched with a login, over real HTTP on loopback.

A foreign Origin gets no CORS answer and cannot call anything with a user's cookie; a foreign Host (DNS
rebinding) is refused; cookies are SameSite=Lax (Secure over TLS); X-Forwarded-* count only from a
--trusted-proxy; and, in headless Chromium, a page on a second local origin cannot read the logged-in app.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import socket
import threading
from pathlib import Path

import httpx
import pytest
from helpers import wait_for

from training.jobs import JobManager
from wizard.app import serve_wizard
from wizard.auth import Authenticator, add_user
from wizard.site_guard import SiteGuard, SitePolicy, safe_cookie

USER, PASSWORD = "alice", "correct-horse-battery"
PUBLIC = "https://lathe.example.com"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("guarded")
    add_user(data / "users.txt", USER, PASSWORD)
    manager = JobManager(data / "jobs")
    (manager.jobs_dir / "secret-project-20260101-000000").mkdir()
    (manager.jobs_dir / "secret-project-20260101-000000" / "spec.yaml").write_text("name: secret-project\n")
    demo = serve_wizard(
        manager, port=None, block=False, auth=Authenticator.from_file(data / "users.txt"), public_urls=(PUBLIC,)
    )
    url = demo.local_url.rstrip("/")
    login = httpx.post(f"{url}/login", data={"username": USER, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    yield {"url": url, "cookies": dict(login.cookies), "login": login, "port": int(url.rsplit(":", 1)[1])}
    demo.close()


def cors_headers(response: httpx.Response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-allow")}


def test_a_foreign_origin_gets_no_cors_answer_and_cannot_use_the_cookie(served):
    url, cookies = served["url"], served["cookies"]
    second_local_origin = f"http://127.0.0.1:{served['port'] + 1}"  # same site, other port: another origin
    for origin in (EVIL, "null", second_local_origin, f"https://127.0.0.1:{served['port']}"):
        preflight = httpx.options(
            f"{url}/gradio_api/queue/join",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=30,
        )
        assert preflight.status_code == 403 and cors_headers(preflight) == {}, (origin, preflight.headers)
        for method, route in (("GET", "/config"), ("GET", "/gradio_api/info"), ("POST", "/gradio_api/queue/join")):
            response = httpx.request(method, url + route, headers={"Origin": origin}, cookies=cookies, timeout=30)
            assert response.status_code == 403, (origin, route, response.status_code)
            assert cors_headers(response) == {} and "another website" in response.text
            assert "secret-project" not in response.text
    # A state-changing request the browser marks cross-site is refused even without an Origin header
    marked = httpx.post(
        f"{url}/gradio_api/upload", headers={"Sec-Fetch-Site": "cross-site"}, cookies=cookies, timeout=30
    )
    assert marked.status_code == 403
    # The app's own origin (as the browser sends it on its own requests) and the public URL work
    own = httpx.get(f"{url}/config", headers={"Origin": url}, cookies=cookies, timeout=30)
    assert own.status_code == 200 and '"components"' in own.text
    public = httpx.get(
        f"{url}/config", headers={"Origin": PUBLIC, "Host": "lathe.example.com"}, cookies=cookies, timeout=30
    )
    assert public.status_code == 200


def test_a_foreign_host_is_refused_so_dns_rebinding_reaches_nothing(served):
    url, cookies = served["url"], served["cookies"]
    for host in ("evil.example", f"evil.example:{served['port']}", "127.0.0.1.evil.example", "lathe.example.com.evil"):
        for route in ("/", "/config", "/gradio_api/app_id"):
            response = httpx.get(url + route, headers={"Host": host}, cookies=cookies, timeout=30)
            assert response.status_code == 403, (host, route)
            assert "--public-url" in response.text and "secret-project" not in response.text
    for host in (f"127.0.0.1:{served['port']}", f"localhost:{served['port']}", "lathe.example.com"):
        assert httpx.get(f"{url}/gradio_api/app_id", headers={"Host": host}, timeout=30).status_code == 200


def test_login_cookies_are_samesite_lax_and_forwarded_headers_from_strangers_are_ignored(served):
    set_cookies = served["login"].headers.get_list("set-cookie")
    assert len(set_cookies) == 2
    for cookie in set_cookies:
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert "samesite=lax" in attributes and "samesite=none" not in attributes and "httponly" in attributes
    assert served["login"].headers["x-frame-options"] == "SAMEORIGIN"
    # Not from a trusted proxy: X-Forwarded-Host cannot point gradio's links at another site
    config = httpx.get(
        f"{served['url']}/config",
        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
        cookies=served["cookies"],
        timeout=30,
    )
    assert config.status_code == 200 and "evil.example" not in config.text


def test_the_page_before_login_names_no_job(served):
    page = httpx.get(served["url"] + "/", timeout=30)
    assert page.status_code == 200 and "secret-project" not in page.text
    # Logged in, the page load lists it (the job is real, so the check above could fail)
    from gradio_client import Client

    jobs = Client(served["url"], auth=(USER, PASSWORD), verbose=False).predict(api_name="/attach")[0]
    assert "secret-project-20260101-000000" in str(jobs["choices"])


@contextlib.contextmanager
def guarded_echo(policy: SitePolicy):
    """A tiny ASGI app behind the SiteGuard that echoes what it sees and sets a cookie, served by uvicorn."""
    import json

    import uvicorn

    async def app(scope, receive, send):
        seen = {
            "client": scope["client"][0],
            "scheme": scope["scheme"],
            "headers": dict((k.decode(), v.decode()) for k, v in scope["headers"]),
        }
        body = json.dumps(seen).encode()
        headers = [(b"content-type", b"application/json"), (b"set-cookie", b"t=1; HttpOnly; SameSite=none")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(SiteGuard(app, policy), log_level="warning", proxy_headers=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, timeout=30)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_forwarded_headers_count_only_from_a_trusted_proxy_and_tls_makes_cookies_secure():
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    forwarded["X-Forwarded-Host"] = "lathe.example.com"
    trusted = SitePolicy.for_server("127.0.0.1", [PUBLIC], ["127.0.0.1"])
    with guarded_echo(trusted) as url:
        seen = httpx.get(url, headers=forwarded, timeout=30)
        assert seen.json()["client"] == "203.0.113.9" and seen.json()["scheme"] == "https"
        assert "Secure" in seen.headers["set-cookie"] and "SameSite=Lax" in seen.headers["set-cookie"]
        # Through the proxy, the browser's Origin is the public URL
        assert httpx.post(url, headers={**forwarded, "Origin": PUBLIC}, timeout=30).status_code == 200
        assert httpx.post(url, headers={**forwarded, "Origin": EVIL}, timeout=30).status_code == 403
    stranger = SitePolicy.for_server("127.0.0.1", [PUBLIC], [])
    with guarded_echo(stranger) as url:
        seen = httpx.get(url, headers=forwarded | {"X-Forwarded-Host": "127.0.0.1"}, timeout=30).json()
        # a new X-Forwarded-For from a local process does not give it a fresh login allowance
        assert seen["client"] == "127.0.0.1" and seen["scheme"] == "http"
        assert not any(name.startswith("x-forwarded") for name in seen["headers"])
    assert safe_cookie("a=1; Secure; SameSite=None", secure=False) == "a=1; SameSite=Lax; Secure"


def test_hosting_options_are_checked_at_start_up():
    from training.errors import UserError

    with pytest.raises(UserError, match="--public-url"):
        SitePolicy.for_server("127.0.0.1", ["lathe.example.com"])
    with pytest.raises(UserError, match="--trusted-proxy"):
        SitePolicy.for_server("127.0.0.1", [], ["my-proxy"])
    wildcard = SitePolicy.for_server("0.0.0.0")
    assert {"localhost", "127.0.0.1", socket.gethostname().lower()} <= wildcard.hosts


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (`make test` installs it)")
def test_a_page_on_a_second_local_origin_cannot_read_through_a_logged_in_session(served, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    url = served["url"]
    attacker_page = f"""<html><body><script>
    const results = [];
    async function attempt(name, request) {{
      try {{ const r = await request(); results.push(name + ':' + r.status + ':' + (await r.text()).slice(0, 4000)); }}
      catch (e) {{ results.push(name + ':blocked'); }}
    }}
    (async () => {{
      await attempt('config', () => fetch('{url}/config', {{credentials: 'include'}}));
      await attempt('info', () => fetch('{url}/gradio_api/info', {{credentials: 'include'}}));
      await attempt('join', () => fetch('{url}/gradio_api/queue/join', {{method: 'POST', credentials: 'include',
        headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{fn_index: 0, data: []}})}}));
      await attempt('simple', () => fetch('{url}/gradio_api/upload', {{method: 'POST', credentials: 'include',
        mode: 'no-cors', body: new FormData()}}));
      document.title = 'done';
      document.body.innerText = results.join('\\n');
    }})();
    </script></body></html>"""
    (tmp_path / "index.html").write_text(attacker_page)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(60_000)
            # The person logs in on the app's own page, as they would
            page.goto(url)
            page.get_by_label("username").fill(USER)
            page.get_by_label("password").fill(PASSWORD)
            page.get_by_role("button", name="Login").click()
            page.get_by_text("Fine-tune an open LLM").wait_for()
            assert any(c["name"].startswith("access-token") for c in context.cookies())
            # ...then visits a page on another local origin in the same browser
            page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/index.html")
            page.wait_for_function("document.title === 'done'")
            results = page.inner_text("body")
            browser.close()
    finally:
        attacker.shutdown()
    lines = results.splitlines()
    assert len(lines) == 4, results
    assert all(line.endswith(":blocked") or ":0:" in line for line in lines[:3]), results
    assert "secret-project" not in results and "components" not in results


def test_behind_a_tls_proxy_both_login_cookies_are_secure(tmp_path):
    """gradio sets two login cookies (`access-token` and `access-token-unsecure`); over TLS both are Secure."""
    add_user(tmp_path / "users.txt", USER, PASSWORD)
    demo = serve_wizard(
        JobManager(tmp_path / "jobs"),
        port=None,
        block=False,
        auth=Authenticator.from_file(tmp_path / "users.txt"),
        public_urls=(PUBLIC,),
        trusted_proxies=("127.0.0.1",),
    )
    try:
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "lathe.example.com", "Origin": PUBLIC}
        login = httpx.post(
            demo.local_url.rstrip("/") + "/login",
            data={"username": USER, "password": PASSWORD},
            headers=proxied,
            timeout=30,
        )
        assert login.status_code == 200, login.text
        cookies = {cookie.split("=")[0]: cookie for cookie in login.headers.get_list("set-cookie")}
        assert {name.split("-")[0] for name in cookies} == {"access"} and len(cookies) == 2
        for cookie in cookies.values():
            attributes = [part.strip().lower() for part in cookie.split(";")]
            assert "secure" in attributes and "samesite=lax" in attributes, cookie
    finally:
        demo.close()
