"""Preference rows (a prompt, a better answer and a worse one) for DPO and reward modelling.

Each line of a JSONL file is {"prompt": ..., "chosen": ..., "rejected": ...}. The prompt is a
string or a list of messages ending with the user's; each answer is a string or a list of
assistant messages. Rows become TRL's *conversational* preference shape, so TRL applies the
model's own chat template to them, exactly as for SFT.
"""

from __future__ import annotations

import json

from training.data.load import Conversation, _fill_placeholders, _reject_constant, report_bad_rows, source_path
from training.errors import UserError
from training.spec import DEMO_PREFIX, DataSection

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
PreferenceRow = dict[str, Conversation]


def load_preferences(data: DataSection) -> list[PreferenceRow]:
    rows = []
    for source in [data.source, *data.mix_in]:
        for row in read_preferences(source, data.max_rows):
            if source.startswith(DEMO_PREFIX):
                row = {k: _fill_placeholders(v, data.assistant_name, data.assistant_maker) for k, v in row.items()}
            rows.append(row)
    return rows


def read_preferences(source: str, max_rows: int | None = None) -> list[PreferenceRow]:
    path = source_path(source)
    rows, problems = [], []
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row, problem = _parse_preference(line)
            if problem:
                problems.append(f"line {number}: {problem}")
            else:
                rows.append(row)
            if max_rows and len(rows) >= max_rows:
                break
    if problems:
        example = '{"prompt": "...", "chosen": "the better answer", "rejected": "the worse answer"}'
        report_bad_rows(
            path,
            problems,
            f"dpo and reward jobs need one preference row per line: {example} (demo:preferences is an example).",
        )
    if not rows:
        raise UserError(f"data.source: {path.name} has no rows. Add at least one prompt/chosen/rejected row.")
    return rows


def _parse_preference(line: str) -> tuple[PreferenceRow, str | None]:
    try:
        row = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        return {}, f"not valid JSON ({error})"
    if not isinstance(row, dict) or any(key not in row for key in PREFERENCE_KEYS):
        found = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
        return {}, f"expected prompt, chosen and rejected fields (found: {found})"
    prompt = _messages(row["prompt"], "user")
    chosen, rejected = _messages(row["chosen"], "assistant"), _messages(row["rejected"], "assistant")
    for name, messages in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if messages is None:
            return {}, f"{name} must be non-empty text or a list of messages with role and content"
    if prompt[-1]["role"] != "user":
        return {}, "the prompt's last message must be the user's"
    if any(m["role"] != "assistant" for m in chosen + rejected):
        return {}, "chosen and rejected must be assistant answers"
    if chosen == rejected:
        return {}, "chosen and rejected are the same answer, so there is nothing to prefer"
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, None


def _messages(value, role: str) -> Conversation | None:
    """Text becomes one message of `role`; a message list is checked and kept."""
    if isinstance(value, str):
        return [{"role": role, "content": value}] if value.strip() else None
    if not isinstance(value, list) or not value:
        return None
    messages = []
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            return None
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return None
        messages.append({"role": message["role"], "content": message["content"]})
    return messages
