"""The one masking function: which tokens of a row the trainer learns from, and what fits the context.

Everything that says what is trained goes through here: the trainer's rows (`sft_rows`), the data
check's kept / truncated / dropped counts and the preview's highlighted spans, so the three can
never disagree.

The trained spans come from the model's own chat template, never a hand-written one:

- a template with `{% generation %}` markers says itself which tokens are the assistant's
  (transformers' `return_assistant_tokens_mask`, what TRL's `assistant_only_loss` uses);
- otherwise each assistant turn's span is found by rendering the conversation up to that turn
  (with the generation prompt) and through it, and is kept only if both renderings are prefixes of
  the whole conversation's rendering. A template that renders earlier turns differently inside the
  whole conversation (some drop earlier reasoning) fails that check: then only the last answer is
  trained, and the row says why.

Rows reach TRL already tokenized (`input_ids` + `labels`, cut to the context length, rows with
nothing left to learn dropped); TRL's SFTTrainer keeps a dataset with a `labels` column as it is.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

IGNORED = -100  # the label PyTorch's cross-entropy skips
GENERATION_MARKER = re.compile(r"{%-?\s*generation\s*-?%}")
ALL_TURNS, LAST_TURN = "all_assistant_turns", "last_assistant_turn"
REWRITES_EARLIER_TURNS = (
    "the model's chat template renders earlier turns differently inside the whole conversation, so only the "
    "last assistant answer is trained in these rows"
)


class TemplateProblem(Exception):
    """A row the model's chat template cannot render as it must be trained (rule, message, fix)."""

    def __init__(self, rule: str, message: str, fix: str):
        super().__init__(message)
        self.rule, self.message, self.fix = rule, message, fix


@dataclass(frozen=True)
class Labelled:
    """One row as the trainer reads it: the rendered text, its tokens and their labels."""

    text: str
    spans: tuple[tuple[int, int], ...]  # character ranges of `text` that are trained
    input_ids: list[int]
    labels: list[int]  # the token id where trained, IGNORED elsewhere
    note: str | None = None  # why fewer turns are trained than were asked for


@dataclass
class Prepared:
    """The rows handed to the trainer and how each source row fared against the context length."""

    rows: list[dict[str, list[int]]] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)  # kept / truncated / dropped / split (text rows)
    windows: int = 0  # context-sized pieces made from long documents
    dropped_at: list[int] = field(default_factory=list)  # indexes of the examples dropped
    truncated_at: list[int] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    problems: list[tuple[int, TemplateProblem]] = field(default_factory=list)  # rows the template cannot render
    lengths: list[int] = field(default_factory=list)  # each row's tokens before any cut

    def counts(self) -> dict[str, int]:
        return {
            "rows_in": sum(self.outcomes.values()),
            "kept": self.outcomes["kept"],
            "truncated": self.outcomes["truncated"],
            "dropped": self.outcomes["dropped"],
            "documents_split": self.outcomes["split"],
            "sequences": len(self.rows),
        }


# ---- the Arrow wire form ----------------------------------------------------------------------------------------
# `datasets` stores rows as Arrow structs, which unify the keys of every row: a tool schema or a call's arguments
# would come back with every other row's keys set to null. So tools and tool calls travel as JSON text.


def to_wire(example: dict[str, Any]) -> dict[str, Any]:
    if "tools" not in example and not _has_tool_calls(example):
        return example
    wired = dict(example)
    if "tools" in wired:
        wired["tools"] = json.dumps(wired["tools"], ensure_ascii=False)
    for key in ("prompt", "completion"):
        if key in wired:
            wired[key] = [_wire_message(m) for m in wired[key]]
    return wired


def from_wire(example: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict] | None]:
    """The whole conversation and its tools, as the chat template takes them."""
    messages = [_plain_message(m) for m in list(example.get("prompt") or []) + list(example.get("completion") or [])]
    tools = example.get("tools")
    if isinstance(tools, str):
        tools = json.loads(tools)
    return messages, tools or None


def _has_tool_calls(example: dict) -> bool:
    return any(m.get("tool_calls") for key in ("prompt", "completion") for m in example.get(key) or [])


def _wire_message(message: dict) -> dict:
    if message.get("tool_calls"):
        return {**message, "tool_calls": json.dumps(message["tool_calls"], ensure_ascii=False)}
    return message


def _plain_message(message: dict) -> dict:
    plain = {k: v for k, v in dict(message).items() if v is not None}  # keys Arrow added for other rows
    if isinstance(plain.get("tool_calls"), str):
        plain["tool_calls"] = json.loads(plain["tool_calls"])
    return plain


# ---- spans from the chat template -------------------------------------------------------------------------------


def _render(tokenizer, messages, tools, generation_prompt: bool) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
        )
    except TemplateError as error:
        raise TemplateProblem(
            "template.refused",
            f"the model's chat template refused this conversation ({str(error)[:160]}).",
            "Check the roles (many templates need user and assistant turns to alternate, some refuse a system "
            "message), or choose a model whose template accepts them.",
        ) from None


def check_tools_render(tokenizer, messages, tools, text: str) -> None:
    """Tools, calls and results must reach the text the model reads; a template without tool support drops them."""
    missing = []
    for tool in tools or []:
        name = (tool.get("function") or tool).get("name")
        if name and name not in text:
            missing.append(f"the tool schema '{name}' (data column 'tools')")
    for message in messages:
        for call in message.get("tool_calls") or []:
            name = (call.get("function") or call).get("name")
            if name and name not in text:
                missing.append(f"the assistant's call to '{name}' (messages' 'tool_calls')")
    if missing:
        raise TemplateProblem(
            "tools.unsupported",
            f"the model's chat template cannot render tools: {missing[0]} does not appear in what the model reads.",
            "Choose a model whose chat template supports tools (for example Qwen2.5-Instruct or Llama-3.1-Instruct), "
            "or remove the tools and tool calls from the data.",
        )


def trained_spans(tokenizer, messages, tools=None, train_on: str = ALL_TURNS) -> tuple[str, list, str | None]:
    """(the whole rendering, the character spans trained, a note when fewer turns are trained than asked)."""
    text = _render(tokenizer, messages, tools, False)
    if tools or any(m.get("tool_calls") for m in messages):
        check_tools_render(tokenizer, messages, tools, text)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i > 0]
    if not turns:
        return text, [], None
    if GENERATION_MARKER.search(tokenizer.chat_template or ""):
        spans = _marked_spans(tokenizer, messages, tools, text)
        return text, spans[-1:] if train_on == LAST_TURN else spans, None
    spans, note = [], None
    if train_on == ALL_TURNS:
        for index in turns:
            before = _render(tokenizer, messages[:index], tools, True)
            through = text if index == len(messages) - 1 else _render(tokenizer, messages[: index + 1], tools, False)
            if not (through.startswith(before) and text.startswith(through)):
                spans, note = [], REWRITES_EARLIER_TURNS
                break
            spans.append((len(before), len(through)))
        if len(turns) == 1:
            note = None  # one answer: the fallback below trains the same thing
    if not spans:
        last = turns[-1]
        before = _render(tokenizer, messages[:last], tools, True)
        end = _end_of_turn(tokenizer, messages, last, tools, text)
        start = len(before) if text.startswith(before) else _common_prefix(before, text)
        spans = [(start, end)]
    return text, spans, note


def _end_of_turn(tokenizer, messages, index, tools, text) -> int:
    """Where turn `index` ends in `text`: the end of the text for the last message, else the prefix's end."""
    if index == len(messages) - 1:
        return len(text)
    through = _render(tokenizer, messages[: index + 1], tools, False)
    return len(through) if text.startswith(through) else len(text)


def _marked_spans(tokenizer, messages, tools, text) -> list[tuple[int, int]]:
    """The template's own {% generation %} blocks, as character spans of `text`."""
    marked = tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans: list[tuple[int, int]] = []
    previous = 0
    for bit, (start, end) in zip(marked["assistant_masks"], offsets, strict=False):
        if bit and previous:  # the marked run goes on
            spans[-1] = (spans[-1][0], end)
        elif bit:
            spans.append((start, end))
        previous = bit
    return spans


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


# ---- tokens and labels ------------------------------------------------------------------------------------------


def label_conversation(tokenizer, messages, tools=None, train_on: str = ALL_TURNS) -> Labelled:
    text, spans, note = trained_spans(tokenizer, messages, tools, train_on)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [
        token if any(start <= begin < end for start, end in spans) and finish > begin else IGNORED
        for token, (begin, finish) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return Labelled(text=text, spans=tuple(spans), input_ids=ids, labels=labels, note=note)


def label_example(tokenizer, example: dict, train_on: str = ALL_TURNS) -> Labelled:
    """A chat example (prompt + completion, optional tools) or a text example, labelled for training."""
    if "text" in example and "prompt" not in example:
        text = example["text"]
        ids = list(tokenizer(text)["input_ids"])
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(tokenizer.eos_token_id)  # a document ends; TRL adds the same EOS to raw text
        return Labelled(text=text, spans=((0, len(text)),), input_ids=ids, labels=list(ids))
    messages, tools = from_wire(example)
    return label_conversation(tokenizer, messages, tools, train_on)


def fit(labelled: Labelled, context_length: int, split_documents: bool) -> tuple[str, list[dict[str, list[int]]]]:
    """(outcome, sequences): how one row meets the context length, the way the trainer will use it.

    kept: it fits. truncated: cut at the context length with some trained tokens left. dropped: nothing
    trained is left (the prompt alone fills the context). split: a document cut into context-sized windows.
    """
    ids, labels = labelled.input_ids, labelled.labels
    if len(ids) <= context_length:
        return "kept", [{"input_ids": ids, "labels": labels}]
    if split_documents:
        pieces = [
            {"input_ids": ids[i : i + context_length], "labels": labels[i : i + context_length]}
            for i in range(0, len(ids), context_length)
        ]
        return "split", pieces
    cut = labels[:context_length]
    if all(label == IGNORED for label in cut):
        return "dropped", []
    return "truncated", [{"input_ids": ids[:context_length], "labels": cut}]


def sft_rows(tokenizer, examples, train_on: str, context_length: int) -> Prepared:
    """The tokenized rows the SFT trainer reads, and how each example fared (what the check reports)."""
    prepared = Prepared()
    for index, example in enumerate(examples):
        example = dict(example)
        try:
            labelled = label_example(tokenizer, example, train_on)
        except TemplateProblem as problem:
            prepared.problems.append((index, problem))
            continue
        prepared.lengths.append(len(labelled.input_ids))
        if labelled.note:
            prepared.notes[labelled.note] += 1
        is_document = "text" in example and "prompt" not in example
        outcome, sequences = fit(labelled, context_length, split_documents=is_document)
        prepared.outcomes[outcome] += 1
        if outcome == "dropped":
            prepared.dropped_at.append(index)
        elif outcome == "truncated":
            prepared.truncated_at.append(index)
        elif outcome == "split":
            prepared.windows += len(sequences)
        prepared.rows += sequences
    return prepared


def trained_text(labelled: Labelled) -> list[tuple[str, bool]]:
    """The rendered text as (piece, trained?) runs, for previews."""
    pieces, cursor = [], 0
    for start, end in sorted(labelled.spans):
        if start > cursor:
            pieces.append((labelled.text[cursor:start], False))
        pieces.append((labelled.text[start:end], True))
        cursor = end
    if cursor < len(labelled.text):
        pieces.append((labelled.text[cursor:], False))
    return pieces


def prepare_sft(tokenizer, train_data, eval_data, train_on: str, context_length: int):
    """(train Dataset, validation Dataset or None, counts): the SFT trainer's tokenized rows and what became of
    each example (saved in the job's data.json; the data check counts the same way through `sft_rows`)."""
    from datasets import Dataset

    from training.errors import UserError

    prepared, counts = [], {}
    for name, data in (("train", train_data), ("validation", eval_data)):
        if data is None:
            prepared.append(None)
            continue
        rows = sft_rows(tokenizer, list(data), train_on, context_length)
        if rows.problems:
            index, problem = rows.problems[0]
            raise UserError(
                f"data.source: {len(rows.problems)} row(s) cannot be rendered by the model's chat template; "
                f"{name} row {index + 1}: [{problem.rule}] {problem.message} {problem.fix}"
            )
        if name == "train" and not rows.rows:
            raise UserError(
                "data.source: no training row fits the context length (each prompt alone fills it). "
                "Raise hyperparameters.context_length, or shorten the prompts."
            )
        counts[name] = rows.counts() | {"notes": dict(rows.notes)}
        prepared.append(Dataset.from_list(rows.rows) if rows.rows else None)
    return prepared[0], prepared[1], counts
