"""The token mask: shapes, registered secrets, log records with chained exceptions, printed output, job files."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.errors import UserError
from training.events import Failed, Log
from training.jobdir import read_status, write_status
from training.jobs import record_stop_request
from training.redact import MASK, RedactingFilter, contains_secret, redact, register_secret
from training.spec import JobSpec
from training.worker import EventWriter, explain_failure

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_" + "Ab3" * 11 + "x"  # hf_ + 34 letters and digits, like a real user access token
ORG_TOKEN = "api_org_" + "Zq7" * 11
PLAIN_SECRET = "correct-horse-battery-staple-42"  # a token of no known shape, typed into a session


def test_token_shapes_are_masked_and_ordinary_text_is_not():
    assert redact(f"token={TOKEN}&x=1") == f"token={MASK}&x=1"
    assert redact(f"Bearer {ORG_TOKEN}") == f"Bearer {MASK}"
    ordinary = "hf_hub_download failed; HF_HUB_DISABLE_IMPLICIT_TOKEN=1; hf_abc is short"
    assert redact(ordinary) == ordinary
    assert contains_secret(f"hub:{TOKEN}") and not contains_secret("hub:org/name")


def test_a_registered_secret_of_any_shape_is_masked():
    typed = "a-session-token-of-no-known-shape"
    assert redact(f"got {typed}!") == f"got {typed}!"  # not token-shaped: unknown until registered
    register_secret(f"  {typed}\n")  # as pasted, with spaces and a newline
    assert redact(f"got {typed}!") == f"got {MASK}!"
    register_secret("short")  # too short to mask without hiding ordinary words
    assert redact("a short note") == "a short note"


def chained_failure() -> BaseException:
    """An outer error whose cause and context quote secrets, as transformers wraps a Hub error."""
    try:
        try:
            raise ConnectionError(f"400 Bad request: unexpected header Authorization: Bearer {TOKEN}")
        except ConnectionError as inner:
            try:
                raise KeyError(PLAIN_SECRET)  # raised while handling: the __context__ link
            except KeyError:
                raise OSError("We couldn't connect to the Hub to load the files.") from inner  # __cause__
    except OSError as outer:
        return outer


def test_the_filter_masks_message_arguments_and_chained_exception_text():
    register_secret(PLAIN_SECRET)
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("lathe.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    error = chained_failure()
    try:
        logger.error("download failed for %s with %r", TOKEN, {"token": PLAIN_SECRET}, exc_info=error)
    finally:
        logger.removeHandler(handler)
    text = output.getvalue()
    assert TOKEN not in text and PLAIN_SECRET not in text, text
    # The whole chain is still there, only the secrets are gone
    assert "We couldn't connect to the Hub" in text
    assert f"unexpected header Authorization: Bearer {MASK}" in text
    assert "The above exception was the direct cause of the following exception" in text
    assert f"download failed for {MASK}" in text


def test_install_masks_every_logger_and_everything_the_process_prints():
    """In a fresh process (install() replaces stdout and stderr, which pytest is capturing here)."""
    script = textwrap.dedent(
        f"""
        import logging, sys, traceback
        from training import redact
        redact.install()
        redact.register_secret({PLAIN_SECRET!r})
        logging.basicConfig(level=logging.INFO)
        # A library logger with its own handler and no propagation (like transformers), added after install
        library = logging.getLogger("some.library")
        library.addHandler(logging.StreamHandler(sys.stdout))
        library.propagate = False
        library.warning("loading with token %s", {TOKEN!r})
        # uvicorn's access formatter unpacks the arguments: their number and types must survive
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", "/", "1.1", 200)
        try:
            try:
                raise ValueError("inner " + {TOKEN!r})
            except ValueError as inner:
                raise RuntimeError("outer " + {PLAIN_SECRET!r}) from inner
        except RuntimeError:
            logging.getLogger("app").exception("failed")
            traceback.print_exc()
        print("printed", {TOKEN!r}, {ORG_TOKEN!r})
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    out = done.stdout + done.stderr
    for secret in (TOKEN, ORG_TOKEN, PLAIN_SECRET):
        assert secret not in out, out
    assert f"loading with token {MASK}" in done.stdout
    assert f"inner {MASK}" in out and f"outer {MASK}" in out and "direct cause" in out
    assert '127.0.0.1 - "GET / HTTP/1.1" 200' in done.stderr
    assert f"printed {MASK} {MASK}" in done.stdout


def test_user_errors_and_spec_problems_never_echo_a_token():
    assert TOKEN not in str(UserError(f"model: {TOKEN} is not a folder here"))
    with pytest.raises(UserError) as caught:
        JobSpec().with_overrides({"model.name_or_path": TOKEN, "data.source": f"hub:{TOKEN}"})
    assert TOKEN not in str(caught.value)
    paths = [path for path, _ in caught.value.problems]
    assert "model.name_or_path" in paths and "data.source" in paths
    assert all("looks like it holds a Hugging Face token" in message for _, message in caught.value.problems)


def test_job_files_are_masked_events_status_and_the_stop_record(tmp_path):
    emit = EventWriter(tmp_path)
    message, hint = explain_failure(RuntimeError(f"Hub said: bad header Bearer {TOKEN}"))
    emit(Failed(message=message, hint=hint))
    emit(Log(message=f"tried {PLAIN_SECRET}"))
    write_status(tmp_path, state="failed", message=message, note=f"{TOKEN}")
    register_secret(PLAIN_SECRET)
    emit(Log(message=f"tried {PLAIN_SECRET}"))
    emit.file.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[0]["message"] == f"Training failed: RuntimeError: Hub said: bad header Bearer {MASK}"
    assert events[2]["message"] == f"tried {MASK}"
    assert read_status(tmp_path)["note"] == MASK

    record_stop_request(tmp_path, "from the wizard by alice\nstop requested from the wizard by mallory")
    line = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])["message"]
    assert line.startswith("stop requested from the wizard by alice stop requested") and " at 20" in line
    assert (tmp_path / "worker.log").read_text().count("\n") == 1  # one line: a username cannot forge another
