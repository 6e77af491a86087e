"""Prompt-only rows for GRPO: the prompts of any chat-like file, with its other columns kept as references.

GRPO writes its own answers while training, so a row needs only a prompt; the columns beside it
(`answer`, a label, the file's own reference answer) stay on the row, where the rewards read them
(the match reward compares the model's answer with one of them). A conversation's prompt is
everything up to its last user turn; an assistant reply after it is kept as the `reference` column.
"""

from __future__ import annotations

from typing import Any

from training.data.formats import Detected, Format, RowProblem, _messages
from training.data.read import Problem, is_missing
from training.spec import DEMO_PREFIX, DataSection

CONVERSATION_COLUMNS = ("messages", "conversations", "conversation")
PROMPT_COLUMNS = ("prompt", "question", "instruction", "query", "problem")
REFERENCE_COLUMN = "reference"  # the assistant reply a conversation ended with, if it had one
PROMPTS = Format("prompts", "prompts", {"prompt": PROMPT_COLUMNS}, (), "prompts (with reference columns)")


def is_prompt_row(row: dict) -> bool:
    """A GRPO row: a prompt with no answer to train on (its reference columns are plain text, never messages)."""
    return "prompt" in row and not isinstance(row.get("completion"), list) and not isinstance(row.get("chosen"), list)


def read_source_rows(data: DataSection, source: str, token: str | None):
    """The raw rows of one source, as load_source reads them (demo placeholders filled)."""
    from training.data.load import _fill_placeholders, read_source

    read = read_source(data, source, token)
    rows = read.rows
    if source.startswith(DEMO_PREFIX):
        rows = [(where, _fill_placeholders(row, data.assistant_name, data.assistant_maker)) for where, row in rows]
    return rows, list(read.problems)


def load_prompt_source(data: DataSection, source: str, main: bool = True, token: str | None = None):
    """One source read as GRPO prompts (a `Loaded`, like load_source); never raises for bad rows."""
    from training.data.load import Loaded

    rows, problems = read_source_rows(data, source, token)
    loaded = Loaded(source=source, rows_read=len(rows), problems=problems)
    field_map = data.field_map if main else {}
    for where, row in rows:
        try:
            example = prompt_example(row, field_map)
        except RowProblem as problem:
            loaded.problems.append(Problem(problem.rule, where, problem.message, problem.fix, problem.severity))
            continue
        loaded.examples.append(example)
        loaded.locations.append(where)
    # datasets wants the same columns on every row: a reference missing from a row is empty text there
    columns = sorted({key for example in loaded.examples for key in example if key != "prompt"})
    for example in loaded.examples:
        for column in columns:
            example.setdefault(column, "")
    loaded.detected = Detected(PROMPTS, {"prompt": "prompt", **{c: c for c in columns}})
    loaded.task = "prompts" if loaded.examples else None
    return loaded


def prompt_example(row: dict[str, Any], field_map: dict[str, str]) -> dict[str, Any]:
    """{"prompt": [messages ending with a user turn], <every other plain column as text>}."""
    conversation = field_map.get("messages") or next((c for c in CONVERSATION_COLUMNS if c in row), None)
    prompt_column = field_map.get("prompt") or next((c for c in PROMPT_COLUMNS if c in row), None)
    extra: dict[str, str] = {}
    if conversation and conversation in row and isinstance(row[conversation], list):
        messages = _messages(row[conversation], "user", conversation)
        users = [i for i, message in enumerate(messages) if message["role"] == "user"]
        if not users:
            raise RowProblem("chat.no_user", "there is no user message.", "Give each conversation a user prompt.")
        prompt = messages[: users[-1] + 1]
        reply = " ".join(m["content"] for m in messages[users[-1] + 1 :] if m["role"] == "assistant")
        if reply:
            extra[REFERENCE_COLUMN] = reply
        used = {conversation}
    elif prompt_column and prompt_column in row:
        if is_missing(row[prompt_column]):
            raise RowProblem("row.empty_value", f"'{prompt_column}' is empty.", "Fill it in, or remove the row.")
        prompt = _messages(row[prompt_column], "user", prompt_column)
        used = {prompt_column}
        # Alpaca rows: the input is part of the prompt; the system column leads it
        if prompt_column == "instruction" and not is_missing(row.get("input")):
            prompt[-1] = {"role": "user", "content": f"{prompt[-1]['content']}\n\n{row['input']}"}
            used.add("input")
        if not is_missing(row.get("system")) and prompt[0]["role"] != "system":
            prompt = [{"role": "system", "content": str(row["system"])}, *prompt]
            used.add("system")
        if prompt[-1]["role"] != "user":
            raise RowProblem(
                "prompt.no_user_turn",
                f"'{prompt_column}' does not end with a user message.",
                "End each prompt with the user's turn: GRPO writes the answer itself.",
            )
    else:
        wanted = ", ".join(CONVERSATION_COLUMNS + PROMPT_COLUMNS)
        raise RowProblem(
            "prompt.missing",
            f"has no prompt (looked for {wanted}).",
            "Give each row a prompt column, or name yours with data.field_map (e.g. prompt=text).",
        )
    for key, value in row.items():
        if key in used or key == "prompt":
            continue
        if isinstance(value, bool | int | float | str) or value is None:
            extra[key] = "" if is_missing(value) else str(value)
    return {"prompt": prompt, **extra}
