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


def form_values(client, endpoint: str, **by_label) -> list:
    """The wizard form's values in endpoint order: its defaults, with some fields changed by label."""
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]["parameters"]
    labels = [p["label"] for p in parameters]
    assert set(by_label) <= set(labels), set(by_label) - set(labels)
    return [by_label.get(p["label"], p.get("parameter_default")) for p in parameters]


def value_of(output):
    """gradio_client hands back a component update as a dict; the value is inside it."""
    return output["value"] if isinstance(output, dict) and "__type__" in output else output
