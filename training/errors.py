"""Errors a person can cause and fix. Their text is shown as is: one plain message, no traceback."""

from training.redact import redact


class UserError(Exception):
    """A problem with the person's input (spec, file, model id), worded so they know what to change.

    Its text is masked (training.redact): a message may quote what the person typed, and a token pasted
    into the wrong field must not come back on the page, in the CLI's error line or in a log.
    """

    def __str__(self) -> str:
        return redact(super().__str__())
