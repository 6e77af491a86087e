"""The model step's "Check access": can this token download this model, and if not, what to do about it.

It asks the Hub through the real `huggingface_hub` client (whoami, auth-check, model info) and turns each
failure into one plain sentence that names the field to fix. The token is always passed explicitly
(`token or False`) so a token saved on this machine is never borrowed, and it never appears in what we return.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import (
    HFValidationError,
)
from huggingface_hub.utils import validate_repo_id

from training import hub_errors
from training.hub_errors import HubFailure, classify_hub_error
from training.redact import redact_with
from training.spec import EMBEDDED_MODEL

logger = logging.getLogger(__name__)

TOKENS_URL = "https://huggingface.co/settings/tokens"
HUB_URL = "https://huggingface.co"
_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9_]{20,}")  # user access tokens are "hf_" and ~34 letters
UNREACHABLE = (
    "Can't reach the Hugging Face Hub{detail}. Check the network, or use the embedded model or a local folder."
)


@dataclass(frozen=True)
class AccessCheck:
    ok: bool
    message: str  # one or two plain sentences naming the field (token or model) and the fix
    user: str | None = None  # the Hub username when the token is valid
    gated: bool = False


def check_access(model: str, token: str | None, endpoint: str | None = None, timeout: float = 10.0) -> AccessCheck:
    """Whether `token` (or no token) can download `model`; never raises, never echoes the token."""
    model = model.strip()
    token = (token or "").strip() or None  # a pasted token often carries a newline
    if not model:  # Path("") is the current folder, which would pass as a local model
        return AccessCheck(False, "model: choose the embedded model, a Hub id (org/name) or a local folder.")
    if model == EMBEDDED_MODEL:
        return AccessCheck(True, "The embedded model is on this machine: no token and no network needed.")
    if Path(model).expanduser().is_dir():
        return AccessCheck(True, f"model: {model} is a local folder: no token needed.")
    if (token and token in model) or _TOKEN_SHAPE.fullmatch(model):
        # Caught before any request, or the token would travel in a URL and land in logs.
        return AccessCheck(
            False, "model: this looks like a token. Put the Hub id (org/name) here and the token in the token field."
        )
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        return AccessCheck(False, f"model: the folder {model} doesn't exist here. Check the path.")
    try:
        validate_repo_id(model)
    except HFValidationError:
        return AccessCheck(
            False,
            f"model: {model} is not a Hub id. Give a Hub id like Qwen/Qwen2.5-0.5B-Instruct, "
            "an existing local folder, or the embedded model.",
        )

    result = _with_deadline(lambda: _ask_hub(model, token, endpoint, timeout), timeout)
    if result is None:
        result = AccessCheck(False, UNREACHABLE.format(detail=f" (no answer within {timeout:g} s)"))
    result = AccessCheck(result.ok, redact_with(result.message, token), result.user, result.gated)
    logger.info("Hub access check for %s: %s", model, result.message)
    return result


def describe_hub_error(exc: BaseException, model: str, token_given: bool, user: str | None = None) -> AccessCheck:
    """Explain a Hub failure in plain words, naming the field to fix (token or model)."""
    found = _describe(classify_hub_error(exc), model, token_given, user)
    if found is not None:
        return found
    # Only the class name: an unknown error's text might quote request headers.
    return AccessCheck(
        False,
        f"Checking {model} on the Hugging Face Hub failed unexpectedly ({type(exc).__name__}). "
        "Try again, or use the embedded model or a local folder.",
        user=user,
    )


def _ask_hub(model: str, token: str | None, endpoint: str | None, timeout: float) -> AccessCheck:
    api = HfApi(endpoint=endpoint, token=token or False)
    user = None
    try:
        if token:
            # whoami first: a refused token is the token field's fault, whatever the model.
            user = api.whoami(token=token).get("name")
        # auth-check is the one call that answers "may this token download it" for gated repos;
        # model info alone returns 200 for a gated model even without access.
        api.auth_check(model, token=token or False)
        info = api.model_info(model, token=token or False, timeout=timeout, expand=["gated"])
    except Exception as exc:  # every failure becomes a sentence; none escapes into the UI as a traceback
        return describe_hub_error(exc, model, token_given=token is not None, user=user)
    gated = bool(info.gated)
    who = f"Signed in as {user}; " if user else ""
    if gated:
        return AccessCheck(True, f"{who}your access to the gated model {model} is approved.", user=user, gated=True)
    if user:
        return AccessCheck(True, f"{who}{model} is ready to download.", user=user)
    return AccessCheck(True, f"{model} is public: it downloads without a token.")


def _describe(failure: HubFailure, model: str, token_given: bool, user: str | None) -> AccessCheck | None:
    page = f"{HUB_URL}/{model}"
    if failure.kind == hub_errors.OFFLINE:
        return AccessCheck(
            False,
            "Hub access is switched off on this machine (HF_HUB_OFFLINE=1). "
            "Unset it to use Hub models, or use the embedded model or a local folder.",
        )
    if failure.kind == hub_errors.GATED:
        if not token_given or failure.status == 401:
            return AccessCheck(
                False,
                f"token: {model} is gated, so it needs a Hugging Face token. Create a read token at {TOKENS_URL}, "
                f"accept the model's licence at {page}, then paste the token here.",
                gated=True,
            )
        return AccessCheck(
            False,
            f"model: {model} is gated and {user or 'your account'} has no access yet. "
            f"Visit {page} and accept the licence, then try again (approval can take a while).",
            user=user,
            gated=True,
        )
    if failure.kind == hub_errors.NOT_FOUND:
        tail = (
            "if it is private, make sure your token can read it." if token_given else "a private model needs a token."
        )
        return AccessCheck(
            False,
            f"model: {model} was not found on the Hugging Face Hub. Check the spelling (org/name); {tail}",
            user=user,
        )
    if failure.kind == hub_errors.DISABLED:
        return AccessCheck(False, f"model: {model} has been disabled on the Hub. Pick another model.", user=user)
    if failure.kind == hub_errors.HTTP:
        return _describe_status(failure.status, model, user)
    if failure.kind == hub_errors.UNREACHABLE:
        return AccessCheck(False, UNREACHABLE.format(detail=""))
    if failure.kind == hub_errors.INVALID_ID:
        return AccessCheck(False, f"model: {model} is not a Hub id. Give a Hub id like Qwen/Qwen2.5-0.5B-Instruct.")
    return None


def _describe_status(status: int, model: str, user: str | None) -> AccessCheck:
    if status == 401:  # on whoami, or the Hub's "Invalid credentials in Authorization header" on any call
        return AccessCheck(
            False,
            f"token: the Hugging Face Hub refused this token. Create a read token at {TOKENS_URL} and paste it here.",
        )
    if status == 403:
        return AccessCheck(
            False,
            f"token: this token may not read {model}. Use a read token, or give this fine-grained token "
            "read access to the repo (and to public gated repos).",
            user=user,
        )
    if status == 429:
        return AccessCheck(
            False, "The Hugging Face Hub is limiting requests right now. Wait a minute, then try again.", user=user
        )
    return AccessCheck(
        False, f"The Hugging Face Hub answered with an error (HTTP {status}). Try again in a few minutes.", user=user
    )


def _with_deadline(call, timeout: float) -> AccessCheck | None:
    """Run `call` with an overall deadline; None when it ran out.

    huggingface_hub's shared HTTP session has no timeout and whoami/auth_check take none, so a network
    that swallows packets would hang the wizard. A daemon thread lets us stop waiting; the abandoned
    request ends on its own when the OS gives up on the connection.
    """
    box: list[AccessCheck] = []
    worker = threading.Thread(target=lambda: box.append(call()), name="hub-access-check", daemon=True)
    worker.start()
    worker.join(timeout)
    return box[0] if box else None
