"""Where a server listens: the one test both servers (the wizard and the OpenAI-compatible API) use."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Only this machine can connect. A host name may resolve to any interface, so it counts as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
