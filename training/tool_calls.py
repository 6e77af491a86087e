"""Tool calling at chat time: tools go in through the model's chat template (`tools=`), and calls come out
through the tokenizer's own response template (transformers' `parse_response`), never a parser of ours.

A model can answer with tool calls only when both halves exist: its chat template shows the tools to the
model, and its tokenizer says how a call looks in its output (`response_template`). Where either is missing
the request is refused with the reason, rather than answered with a call left as raw text.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

NO_PARSER = (
    "this model's tokenizer has no response_template, so there is no defined way to read tool calls from its "
    "answers. Leave `tools` out, or serve a model whose tokenizer defines one (e.g. recent Qwen, SmolLM3, "
    "Mistral or Gemma releases)"
)
NOT_RENDERED = (
    "this model's chat template ignores `tools`, so the model would never see them. Leave `tools` out, or "
    "choose a tool-capable model"
)


def tools_problem(tokenizer, messages: list[dict], tools: list[dict]) -> str | None:
    """Why this model cannot take `tools` (None when it can): no parser for calls, or a template that never
    shows the tools (the prompt comes out the same with and without them)."""
    if getattr(tokenizer, "response_template", None) is None:
        return NO_PARSER
    with_tools = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    without = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return NOT_RENDERED if with_tools == without else None


def parse_reply(tokenizer, prompt: str, raw_reply: str, tools: list[dict]) -> dict[str, Any]:
    """The reply as a message: {"content": text or None, "tool_calls": [...] (OpenAI's shape, may be empty)}."""
    parsed = tokenizer.parse_response(raw_reply, prefix=prompt, tools=tools)
    calls = [openai_call(call) for call in parsed.get("tool_calls") or []]
    content = parsed.get("content")
    return {"content": content.strip() if isinstance(content, str) and content.strip() else None, "tool_calls": calls}


def openai_call(call: dict) -> dict[str, Any]:
    """A parsed call ({"type": "function", "function": {"name", "arguments": {...}}}) in OpenAI's shape, whose
    arguments are a JSON string, with an id the client answers with its `tool` message."""
    function = call.get("function", call)
    arguments = function.get("arguments", {})
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": function.get("name", ""),
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
        },
    }


def template_call(call: dict) -> dict[str, Any]:
    """An OpenAI-shaped call sent back in the conversation, as chat templates read it (arguments as an object)."""
    function = dict(call.get("function", {}))
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):  # text that is not JSON is shown as it came
            function["arguments"] = json.loads(arguments)
    return {"type": "function", "function": function}
