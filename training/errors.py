"""Errors a person can cause and fix. Their text is shown as is: one plain message, no traceback."""


class UserError(Exception):
    """A problem with the person's input (spec, file, model id), worded so they know what to change."""
