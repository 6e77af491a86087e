"""Text from data, models or errors shown as text in a gr.Markdown: no live HTML, images or links.

gradio sanitises Markdown's HTML but keeps `<img src=...>` and links, and Markdown itself turns
`![x](https://...)` into an image every viewer fetches. Escaping HTML and every Markdown mark leaves the
characters visible and inert."""

from __future__ import annotations

import html
import re

MARKDOWN_MARKS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$:])")


def as_text(value: object) -> str:
    """`value` as literal text inside Markdown (HTML escaped, Markdown marks backslash-escaped)."""
    return MARKDOWN_MARKS.sub(r"\\\1", html.escape(str(value), quote=False))
