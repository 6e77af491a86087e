"""The wizard's login: a file of `username:scrypt-hash` lines, and a login check that refuses brute force.

No gradio here: `python app.py add-user` writes the file without loading the UI. Passwords are hashed with
the standard library's scrypt (salted, deliberately slow and memory-hard), never stored in plain text.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training.errors import UserError
from training.network import is_loopback

# scrypt cost: 2**14 x 8 uses 16 MB and ~0.1 s per check here, the parameters OWASP lists as a minimum.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCHEME = "scrypt"
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD_LENGTH = 8

# The client address of the request being handled, set by ClientAddressMiddleware: gradio calls the
# auth function with (username, password) only.
CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar("lathe_client_address", default="unknown")


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P):
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 * 2**20)
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"{SCHEME}${n}${r}${p}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored: str) -> bool:
    scheme, n, r, p, salt, digest = stored.split("$")
    computed = hash_password(password, base64.b64decode(salt), int(n), int(r), int(p))
    return scheme == SCHEME and hmac.compare_digest(computed.rsplit("$", 1)[1], digest)


def check_username(username: str) -> str:
    if not USERNAME.match(username):
        raise UserError(
            f"username {username!r}: use 1-64 letters, digits, or . _ @ - (no spaces or colons), e.g. alice."
        )
    return username


def read_auth_file(path: str | Path) -> dict[str, str]:
    """username -> stored hash; every problem with the file is a UserError that names it and the fix."""
    path = Path(path)
    create = f"create it with: python app.py add-user {path} USERNAME"
    if not path.is_file():
        raise UserError(f"--auth-file {path} does not exist; {create}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--auth-file {path} cannot be read ({error}); check its permissions or {create}") from error
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        username, sep, stored = line.strip().partition(":")
        parts = stored.split("$")
        if not sep or not USERNAME.match(username) or len(parts) != 6 or parts[0] != SCHEME:
            raise UserError(
                f"--auth-file {path} line {number} is not 'username:scrypt$...' (passwords are never stored "
                f"in plain text); remove the line and add the user again with: python app.py add-user {path} NAME"
            )
        users[username] = stored
    if not users:
        raise UserError(f"--auth-file {path} holds no users; {create}")
    return users


def add_user(path: str | Path, username: str, password: str) -> bool:
    """Write or replace the user's line, keeping the file readable by its owner only; True if it was new."""
    check_username(username)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters.")
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [line for line in lines if line.partition(":")[0].strip() != username]
    kept.append(f"{username}:{hash_password(password)}")
    # Write a new file with mode 0600 and move it into place, so the file is never briefly world-readable
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(kept) + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return len(kept) > len(lines)


def require_login_unless_local(host: str, auth: Authenticator | None) -> None:
    """Serving on anything but the loopback address makes the wizard (and the GPU) reachable: insist on a login."""
    if auth is None and not is_loopback(host):
        raise UserError(
            f"--host {host} would let other machines reach the wizard, so it needs a login. Create one with "
            "`python app.py add-user lathe-users.txt alice`, then start with `--auth-file lathe-users.txt` "
            "(or set LATHE_AUTH_FILE). To keep the wizard private, leave --host at 127.0.0.1. See docs/hosting.md."
        )


class TooManyAttempts(Exception):
    def __init__(self, retry_after: float):
        self.retry_after = retry_after
        super().__init__(f"Too many failed logins; try again in {max(1, round(retry_after / 60))} minute(s).")


@dataclass
class LoginLimiter:
    """After `max_failures` failed logins for one username (or `max_client_failures` from one client address)
    within `window` seconds, every attempt is refused, right password or not, until `lockout` seconds after
    the last failure. Per username stops a guesser that spreads over many addresses; per client stops one
    address trying many usernames."""

    max_failures: int = 5
    max_client_failures: int = 20
    window: float = 300.0
    lockout: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str, now: float) -> deque:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window + self.lockout:
            times.popleft()
        return times

    def check(self, username: str, client: str) -> None:
        """Raise TooManyAttempts while the username or the client is locked out."""
        now = self.clock()
        with self._lock:
            for key, limit in ((f"user:{username}", self.max_failures), (f"client:{client}", self.max_client_failures)):
                times = self._recent(key, now)
                burst = sum(1 for t in times if times[-1] - t <= self.window) if times else 0
                if burst >= limit and now - times[-1] < self.lockout:
                    raise TooManyAttempts(self.lockout - (now - times[-1]))

    def failed(self, username: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"user:{username}", f"client:{client}"):
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # forget quiet keys so a flood of names cannot grow memory forever
                self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < self.lockout}


class Authenticator:
    """gradio's `auth=` callable: checks the password against the auth file, throttled by a LoginLimiter."""

    def __init__(self, users: dict[str, str], limiter: LoginLimiter | None = None, path: Path | None = None):
        self.users = users
        self.path = path  # the login file: the web UI never reads it, whatever folders it may read
        self.limiter = limiter or LoginLimiter()
        # Unknown usernames are checked against this hash, so a reply never reveals whether a user exists
        self._decoy = hash_password(secrets.token_urlsafe(16))

    @classmethod
    def from_file(cls, path: str | Path, limiter: LoginLimiter | None = None) -> Authenticator:
        return cls(read_auth_file(path), limiter, Path(path))

    def login_help(self) -> str:
        """Shown on the login page: it is the only place a person in a browser learns about the pause."""
        limiter = self.limiter
        return (
            f"Log in with an account made by `python app.py add-user`. After {limiter.max_failures} failed "
            f"attempts, logins for that name pause for {limiter.lockout / 60:g} minutes."
        )

    async def check(self, username: str, password: str) -> bool:
        from fastapi import HTTPException  # gradio's web framework: the login route passes this on as the answer

        client = CLIENT_ADDRESS.get()
        try:
            self.limiter.check(username, client)
        except TooManyAttempts as refused:
            # 400, not 429: gradio's login page shows its "incorrect credentials" note for a 400 only and says
            # nothing at all for other codes; scripts get the reason in the detail and Retry-After.
            headers = {"Retry-After": str(int(refused.retry_after))}
            raise HTTPException(400, str(refused), headers=headers) from None
        stored = self.users.get(username, self._decoy)
        # scrypt takes ~0.1 s of CPU: run it off the event loop so other requests are not held up
        ok = await asyncio.to_thread(verify_password, password, stored) and username in self.users
        if not ok:
            self.limiter.failed(username, client)
        return ok


class ClientAddressMiddleware:
    """Pure ASGI middleware that records the client's address for the login limiter.

    uvicorn already replaces it with X-Forwarded-For when the request comes from an address listed in
    FORWARDED_ALLOW_IPS (default 127.0.0.1), i.e. from a reverse proxy on the same machine."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("client"):
            CLIENT_ADDRESS.set(scope["client"][0])
        await self.app(scope, receive, send)
