"""Webhook notices: a job completed, failed (with the cause in plain words) or was stopped; a sweep finished.

The URL is a secret (Slack, Discord and ntfy URLs carry their key in the path): the spec only names
the environment variable that holds it (`output.notify: LATHE_NOTIFY_URL`), the wizard keeps a typed
URL in server memory, and the value is registered for masking so no log line can show it.

One JSON body works for the common endpoints: Slack reads `text`, Discord `content`, and ntfy builds
its message from the body's `title` and `message` through the X-Template headers (ntfy's message
templates); the other fields are there for anything that wants structure. Sending happens on a
background thread with a few retries and short timeouts, so a dead webhook never fails or slows a job.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from training.redact import redact, register_secret

logger = logging.getLogger(__name__)
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 1.0  # 1 s, then 2 s between tries
DEFAULT_APP_URL = "http://127.0.0.1:7860"


def webhook_url(variable: str | None, secrets: dict[str, str] | None = None) -> str | None:
    """The URL the spec's `output.notify` names: a value handed in beside the spec, else the environment."""
    if not variable:
        return None
    url = (secrets or {}).get(variable) or os.environ.get(variable) or None
    register_secret(url)
    return url


def app_link(job_id: str) -> str:
    """Where the job is seen in the wizard: LATHE_PUBLIC_URL (the address people use) or the local default."""
    base = (os.environ.get("LATHE_PUBLIC_URL") or DEFAULT_APP_URL).rstrip("/")
    return f"{base}/?job={job_id}"


def job_notice(snapshot, metrics: dict[str, Any]) -> dict[str, Any]:
    """The body for one job's end, from its final snapshot."""
    state = snapshot.state
    # JSON has no NaN: a diverged loss is left out of the numbers (the cause says what happened)
    metrics = {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
    headline = {
        "completed": f"Lathe: {snapshot.job_id} completed",
        "failed": f"Lathe: {snapshot.job_id} failed",
        "stopped": f"Lathe: {snapshot.job_id} was stopped",
    }.get(state, f"Lathe: {snapshot.job_id} ended ({state})")
    details = [f"{name} {value:.4g}" for name, value in metrics.items() if isinstance(value, int | float)]
    lines = [headline]
    if state == "failed" and snapshot.message:
        lines.append(f"Cause: {redact(snapshot.message)} {redact(snapshot.hint)}".rstrip())
    if details:
        lines.append(", ".join(details))
    link = app_link(snapshot.job_id)
    lines.append(link)
    return _body(
        "job_" + state,
        headline,
        "\n".join(lines),
        job=snapshot.job_id,
        state=state,
        metrics=metrics,
        link=link,
        cause=redact(snapshot.message) if state == "failed" else None,
    )


def sweep_notice(sweep_id: str, runs: list[dict[str, Any]], best: str | None) -> dict[str, Any]:
    headline = f"Lathe: sweep {sweep_id} finished ({len(runs)} runs)"
    lines = [headline]
    for run in runs:
        loss = run.get("best validation loss")
        shown = f", best validation loss {loss:.4g}" if isinstance(loss, float) else ""
        lines.append(f"- {run['job']}: {run['state']}{shown}{' (best)' if run['job'] == best else ''}")
    link = app_link(best or runs[0]["job"])
    lines.append(link)
    return _body("sweep_finished", headline, "\n".join(lines), sweep=sweep_id, runs=runs, best=best, link=link)


def _body(event: str, title: str, text: str, **fields) -> dict[str, Any]:
    # text: Slack; content: Discord (at most 2,000 characters); title and message: ntfy's templates
    return {"text": text, "content": text[:2000], "title": title, "message": text, "event": event, **fields}


def post(url: str, body: dict[str, Any], attempts: int = ATTEMPTS, backoff: float = BACKOFF_SECONDS) -> bool:
    """POST the body, retrying on errors and 5xx/429 answers; True once delivered. Never raises."""
    data = json.dumps(body, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Lathe",
        # ntfy: read the JSON body and use these templates for the notification; others ignore the headers
        "X-Template": "yes",
        "X-Title": "{{.title}}",
        "X-Message": "{{.message}}",
    }
    for attempt in range(attempts):
        try:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 - the user's URL
                if answer.status < 300:
                    return True
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code != 429:  # the endpoint refused the body: trying again won't help
                logger.warning("webhook refused the notice (HTTP %s); not retrying", error.code)
                return False
        except (OSError, ValueError) as error:  # unreachable, timed out, or not a URL at all
            # The exception text may quote the URL: masked (register_secret), and only its class is logged
            logger.info("webhook attempt %d failed: %s", attempt + 1, type(error).__name__)
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    logger.warning("webhook unreachable after %d tries; the notice was dropped", attempts)
    return False


_pending: list[threading.Thread] = []


def send_in_background(url: str | None, body: dict[str, Any]) -> threading.Thread | None:
    """Post without making anyone wait: on a daemon thread (an app exiting does not wait for a dead webhook)."""
    if not url:
        return None
    thread = threading.Thread(target=post, args=(url, body), name="lathe-notify", daemon=True)
    thread.start()
    _pending.append(thread)
    return thread


def flush(timeout: float = 15.0) -> None:
    """Give notices still being sent a moment to go out before a command-line run exits (bounded)."""
    deadline = time.monotonic() + timeout
    for thread in list(_pending):
        thread.join(max(0.0, deadline - time.monotonic()))
    _pending[:] = [t for t in _pending if t.is_alive()]
