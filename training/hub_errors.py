"""What went wrong with a Hugging Face Hub call, in one classification every caller shares.

The model check (`hub.py`), the push (`publish.py`) and Hub datasets (`data/hub_source.py`) each say it
in their own words (the field to fix differs), but which failure it was is decided here, once: libraries
wrap the Hub's errors (transformers, datasets), so the whole chain of causes is read, most specific first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

OFFLINE = "offline"  # HF_HUB_OFFLINE=1
GATED = "gated"
NOT_FOUND = "not_found"
DISABLED = "disabled"
HTTP = "http"  # any other answer with a status: 401 (token refused), 403, 429, 5xx
UNREACHABLE = "unreachable"
INVALID_ID = "invalid_id"
UNKNOWN = "unknown"

# Network failures by name too: datasets and older clients raise their own ConnectError / ConnectTimeout
_NETWORK_NAMES = ("ConnectError", "ConnectionError", "TimeoutError", "ConnectTimeout")


@dataclass(frozen=True)
class HubFailure:
    kind: str
    status: int | None = None  # the HTTP status when the Hub answered


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """An exception and its causes, outermost first (libraries wrap the Hub's errors)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def classify_hub_error(exc: BaseException, gated_by_text: bool = False) -> HubFailure:
    """The failure behind `exc`. `gated_by_text`: also read "gated" in a message (datasets says so in words)."""
    import httpx2  # huggingface_hub 2.x talks HTTP through httpx2: network failures arrive as its TransportError
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain = list(exception_chain(exc))
    missing = RepositoryNotFoundError
    answered = next((link for link in chain if isinstance(link, HfHubHTTPError) and link.response is not None), None)
    status = answered.response.status_code if answered is not None else None
    if any(isinstance(link, OfflineModeIsEnabled) for link in chain):  # a ConnectionError too, so it goes first
        return HubFailure(OFFLINE)
    if any(isinstance(link, GatedRepoError) or (gated_by_text and "gated" in str(link).lower()) for link in chain):
        return HubFailure(GATED, status)  # a GatedRepoError is a RepositoryNotFoundError too, so it goes first
    if any(isinstance(link, missing) or type(link).__name__ == "DatasetNotFoundError" for link in chain):
        return HubFailure(NOT_FOUND, status)
    if any(isinstance(link, DisabledRepoError) for link in chain):
        return HubFailure(DISABLED, status)
    if status is not None:
        return HubFailure(HTTP, status)
    network = (httpx2.TransportError, ConnectionError, TimeoutError)
    if any(isinstance(link, network) or type(link).__name__ in _NETWORK_NAMES for link in chain):
        return HubFailure(UNREACHABLE)
    if any(isinstance(link, HFValidationError) for link in chain):
        return HubFailure(INVALID_ID)
    return HubFailure(UNKNOWN)
