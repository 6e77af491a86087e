"""The wizard's front door: which Host and Origin it answers, which proxy it believes, how its cookies are set.

gradio 6.31's own CORS layer echoes any Origin back with `Access-Control-Allow-Credentials` whenever the Host
is not localhost (so behind every proxy), sets its login cookie `SameSite=None`, and answers any Host (DNS
rebinding). This pure ASGI middleware sits outside all of gradio's middleware (see `GuardedApp` in
wizard/app.py) and decides before gradio sees a request:

- the Host must be one of the app's own names (loopback, the configured --host, --public-url hosts);
- a request with an Origin must come from the app's own origin (or a --public-url); any other is refused, so
  no other website gets a CORS answer or can call an endpoint with a user's cookie;
- X-Forwarded-For/-Proto/-Host count only when the connection comes from a --trusted-proxy;
- every cookie is `SameSite=Lax`, and `Secure` when the request came over TLS.

No gradio here (the browser-facing rules are plain HTTP), so it is tested on its own too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from training.errors import UserError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"forwarded")


def host_name(authority: str) -> str:
    """'Example.com:7860' -> 'example.com', '[::1]:7860' -> '::1' (the name part of a Host header)."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    if authority.count(":") > 1:  # a bare IPv6 address
        return authority
    return authority.partition(":")[0].rstrip(".")


def normal_origin(scheme: str, authority: str) -> str:
    """scheme://host[:port] the way a browser writes an Origin (no default port, lower case)."""
    scheme, authority = scheme.lower(), authority.strip().lower()
    parts = urlsplit(f"{scheme}://{authority}")
    try:
        port = parts.port
    except ValueError:
        return f"{scheme}://{authority}"
    name = parts.hostname or ""
    shown = f"[{name}]" if ":" in name else name
    return f"{scheme}://{shown}" + (f":{port}" if port and port != DEFAULT_PORTS.get(scheme) else "")


def machine_addresses() -> set[str]:
    """This machine's own names and interface addresses: what a browser uses to reach a --host 0.0.0.0 app."""
    import psutil

    names = {socket.gethostname().lower()}
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                names.add(address.address.split("%")[0].lower())
    return names


def parse_public_url(url: str) -> tuple[str, str]:
    """--public-url 'https://lathe.example.com' -> (origin, host name); a clear error for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(
            f"--public-url {url!r}: give the address people open in their browser, e.g. https://lathe.example.com"
        )
    return normal_origin(parts.scheme, parts.netloc.rpartition("@")[2]), parts.hostname.lower()


def parse_proxies(proxies: Iterable[str]) -> frozenset[str]:
    parsed = set()
    for proxy in proxies:
        try:
            parsed.add(str(ipaddress.ip_address(proxy.strip())))
        except ValueError:
            raise UserError(
                f"--trusted-proxy {proxy!r}: give the proxy's IP address as the app sees it, e.g. 127.0.0.1 "
                "(for Docker, the bridge gateway such as 172.17.0.1)."
            ) from None
    return frozenset(parsed)


@dataclass(frozen=True)
class SitePolicy:
    hosts: frozenset[str]  # host names (no port) the app answers to
    origins: frozenset[str]  # origins allowed besides the request's own (the --public-url ones)
    trusted_proxies: frozenset[str]  # peers whose X-Forwarded-* headers are believed

    @classmethod
    def for_server(cls, host: str, public_urls: Iterable[str] = (), trusted_proxies: Iterable[str] = ()):
        hosts = set(LOOPBACK_NAMES)
        origins = set()
        host = host.strip().lower().strip("[]")
        if host in WILDCARD_HOSTS:
            hosts |= machine_addresses()
        else:
            hosts.add(host)
        for url in public_urls:
            origin, name = parse_public_url(url)
            origins.add(origin)
            hosts.add(name)
        return cls(frozenset(hosts), frozenset(origins), parse_proxies(trusted_proxies))


def header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class SiteGuard:
    """Pure ASGI middleware enforcing a SitePolicy (see the module's docstring)."""

    def __init__(self, app, policy: SitePolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        scope = self.believe_proxy(scope)
        refusal = self.refusal(scope)
        if refusal:
            return await refuse(scope, receive, send, refusal)
        secure = scope.get("scheme") in ("https", "wss")

        async def send_with_safe_cookies(message):
            if message["type"] == "http.response.start":
                message["headers"] = safe_headers(message.get("headers", []), secure)
            await send(message)

        await self.app(scope, receive, send_with_safe_cookies)

    def believe_proxy(self, scope):
        """From a trusted proxy: the client address and scheme it reports. From anyone else: drop the headers."""
        peer = (scope.get("client") or ("", 0))[0]
        if peer not in self.policy.trusted_proxies:
            headers = [(k, v) for k, v in scope["headers"] if k not in FORWARDED_HEADERS]
            return {**scope, "headers": headers}
        scope = dict(scope)
        chain = [part.strip() for part in (header(scope, b"x-forwarded-for") or "").split(",") if part.strip()]
        # The nearest address the trusted proxies did not add themselves is the client
        client = next((address for address in reversed(chain) if address not in self.policy.trusted_proxies), None)
        if client:
            scope["client"] = (client, 0)
        proto = (header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto.replace("http", "ws") if scope["type"] == "websocket" else proto
        return scope

    def refusal(self, scope) -> str | None:
        authority = header(scope, b"x-forwarded-host") or header(scope, b"host") or ""
        authority = authority.split(",")[0].strip()
        if host_name(authority) not in self.policy.hosts:
            return (
                f"This app does not answer to the address {host_name(authority) or '(none)'!r}. If that is its "
                "public address, the operator starts it with --public-url https://THAT-ADDRESS."
            )
        origin = header(scope, b"origin")
        scheme = scope.get("scheme", "http").replace("ws", "http")
        if origin is not None:
            own = normal_origin(scheme, authority)
            if origin.strip().lower() != own and origin.strip().lower() not in self.policy.origins:
                return "Requests from another website are refused: open the app at its own address."
        fetch_site = (header(scope, b"sec-fetch-site") or "").lower()
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS and fetch_site == "cross-site":
            return "Requests from another website are refused: open the app at its own address."
        return None


async def refuse(scope, receive, send, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = message.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def safe_headers(headers: list[tuple[bytes, bytes]], secure: bool) -> list[tuple[bytes, bytes]]:
    """Every cookie SameSite=Lax (gradio sets its login cookie SameSite=None), Secure over TLS; no framing
    by other sites."""
    result = []
    for key, value in headers:
        if key.lower() == b"set-cookie":
            value = safe_cookie(value.decode("latin-1"), secure).encode("latin-1")
        elif key.lower() == b"x-frame-options":
            continue
        result.append((key, value))
    result.append((b"x-frame-options", b"SAMEORIGIN"))
    result.append((b"x-content-type-options", b"nosniff"))
    return result


def safe_cookie(cookie: str, secure: bool) -> str:
    parts = [part.strip() for part in cookie.split(";")]
    kept = [part for part in parts if part and part.split("=")[0].strip().lower() not in ("samesite", "secure")]
    was_secure = any(part.lower() == "secure" for part in parts)
    kept.append("SameSite=Lax")
    if secure or was_secure:
        kept.append("Secure")
    return "; ".join(kept)
