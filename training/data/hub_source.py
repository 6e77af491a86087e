"""Rows from a Hugging Face Hub dataset (`data.source: hub:org/name`), loaded with `datasets`.

The person's token is passed explicitly (`token or False`), so a token saved on this machine is
never borrowed; every failure (not found, gated, bad token, unknown split or config, offline)
becomes a `Problem` naming the field to change, like a bad file does.
"""

from __future__ import annotations

from training.data.read import Rows
from training.spec import HUB_PREFIX, DataSection

HUB_DATASETS = "https://huggingface.co/datasets"
HUB_ONLY = "hf://datasets/"


def read_hub_rows(data: DataSection, source: str, token: str | None, split: str | None = None, max_rows=None) -> Rows:
    from datasets import load_dataset

    result = Rows()
    repo = source.removeprefix(HUB_PREFIX).strip()
    split = split or data.hub_split
    try:
        # hf://datasets/ means the Hub only: a bare owner/name that is also a folder beside the app would
        # be read from the disk instead, training on the wrong data without a word
        dataset = load_dataset(
            HUB_ONLY + repo, data.hub_config, split=split, revision=data.hub_revision, token=token or False
        )
    except Exception as error:  # noqa: BLE001 - every failure becomes a problem the person can act on
        rule, message, fix = explain(error, repo, split, token is not None)
        result.add(rule, "file", message, fix)
        return result
    count = len(dataset) if not max_rows else min(len(dataset), max_rows)
    for index in range(count):
        result.rows.append((f"row {index + 1}", dict(dataset[index])))
    if not result.rows:
        result.add("file.empty", "file", f"the {split} split of {repo} has no rows.", "Pick another split.")
    return result


def explain(error: BaseException, repo: str, split: str, token_given: bool) -> tuple[str, str, str]:
    from training import hub_errors

    page = f"{HUB_DATASETS}/{repo}"
    # `datasets` wraps the Hub's errors and says a repo is gated in words (DatasetNotFoundError "... gated ...")
    failure = hub_errors.classify_hub_error(error, gated_by_text=True)
    if failure.kind == hub_errors.OFFLINE:
        return "hub.offline", "Hub access is switched off here (HF_HUB_OFFLINE=1).", "Unset it, or upload a file."
    if failure.kind == hub_errors.GATED:
        fix = f"Accept its terms at {page}" + (" and try again." if token_given else ", then enter your token.")
        return "hub.gated", f"data.source: {repo} is gated.", fix
    if failure.kind == hub_errors.NOT_FOUND:
        tail = "if it is private, check your token can read it." if token_given else "a private one needs a token."
        return "hub.not_found", f"data.source: {repo} was not found on the Hub.", f"Check the id (org/name); {tail}"
    if failure.status == 401:
        return "hub.token", "token: the Hugging Face Hub refused this token.", "Create a read token and paste it."
    text = str(error)
    if "Unknown split" in text or ("split" in text.lower() and "not" in text.lower()):
        return "hub.split", f"data.hub_split: {repo} has no split {split!r}.", "Pick one of its splits (often train)."
    if "config" in text.lower() and ("missing" in text.lower() or "available" in text.lower()):
        first = text.splitlines()[0][:200]
        return "hub.config", f"data.hub_config: {first}", "Set data.hub_config to one of the configurations named."
    if failure.kind == hub_errors.UNREACHABLE:
        return "hub.unreachable", "the Hugging Face Hub could not be reached.", "Check the network, or upload a file."
    # Only the class name: an unknown error's text could quote request headers
    return (
        "hub.failed",
        f"loading {repo} failed ({type(error).__name__}).",
        "Try again, or download it and upload a file.",
    )
