"""Push a finished job's model to the Hugging Face Hub: the adapter or the merged model, with its model card.

The folder is made by the same export functions as `app.py export`, its card names the repo in the
"how to load" snippet, and huggingface_hub's own client creates the repo (private unless asked otherwise;
an existing repo is reused as it is) and uploads the folder in one commit. Every failure becomes one
plain sentence naming the field to fix; the token is passed explicitly to each call (never a token saved
on this machine) and never appears in a message, a log line or the job folder.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id

from training import hub_errors, jobdir
from training.errors import UserError
from training.export import export_adapter, export_merged
from training.hub import _TOKEN_SHAPE, TOKENS_URL, _with_deadline
from training.hub_errors import classify_hub_error
from training.jobdir import load_job_spec
from training.redact import redact_with

logger = logging.getLogger(__name__)

PUSH_LOG = "pushes.jsonl"  # one line per push in the job folder: repo, URL, commit, time (never the token)
WHOAMI_TIMEOUT_S = 20.0  # huggingface_hub's HTTP session has no timeout; a dead network would hang the push
SET_TOKEN = "Paste it in step 1 (Model & token), or export HF_TOKEN for the command line."
REFUSED_TOKEN = (
    "token: the Hugging Face Hub refused this token (invalid or expired). Paste a valid token in step 1 "
    f"(Model & token), or export a valid HF_TOKEN for the command line; tokens are at {TOKENS_URL}."
)
REPO_ID_HELP = (
    "Give owner/name (e.g. your-name/my-model), or just a name for your own account; "
    "letters, digits, '-', '_' and '.', at most 96 characters."
)


@dataclass(frozen=True)
class Pusher:
    """Who is pushing, as the Hub sees the token: the account name and the token's role (read, write, fineGrained)."""

    user: str
    role: str | None


def push_job(
    job_dir: Path,
    repo_id: str,
    token: str | None,
    merged: bool = False,
    private: bool = True,
    endpoint: str | None = None,
) -> str:
    """Upload the job's adapter (or merged model) with its card to `repo_id`; return the repo's URL."""
    job_dir = Path(job_dir)
    token = (token or "").strip()  # a pasted token often carries a newline
    repo_id = (repo_id or "").strip()
    load_job_spec(job_dir)  # "not a job folder" before any network call
    if not token:
        raise UserError(f"token: pushing needs a Hugging Face token with write access ({TOKENS_URL}). {SET_TOKEN}")
    check_repo_id_shape(repo_id, token)
    api = HfApi(endpoint=endpoint, token=token)
    pusher = _who_pushes(api, token, repo_id)
    if "/" not in repo_id:
        repo_id = f"{pusher.user}/{repo_id}"
    try:
        with tempfile.TemporaryDirectory(prefix="lathe-push-") as staging:
            folder = _export(job_dir, Path(staging) / "model", merged, token, repo_id)
            existing = _existing_visibility(api, repo_id)
            if existing is None:
                api.create_repo(repo_id, private=private, exist_ok=True)
            what = "merged model" if merged else "LoRA adapter"
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=f"Upload {what} from Lathe job {job_dir.name}",
                commit_description="Pushed by Lathe: the weights, the tokenizer, the model card and the job's spec.",
            )
    except UserError:
        raise
    except Exception as exc:  # every failure becomes a sentence; none escapes as a traceback
        raise UserError(redact_with(describe_push_error(exc, repo_id, pusher), token)) from None
    url = f"{api.endpoint}/{repo_id}"
    private_now = private if existing is None else existing
    _record_push(job_dir, repo_id, url, commit.oid, merged, private_now, created=existing is None)
    logger.info("pushed job %s to %s (commit %s)", job_dir.name, url, commit.oid)
    return url


def check_repo_id_shape(repo_id: str, token: str) -> None:
    """Refuse a repo id that cannot be one, before it travels in any URL."""
    if not repo_id:
        raise UserError(f"repo: give the repo to push to. {REPO_ID_HELP}")
    if token in repo_id or _TOKEN_SHAPE.search(repo_id):
        raise UserError("repo: this looks like a token. Put the repo id here (owner/name) and the token in step 1.")
    try:
        if repo_id.count("/") > 1:
            raise HFValidationError("more than one '/'")
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UserError(f"repo: {repo_id!r} is not a valid repo id. {REPO_ID_HELP}") from None


def _who_pushes(api: HfApi, token: str, repo_id: str) -> Pusher:
    """whoami first: a refused token is the token field's fault, whatever the repo; it also names the owner."""

    def ask():
        try:
            return api.whoami(token=token)
        except Exception as exc:  # handed back, not raised: an exception in the thread would be lost
            return exc

    answer = _with_deadline(ask, WHOAMI_TIMEOUT_S)
    if answer is None:
        raise UserError(
            f"Can't reach the Hugging Face Hub (no answer within {WHOAMI_TIMEOUT_S:g} s). "
            "Check the network, then push again."
        )
    if isinstance(answer, Exception):
        raise UserError(redact_with(describe_push_error(answer, repo_id, None), token)) from None
    role = ((answer.get("auth") or {}).get("accessToken") or {}).get("role")
    return Pusher(user=answer["name"], role=role)


def _export(job_dir: Path, out_dir: Path, merged: bool, token: str, repo_id: str) -> Path:
    from training.model_card import model_card

    folder = export_merged(job_dir, out_dir, token=token) if merged else export_adapter(job_dir, out_dir)
    # The exported card says "path/to/this/folder"; on the Hub the loading example names the repo
    (folder / jobdir.MODEL_CARD).write_text(model_card(job_dir, merged=merged, location=repo_id))
    return folder


def _existing_visibility(api: HfApi, repo_id: str) -> bool | None:
    """True/False (private or not) for a repo the token can see; None when there is none to see."""
    try:
        return bool(api.repo_info(repo_id).private)
    except RepositoryNotFoundError:
        return None


def describe_push_error(exc: BaseException, repo_id: str, pusher: Pusher | None) -> str:
    """One plain sentence for a failed push, naming the field (token or repo) and the fix."""
    failure = classify_hub_error(exc)
    if failure.kind == hub_errors.OFFLINE:
        return "Hub access is switched off on this machine (HF_HUB_OFFLINE=1). Unset it to push to the Hub."
    if failure.status is not None:  # a push is about the token's rights and the repo: the status says which
        return _describe_status(failure.status, repo_id, pusher)
    if failure.kind == hub_errors.UNREACHABLE:
        return "Can't reach the Hugging Face Hub. Check the network, then push again; nothing was uploaded."
    if failure.kind == hub_errors.INVALID_ID:
        return f"repo: {repo_id!r} is not a valid repo id. {REPO_ID_HELP}"
    # Only the class name: an unknown error's text might quote request headers.
    return f"Pushing to {repo_id} failed unexpectedly ({type(exc).__name__}). Try again in a few minutes."


def _describe_status(status: int, repo_id: str, pusher: Pusher | None) -> str:
    namespace = repo_id.split("/")[0] if "/" in repo_id else None
    if status == 401:
        return REFUSED_TOKEN
    if status == 403:
        if pusher and pusher.role == "read":
            return (
                f"token: this token is read-only, so it cannot create or change repos. Create a token with write "
                f"access at {TOKENS_URL}. {SET_TOKEN}"
            )
        if pusher and namespace and namespace != pusher.user:
            return (
                f"repo: {pusher.user} may not write to {namespace}. Ask an admin of {namespace} for write access "
                f"(a fine-grained token also needs it), or push to your own account: {pusher.user}/"
                f"{repo_id.split('/')[-1]}."
            )
        return (
            f"token: this token may not write to {repo_id}. Give the fine-grained token write access to your repos, "
            f"or create a token with write access at {TOKENS_URL}."
        )
    if status == 404:
        return f"repo: {repo_id} was not found, or this token cannot see it. Check the owner and the name."
    if status == 429:
        return "The Hugging Face Hub is limiting requests right now. Wait a minute, then push again."
    return f"The Hugging Face Hub answered with an error (HTTP {status}) while pushing. Try again in a few minutes."


def _record_push(job_dir: Path, repo_id: str, url: str, commit: str, merged: bool, private: bool, created: bool):
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repo": repo_id,
        "url": url,
        "commit": commit,
        "what": "merged" if merged else "adapter",
        "private": private,
        "created": created,
    }
    with open(job_dir / PUSH_LOG, "a") as log:
        log.write(json.dumps(record) + "\n")
