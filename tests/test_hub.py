"""The model step's "Check access", through the real huggingface_hub client against a local fake Hub."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from fake_hub import (
    GATED_APPROVED,
    GATED_PENDING,
    INVALID_TOKEN,
    MISSING_MODEL,
    PUBLIC_MODEL,
    RATE_LIMITED_MODEL,
    SLOW_MODEL,
    USER,
    VALID_TOKEN,
)

from training.hub import AccessCheck, check_access, describe_hub_error
from training.spec import EMBEDDED_MODEL

pytest_plugins = ["fake_hub"]

UNREACHABLE = "Can't reach the Hugging Face Hub"


def closed_port_url() -> str:
    """An endpoint nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_embedded_model_needs_no_token_and_no_network():
    # An endpoint that cannot answer proves no call was made.
    result = check_access(EMBEDDED_MODEL, None, endpoint=closed_port_url(), timeout=0.5)
    assert result.ok and "no token" in result.message


def test_local_folder_needs_no_token(tmp_path, fake_hub_server):
    result = check_access(str(tmp_path), VALID_TOKEN, endpoint=fake_hub_server.url)
    assert result.ok and "local folder" in result.message
    assert fake_hub_server.requests == []


def test_token_in_the_model_field_is_caught_without_network(fake_hub_server):
    for token in (VALID_TOKEN, None):
        result = check_access(f" {VALID_TOKEN} ", token, endpoint=fake_hub_server.url)
        assert not result.ok and result.message.startswith("model:") and "token" in result.message
    assert fake_hub_server.requests == []


def test_missing_local_folder_and_bad_id_are_named_without_network(fake_hub_server):
    folder = check_access("/no/such/folder/model", None, endpoint=fake_hub_server.url)
    assert not folder.ok and folder.message.startswith("model:") and "doesn't exist" in folder.message
    empty = check_access("  ", None, endpoint=fake_hub_server.url)
    assert not empty.ok and empty.message.startswith("model:")
    bad_id = check_access("not a model id!", None, endpoint=fake_hub_server.url)
    assert not bad_id.ok and bad_id.message.startswith("model:") and "Hub id" in bad_id.message
    assert fake_hub_server.requests == []


def test_public_model_without_token(fake_hub):
    result = check_access(PUBLIC_MODEL, None, endpoint=fake_hub)
    assert result == AccessCheck(True, f"{PUBLIC_MODEL} is public: it downloads without a token.")


def test_public_model_with_valid_token_names_the_user(fake_hub):
    result = check_access(PUBLIC_MODEL, VALID_TOKEN + "\n", endpoint=fake_hub)  # pasted with a newline
    assert result.ok and result.user == USER and not result.gated
    assert USER in result.message


def test_gated_model_with_approved_token(fake_hub):
    result = check_access(GATED_APPROVED, VALID_TOKEN, endpoint=fake_hub)
    assert result.ok and result.gated and result.user == USER
    assert "approved" in result.message


def test_gated_model_without_token_asks_for_one(fake_hub):
    result = check_access(GATED_APPROVED, None, endpoint=fake_hub)
    assert not result.ok and result.gated
    assert result.message.startswith("token:") and "https://huggingface.co/settings/tokens" in result.message


def test_invalid_token_is_refused(fake_hub_server):
    result = check_access(PUBLIC_MODEL, INVALID_TOKEN, endpoint=fake_hub_server.url)
    assert not result.ok and result.user is None
    assert result.message == (
        "token: the Hugging Face Hub refused this token. "
        "Create a read token at https://huggingface.co/settings/tokens and paste it here."
    )
    # whoami is asked first and decides: no point asking about the model with a refused token.
    assert [path for path, _ in fake_hub_server.requests] == ["/api/whoami-v2"]


def test_gated_model_not_approved_points_to_the_licence(fake_hub):
    result = check_access(GATED_PENDING, VALID_TOKEN, endpoint=fake_hub)
    assert not result.ok and result.gated and result.user == USER
    assert result.message.startswith("model:")
    assert f"https://huggingface.co/{GATED_PENDING}" in result.message and "accept the licence" in result.message


@pytest.mark.parametrize("token", [None, VALID_TOKEN])
def test_missing_model_asks_to_check_the_spelling(fake_hub, token):
    result = check_access(MISSING_MODEL, token, endpoint=fake_hub)
    assert not result.ok and not result.gated
    assert result.message.startswith("model:") and "Check the spelling" in result.message
    assert "private" in result.message


def test_rate_limit_asks_to_wait(fake_hub):
    result = check_access(RATE_LIMITED_MODEL, None, endpoint=fake_hub)
    assert not result.ok and "Wait a minute" in result.message


def test_refused_connection_answers_quickly(hub_online):
    start = time.monotonic()
    result = check_access(PUBLIC_MODEL, VALID_TOKEN, endpoint=closed_port_url(), timeout=2.0)
    assert time.monotonic() - start < 3.0
    assert not result.ok and result.message.startswith(UNREACHABLE)
    assert "embedded model" in result.message


def test_silent_hub_times_out(fake_hub):
    start = time.monotonic()
    result = check_access(SLOW_MODEL, None, endpoint=fake_hub, timeout=0.5)
    assert time.monotonic() - start < 2.0
    assert not result.ok and result.message.startswith(UNREACHABLE) and "0.5 s" in result.message


def test_offline_mode_is_named(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = check_access(PUBLIC_MODEL, VALID_TOKEN, endpoint=closed_port_url(), timeout=2.0)
    assert not result.ok and "HF_HUB_OFFLINE" in result.message


def test_a_token_saved_on_the_machine_is_never_borrowed(fake_hub_server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
    result = check_access(PUBLIC_MODEL, None, endpoint=fake_hub_server.url)
    assert result.ok and result.user is None
    assert fake_hub_server.requests and all(auth is None for _, auth in fake_hub_server.requests)


def test_wrapped_errors_are_classified_by_their_cause(fake_hub):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    # transformers re-raises Hub errors as OSError("You are trying to access a gated repo...") from the original.
    try:
        try:
            HfApi(endpoint=fake_hub, token=VALID_TOKEN).auth_check(GATED_PENDING)
        except GatedRepoError as exc:
            raise OSError("could not load the model") from exc
    except OSError as wrapped:
        result = describe_hub_error(wrapped, GATED_PENDING, token_given=True)
    assert result.gated and "accept the licence" in result.message

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError:
            raise RuntimeError("loading failed")  # noqa: B904 (an implicit __context__ is the point)
    except RuntimeError as wrapped:
        assert describe_hub_error(wrapped, PUBLIC_MODEL, token_given=False).message.startswith(UNREACHABLE)


def test_the_token_never_appears_in_messages_or_logs(fake_hub_server, caplog):
    fake_hub = fake_hub_server.url
    caplog.set_level(logging.DEBUG)
    cases = [
        (PUBLIC_MODEL, VALID_TOKEN),
        (GATED_APPROVED, VALID_TOKEN),
        (GATED_PENDING, VALID_TOKEN),
        (MISSING_MODEL, VALID_TOKEN),
        (RATE_LIMITED_MODEL, VALID_TOKEN),
        (PUBLIC_MODEL, INVALID_TOKEN),
        (VALID_TOKEN, VALID_TOKEN),  # the token pasted into the model field by mistake
        (VALID_TOKEN, None),
    ]
    for model, token in cases:
        result = check_access(model, token, endpoint=fake_hub)
        assert VALID_TOKEN not in repr(result) and INVALID_TOKEN not in repr(result), model
    offline = check_access(PUBLIC_MODEL, VALID_TOKEN, endpoint=closed_port_url(), timeout=2.0)
    assert VALID_TOKEN not in offline.message
    assert caplog.records and VALID_TOKEN not in caplog.text and INVALID_TOKEN not in caplog.text
    # A token in the model field is caught before any request: it must not travel in a URL either.
    assert all(VALID_TOKEN not in path for path, _ in fake_hub_server.requests)
