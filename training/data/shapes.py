"""The message shapes people's files really hold, normalised to the chat template's own form.

- content as text, or as a list of parts (`[{"type": "text", "text": ...}]`, OpenAI's format);
- a message list, a single message object, or plain text (a "Human: … Assistant: …" transcript is
  split into its turns);
- roles under `role`/`content` or ShareGPT's `from`/`value`, including ShareGPT's `function_call`
  (an assistant tool call) and `observation` (a tool result);
- assistant `tool_calls` (OpenAI's, whose arguments are JSON text, or Hugging Face's) become
  `{"type": "function", "function": {"name", "arguments": {...}}}`, the form chat templates render.

Media (image, audio, video parts or columns, `<image>` placeholders) is refused: a text model
would train on the words around it with the media silently gone.
"""

from __future__ import annotations

import json
import re
from typing import Any

Message = dict[str, Any]

ROLE_NAMES = {
    "user": "user",
    "human": "user",
    "system": "system",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "tool": "tool",
    "observation": "tool",  # ShareGPT (LLaMA-Factory): a tool's result
    "function": "tool",  # OpenAI's older name for a tool result
    "ipython": "tool",  # Llama 3.1's name for it
    "function_call": "function_call",  # ShareGPT: the assistant calls a tool; becomes assistant tool_calls
}
MEDIA_COLUMNS = ("images", "image", "audios", "audio", "videos", "video", "image_url", "image_path")
MEDIA_PART_TYPES = ("image", "image_url", "input_image", "audio", "input_audio", "video", "video_url")
MEDIA_PLACEHOLDER = re.compile(r"<(image|audio|video)>")
TRANSCRIPT_TURN = re.compile(r"(?:^|\n+)\s*(Human|User|Assistant):[ \t]*", re.IGNORECASE)
TEXT_PART_TYPES = ("text", "input_text", "output_text")


class RowProblem(Exception):
    def __init__(self, rule: str, message: str, fix: str, severity: str = "error", example: dict | None = None):
        super().__init__(message)
        self.rule, self.message, self.fix, self.severity, self.example = rule, message, fix, severity, example


def media_columns(row: dict) -> list[str]:
    """The columns of a row that carry images, audio or video (empty when there are none)."""
    found = [name for name in row if name.lower() in MEDIA_COLUMNS and row[name] not in (None, [], "", {})]
    for name, value in row.items():
        if name not in found and _holds_media(value):
            found.append(name)
    return found


def _holds_media(value: Any, depth: int = 0) -> bool:
    if depth > 4:
        return False
    if isinstance(value, str):
        return bool(MEDIA_PLACEHOLDER.search(value))
    if isinstance(value, dict):
        if value.get("type") in MEDIA_PART_TYPES:
            return True
        return any(_holds_media(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_holds_media(v, depth + 1) for v in value[:50])
    return False


def content_text(content: Any, index: int, field_name: str) -> str | None:
    """Message content as text: a string, or the text parts of a part list joined (None when absent)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict | str) for part in content):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif part.get("type", "text") in TEXT_PART_TYPES and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise RowProblem(
                    "chat.bad_part",
                    f"message {index} of '{field_name}' has a content part of type {part.get('type')!r}.",
                    'Use text parts only: [{"type": "text", "text": "..."}].',
                )
        return "".join(texts)
    raise RowProblem(
        "chat.bad_content",
        f"message {index} of '{field_name}' has content of type {type(content).__name__}.",
        'Give content as text, or as a list of text parts [{"type": "text", "text": "..."}].',
    )


def split_transcript(text: str) -> list[Message] | None:
    """A "Human: … Assistant: …" transcript as turns; None when the text is not one."""
    marks = list(TRANSCRIPT_TURN.finditer(text))
    if len(marks) < 2 or text[: marks[0].start()].strip():
        return None
    messages = []
    for mark, following in zip(marks, marks[1:] + [None], strict=True):
        body = text[mark.end() : following.start() if following else len(text)].strip()
        role = "assistant" if mark.group(1).lower() == "assistant" else "user"
        messages.append({"role": role, "content": body})
    roles = {m["role"] for m in messages}
    return messages if roles == {"user", "assistant"} else None


def tool_calls(value: Any, index: int) -> list[dict]:
    """Tool calls in the Hugging Face form: {"type": "function", "function": {"name", "arguments": {...}}}."""
    calls = value if isinstance(value, list) else [value]
    normalised = []
    for call in calls:
        if isinstance(call, str):
            call = _json(call, index, "tool call")
        if not isinstance(call, dict):
            raise _bad_call(index)
        function = call.get("function", call)
        name, arguments = function.get("name"), function.get("arguments", function.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = _json(arguments, index, "tool call's arguments") if arguments.strip() else {}
        if not isinstance(name, str) or not name or not isinstance(arguments, dict):
            raise _bad_call(index)
        normalised.append({"type": "function", "function": {"name": name, "arguments": arguments}})
    return normalised


def _bad_call(index: int) -> RowProblem:
    return RowProblem(
        "chat.bad_tool_call",
        f"message {index} has a tool call without a name and arguments.",
        'Write each call as {"type": "function", "function": {"name": "...", "arguments": {...}}}.',
    )


def _json(text: str, index: int, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise RowProblem(
            "chat.bad_tool_call", f"message {index}: the {what} is not valid JSON.", "Write it as a JSON object."
        ) from None


def parse_tools(value: Any) -> list[dict] | None:
    """The row's tool schemas (a JSON schema list, or that list as JSON text); None when there are none."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RowProblem(
                "tools.invalid", "'tools' is not valid JSON.", "Give a list of JSON schemas, as OpenAI defines them."
            ) from None
    if isinstance(value, dict):
        value = [value]
    named = isinstance(value, list) and all(isinstance(t, dict) and (t.get("function") or t).get("name") for t in value)
    if not named:
        raise RowProblem(
            "tools.invalid",
            "'tools' must be a list of tool schemas, each with a name.",
            'Write [{"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}].',
        )
    return value


def parse_messages(value: Any, default_role: str, field_name: str) -> list[Message]:
    """Text, one message object, or a list of messages (role/content or ShareGPT from/value), checked."""
    if isinstance(value, str):
        if not value.strip():
            raise RowProblem("row.empty_value", f"'{field_name}' is empty.", "Fill it in, or remove the row.")
        return split_transcript(value) or [{"role": default_role, "content": value}]
    if isinstance(value, dict) and ("role" in value or "from" in value):
        value = [value]  # a single message object, as some preference files give each answer
    if not isinstance(value, list) or not value:
        raise RowProblem(
            "chat.not_a_list",
            f"'{field_name}' must be text or a list of messages.",
            'Write messages as [{"role": "user", "content": "..."}, ...].',
        )
    messages = []
    for index, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            raise RowProblem(
                "chat.bad_message",
                f"message {index} of '{field_name}' is not an object.",
                'Write each message as {"role": ..., "content": ...}.',
            )
        named = message.get("role", message.get("from", ""))
        role = ROLE_NAMES.get(str(named).lower())
        content = content_text(message.get("content", message.get("value")), index, field_name)
        if role is None:
            raise RowProblem(
                "chat.bad_role",
                f"message {index} has role {named!r}.",
                "Use system, user, assistant or tool (ShareGPT: system, human, gpt, function_call, observation).",
            )
        if role == "function_call":  # ShareGPT: the value is the call itself
            messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls(content or "", index)})
            continue
        calls = message.get("tool_calls") or message.get("function_call")
        if role == "assistant" and calls:
            messages.append({"role": "assistant", "content": content or "", "tool_calls": tool_calls(calls, index)})
            continue
        if not isinstance(content, str) or not content.strip():
            raise RowProblem(
                "chat.empty_turn",
                f"message {index} of '{field_name}' has no text.",
                "Give every message some text, or remove the empty one.",
            )
        turn = {"role": role, "content": content}
        if role == "tool" and message.get("name"):
            turn["name"] = str(message["name"])
        if role == "tool" and message.get("tool_call_id"):
            turn["tool_call_id"] = str(message["tool_call_id"])
        messages.append(turn)
    return messages
