"""Mask Hugging Face tokens (and any secret registered at runtime) in logs, printed output and error messages.

Peers leaked tokens through log files (kohya_ss #3603) and error text; we mask them wherever text leaves
the process: every log record (message, arguments, exception text with its chained causes), the
worker's stdout and stderr (worker.log), the messages of the errors we show (UserError, the Failed
event, status.json). Two kinds of secret are masked:

- anything shaped like a token: `hf_` + 30 or more letters and digits (user access tokens are 34), or an
  organisation's `api_org_...` token;
- exact values registered with `register_secret` (the token a browser session typed, the worker's
  HF_TOKEN), so a token of another shape is masked too.

`install()` puts it on logging for the whole process: a log record factory, because a filter on the
root logger never sees records propagated from other loggers, and transformers and uvicorn log
through their own handlers (some added after start-up); plus the filter on the root logger's handlers.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
import traceback

MASK = "[token]"
MIN_SECRET_LENGTH = 8  # a shorter registered value would mask ordinary words
_SHAPES = re.compile(r"hf_[A-Za-z0-9]{30,}|api_org_[A-Za-z0-9]{30,}")
_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None  # the shapes plus every registered secret, rebuilt on registration


def register_secret(value: str | None) -> None:
    """Mask this exact value from now on, in this process (e.g. the token a session typed)."""
    global _pattern
    value = (value or "").strip()
    if len(value) < MIN_SECRET_LENGTH or _SHAPES.fullmatch(value):
        return  # too short to mask safely, or masked by its shape already
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole
        alternatives = [re.escape(s) for s in sorted(_secrets, key=len, reverse=True)]
        _pattern = re.compile("|".join([*alternatives, _SHAPES.pattern]))


def redact(text: str) -> str:
    """`text` with every token-shaped string and registered secret replaced by [token]."""
    if not isinstance(text, str) or not text:
        return text
    return (_pattern or _SHAPES).sub(MASK, text)


def contains_secret(text: str) -> bool:
    """Whether `text` holds something token-shaped or a registered secret (a token pasted into another field)."""
    return isinstance(text, str) and bool((_pattern or _SHAPES).search(text))


def format_exception(error: BaseException) -> str:
    """The full traceback, chained causes included, with secrets masked (for worker.log)."""
    return redact("".join(traceback.format_exception(error)))


def _redact_value(value):
    """A log argument, masked. Non-text arguments are kept as they are unless their text holds a secret:
    formatters such as uvicorn's access log unpack the arguments and need their types."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - an argument that cannot print cannot leak either
        return value
    masked = redact(text)
    return value if masked == text else masked


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask the record in place: message, arguments, exception text (with chained causes) and stack."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    elif record.msg is not None and not isinstance(record.msg, int | float | bool):
        record.msg = _redact_value(record.msg)
    if isinstance(record.args, dict):
        record.args = {key: _redact_value(value) for key, value in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_redact_value(value) for value in record.args)
    if record.exc_info and record.exc_info[1] is not None:
        # Format the traceback now (traceback.print_exception includes __cause__ and __context__) and
        # drop exc_info: a handler that renders exc_info itself would otherwise print the raw text
        buffer = io.StringIO()
        traceback.print_exception(*record.exc_info, file=buffer)
        record.exc_text = redact(buffer.getvalue().rstrip("\n"))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in each record and lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


class RedactingStream:
    """Wraps stdout or stderr: each write is masked. print() and tracebacks write whole strings, so a
    token is not split across two writes in practice. Everything else (fileno, isatty, encoding) is the
    wrapped stream's (not io.TextIOBase: its own fileno and isatty would hide the real ones)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text) -> int:
        self._stream.write(redact(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


_installed = False


def install() -> None:
    """Mask secrets in every log record and in what this process prints to stdout and stderr (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        return redact_record(make_record(*args, **kwargs))

    logging.setLogRecordFactory(redacting_factory)
    # Records made without the factory (logging.makeLogRecord, a queue listener) still pass a root handler
    redacting = RedactingFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)


def redact_with(text: str, secret: str | None) -> str:
    """`text` with `secret` masked even when it is neither token-shaped nor registered, then every known secret.

    Belt and braces for our own sentences: they never quote a token, but a person may paste one into a field
    that a message names (the model id, the repo id)."""
    return redact(text.replace(secret, MASK) if secret else text)
