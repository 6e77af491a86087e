"""Checks over a whole source that catch what would otherwise train the wrong thing without a word."""

from __future__ import annotations

import re
from typing import Any

from training.data.read import Problem
from training.data.shapes import media_columns

MEDIA_SAMPLE = 1000
PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}")


def media_problem(rows: list[tuple[str, dict]]) -> Problem | None:
    """One error naming every column that carries images, audio or video (placeholders such as <image> too)."""
    columns: dict[str, int] = {}
    first = None
    for where, row in rows[:MEDIA_SAMPLE]:
        for name in media_columns(row):
            columns[name] = columns.get(name, 0) + 1
            first = first or where
    if not columns:
        return None
    named = ", ".join(f"'{name}'" for name in columns)
    return Problem(
        "data.media",
        f"{first} and others" if sum(columns.values()) > 1 else first,
        f"the rows carry images, audio or video (columns {named}: media files, media content parts or "
        "<image>/<audio>/<video> placeholders); a text model would train on the words with the media silently gone.",
        "Remove those columns and placeholders to train on the text alone; multimodal models are not supported yet.",
    )


def placeholder_problem(examples: list[dict], locations: list[str]) -> Problem | None:
    """Template text such as {{name}} left in a person's own data is trained literally: warn."""
    hits = [(where, match) for example, where in zip(examples, locations, strict=True) if (match := _first(example))]
    if not hits:
        return None
    where, match = hits[0]
    return Problem(
        "text.placeholder",
        f"{where}" + (f" and {len(hits) - 1} more row(s)" if len(hits) > 1 else ""),
        f"{len(hits)} row(s) contain unreplaced placeholders such as {match!r}; they are trained literally.",
        "Replace them with the real text (for example the assistant's name) before training.",
        "warning",
    )


def _first(value: Any) -> str | None:
    if isinstance(value, str):
        found = PLACEHOLDER.search(value)
        return found.group(0) if found else None
    if isinstance(value, dict):
        return next((hit for v in value.values() if (hit := _first(v))), None)
    if isinstance(value, list):
        return next((hit for v in value if (hit := _first(v))), None)
    return None


def with_system_prompt(example: dict, system_prompt: str) -> dict:
    """data.system_prompt opens every conversation that has no system message of its own."""
    if "prompt" not in example or not isinstance(example["prompt"], list):
        return example
    if example["prompt"] and example["prompt"][0]["role"] == "system":
        return example
    return {**example, "prompt": [{"role": "system", "content": system_prompt}, *example["prompt"]]}
