"""Small helpers shared by tests."""

import time


def wait_for(predicate, timeout: float = 180.0, interval: float = 0.2) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
