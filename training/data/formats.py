"""Which format a file's rows are in, which task they serve, and the training examples they become.

Detection reads the column names (a person can name the columns for each role with
`data.field_map`). Each format has a natural task; the examples are TRL's conversational shapes,
so the model's own chat template is applied later, never a hand-written one:

    chat-like tasks   {"prompt": [messages], "completion": [assistant message]}  (only the answer is trained)
    language modeling {"text": "..."}                                           (every token is trained)
    preference        {"prompt": [messages], "chosen": [...], "rejected": [...]}
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from training.data.read import Problem, is_missing
from training.data.shapes import RowProblem, parse_messages, parse_tools
from training.spec import TASK_LABELS

Message = dict[str, str]


@dataclass(frozen=True)
class Format:
    name: str
    task: str  # the task these rows serve
    roles: dict[str, tuple[str, ...]]  # role -> column names that mean it, most usual first
    required: tuple[str, ...]
    label: str


FORMATS = (
    Format(
        "chat",
        "chat",
        {"messages": ("messages",), "system": ("system",), "tools": ("tools",)},
        ("messages",),
        "chat messages (role/content)",
    ),
    Format(
        "sharegpt",
        "chat",
        {"conversations": ("conversations", "conversation"), "system": ("system",), "tools": ("tools",)},
        ("conversations",),
        "ShareGPT conversations (from/value)",
    ),
    Format(
        "alpaca",
        "chat",
        {
            "instruction": ("instruction",),
            "input": ("input",),
            "output": ("output",),
            "system": ("system",),
            "history": ("history",),
        },
        ("instruction", "output"),
        "Alpaca instruction/input/output",
    ),
    Format(
        "preference",
        "preference",
        {"prompt": ("prompt", "question", "instruction"), "chosen": ("chosen",), "rejected": ("rejected",)},
        ("chosen", "rejected"),
        "preference pairs (prompt/chosen/rejected)",
    ),
    Format(
        "unpaired_preference",
        "preference",
        {
            "prompt": ("prompt", "question", "instruction"),
            "completion": ("completion", "response", "answer", "output"),
            "label": ("label", "kto_tag", "desirable", "is_desirable"),
        },
        ("prompt", "completion", "label"),
        "unpaired answers marked good or bad (prompt/completion/label, for KTO)",
    ),
    Format(
        "prompt_completion",
        "chat",
        {"prompt": ("prompt",), "completion": ("completion", "response")},
        ("prompt", "completion"),
        "prompt/completion pairs",
    ),
    Format(
        "qa",
        "qa",
        {"context": ("context",), "question": ("question", "query"), "answer": ("answer", "answers")},
        ("question", "answer"),
        "question answering (context/question/answer)",
    ),
    Format(
        "summarization",
        "summarization",
        {"document": ("document", "article", "dialogue", "text"), "summary": ("summary", "highlights", "abstract")},
        ("document", "summary"),
        "summarisation (document/summary)",
    ),
    Format(
        "classification",
        "classification",
        {"text": ("text", "sentence", "content", "review"), "label": ("label", "labels", "category", "class")},
        ("text", "label"),
        "classification (text/label)",
    ),
    Format("text", "language_modeling", {"text": ("text", "content")}, ("text",), "plain text"),
)
FORMAT_BY_NAME = {f.name: f for f in FORMATS}
TASKS = TASK_LABELS  # the spec declares the tasks and their labels
# Text already laid out in some model's own prompt format is trained as it is
PREFORMATTED_MARKERS = (
    "[INST]",
    "<|im_start|>",
    "### Human:",
    "### Assistant:",
    "<start_of_turn>",
    "<|start_header_id|>",
    "### Instruction:",
)


@dataclass
class Detected:
    format: Format | None
    columns: dict[str, str]  # role -> column
    problems: list[Problem] = field(default_factory=list)


def detect(rows: list[tuple[str, dict]], forced: str = "auto", field_map: dict[str, str] | None = None) -> Detected:
    """The format of these rows; ambiguous or unknown shapes are errors that say how to choose."""
    field_map = field_map or {}
    sample = rows[:1000]
    seen = Counter(key for _, row in sample for key in row)
    # A column counts when most rows have it: a few odd rows are reported one by one, not a new format
    columns = [name for name, count in seen.items() if count * 2 >= len(sample)]
    candidates = [FORMAT_BY_NAME[forced]] if forced != "auto" else list(FORMATS)
    scored = []
    for fmt in candidates:
        mapping = _map_columns(fmt, columns, field_map)
        if all(role in mapping for role in fmt.required):
            scored.append((len(mapping), fmt, mapping))
    if not scored:
        return Detected(None, {}, [_unknown_format(columns, forced)])
    best = max(score for score, _, _ in scored)
    top = [(fmt, mapping) for score, fmt, mapping in scored if score == best]
    detected = Detected(top[0][0], top[0][1])
    if len(top) > 1:
        names = " or ".join(f"{fmt.name} ({fmt.label})" for fmt, _ in top)
        detected.problems.append(
            Problem(
                "format.ambiguous",
                "file",
                f"these columns could be read as {names}.",
                "Choose one with data.format (the Format dropdown in the wizard).",
            )
        )
    return detected


def _map_columns(fmt: Format, columns: list[str], field_map: dict[str, str]) -> dict[str, str]:
    mapping = {}
    for role, names in fmt.roles.items():
        if role in field_map:
            if field_map[role] in columns:
                mapping[role] = field_map[role]
            continue
        found = next((name for name in names if name in columns), None)
        if found and found not in mapping.values():
            mapping[role] = found
    return mapping


def _unknown_format(columns: list[str], forced: str) -> Problem:
    known = sorted({name for fmt in FORMATS for names in fmt.roles.values() for name in names})
    hints = []
    for column in columns:
        close = difflib.get_close_matches(column, known, n=1, cutoff=0.75)
        if close and close[0] != column:
            hints.append(f"'{column}' looks like a misspelt '{close[0]}'")
    what = f"the {forced} format" if forced != "auto" else "any known format"
    found = f"the columns {columns} do not match {what}" + (f"; {'; '.join(hints)}" if hints else "")
    return Problem(
        "format.unknown",
        "file",
        found + ".",
        "Rename the columns, or map them with data.field_map (e.g. text=review, label=sentiment). Known formats: "
        + "; ".join(f.label for f in FORMATS)
        + ".",
    )


# ---- rows -> examples -------------------------------------------------------------------------


@dataclass
class Examples:
    examples: list[dict[str, Any]] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)  # classification: label -> rows


def to_examples(rows: list[tuple[str, dict]], detected: Detected, task: str) -> Examples:
    fmt, columns = detected.format, detected.columns
    out = Examples()
    if task == "classification":
        out.labels = _label_set(rows, columns["label"], out)
    for where, row in rows:
        missing = [role for role in fmt.required if columns[role] not in row]
        if missing:
            out.problems.append(
                Problem(
                    "row.missing_field",
                    where,
                    f"has no '{columns[missing[0]]}' field.",
                    "Every row needs the same fields as the others.",
                )
            )
            continue
        try:
            example = BUILDERS[fmt.name](row, columns, out.labels)
        except RowProblem as problem:
            out.problems.append(Problem(problem.rule, where, problem.message, problem.fix, problem.severity))
            if problem.severity == "error":
                continue
            example = problem.example
        if task == "language_modeling" and "text" not in example:
            example = {"text": example["prompt"][-1]["content"] + "\n" + example["completion"][0]["content"]}
        out.examples.append(example)
        out.locations.append(where)
    return out


def _text(row: dict, column: str, required: bool = True) -> str:
    value = row.get(column)
    if is_missing(value):
        if required:
            raise RowProblem("row.empty_value", f"'{column}' is empty.", "Fill it in, or remove the row.")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowProblem(
            "row.bad_value", f"'{column}' holds {type(value).__name__}, not text.", "Put plain text in this field."
        )
    return str(value)


_messages = parse_messages  # text, one message, or a message list (training/data/shapes.py)


def _conversation(messages: list[Message]) -> dict[str, Any]:
    """Prompt = everything before the last assistant turn; completion = that turn (the trained part)."""
    if messages[-1]["role"] != "assistant":
        raise RowProblem(
            "chat.no_assistant",
            "the conversation does not end with an assistant answer.",
            "End each conversation with the assistant's reply: that is what the model learns.",
        )
    if not any(m["role"] == "user" for m in messages):
        raise RowProblem("chat.no_user", "there is no user message.", "Add the user's question before the answer.")
    example = {"prompt": messages[:-1], "completion": messages[-1:]}
    turns = [m["role"] for m in messages if m["role"] != "system"]
    if any(a == b for a, b in zip(turns, turns[1:], strict=False)):
        raise RowProblem(
            "chat.roles_not_alternating",
            "two messages in a row have the same role.",
            "Merge them; some chat templates refuse conversations that do not alternate.",
            severity="warning",
            example=example,
        )
    return example


def _message_list(row: dict, column: str) -> list[Message]:
    if not isinstance(row[column], list):  # a conversation is a list of turns, never bare text
        raise RowProblem(
            "chat.not_a_list",
            f"'{column}' must be a list of messages.",
            'Write it as [{"role": "user", "content": "..."}, {"role": "assistant", ...}].',
        )
    return _messages(row[column], "user", column)


def _chat(row, columns, labels):
    return _with_tools(row, columns, _conversation(_with_system(row, columns, _message_list(row, columns["messages"]))))


def _sharegpt(row, columns, labels):
    messages = _message_list(row, columns["conversations"])
    return _with_tools(row, columns, _conversation(_with_system(row, columns, messages)))


def _with_system(row: dict, columns: dict, messages: list[Message]) -> list[Message]:
    """A row's own 'system' field (ShareGPT exports carry one) opens its conversation."""
    if columns.get("system") and not is_missing(row.get(columns["system"])) and messages[0]["role"] != "system":
        return [{"role": "system", "content": _text(row, columns["system"])}, *messages]
    return messages


def _with_tools(row: dict, columns: dict, example: dict) -> dict:
    """The row's tool schemas travel with its conversation, for the template's native `tools=`."""
    tools = parse_tools(row.get(columns["tools"])) if columns.get("tools") else None
    uses_tools = any(m["role"] == "tool" or m.get("tool_calls") for m in example["prompt"] + example["completion"])
    if tools is None and uses_tools and columns.get("tools") is None:
        raise RowProblem(
            "tools.no_schema",
            "the conversation calls tools but the row has no 'tools' column with their schemas.",
            "Add a 'tools' column (a list of JSON schemas) so the model learns which tools exist.",
            severity="warning",
            example=example,
        )
    return {**example, "tools": tools} if tools else example


def _alpaca(row, columns, labels):
    messages = []
    if columns.get("system") and not is_missing(row.get(columns["system"])):
        messages.append({"role": "system", "content": _text(row, columns["system"])})
    for pair in row.get(columns.get("history", ""), None) or []:
        if isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(t, str) for t in pair):
            messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction = _text(row, columns["instruction"])
    extra = _text(row, columns["input"], required=False) if "input" in columns else ""
    messages.append({"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction})
    messages.append({"role": "assistant", "content": _text(row, columns["output"])})
    return _conversation(messages)


def _prompt_completion(row, columns, labels):
    prompt = _messages(row[columns["prompt"]], "user", columns["prompt"])
    return _conversation(prompt + _messages(row[columns["completion"]], "assistant", columns["completion"]))


def _preference(row, columns, labels):
    prompt = _messages(row[columns["prompt"]], "user", columns["prompt"]) if "prompt" in columns else []
    chosen = _messages(row[columns["chosen"]], "assistant", columns["chosen"])
    rejected = _messages(row[columns["rejected"]], "assistant", columns["rejected"])
    if not prompt:  # implicit prompt: the shared beginning of both conversations
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    if not prompt or prompt[-1]["role"] != "user":
        raise RowProblem(
            "preference.no_prompt",
            "there is no user prompt before the answers.",
            "Give each pair a prompt (a 'prompt' field, or a user message both answers share).",
        )
    if any(m["role"] != "assistant" for m in chosen + rejected):
        raise RowProblem(
            "preference.bad_answer",
            "chosen and rejected must be assistant answers.",
            "Put only the assistant's answers in chosen and rejected.",
        )
    if chosen == rejected:
        raise RowProblem(
            "preference.same_answers",
            "chosen and rejected are the same answer.",
            "Make the rejected answer the worse one, or remove the row.",
        )
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


TRUE_LABELS, FALSE_LABELS = ("true", "1", "yes", "good", "desirable"), ("false", "0", "no", "bad", "undesirable")


def _unpaired_preference(row, columns, labels):
    """One answer marked desirable or not (KTO's shape); the label may be a boolean, 1/0 or true/false text."""
    prompt = _messages(row[columns["prompt"]], "user", columns["prompt"])
    completion = _messages(row[columns["completion"]], "assistant", columns["completion"])
    value = row.get(columns["label"])
    text = str(value).strip().lower() if not isinstance(value, bool) else str(value).lower()
    if text not in TRUE_LABELS + FALSE_LABELS:
        raise RowProblem(
            "label.not_boolean",
            f"'{columns['label']}' is {value!r}, not true or false.",
            "Mark each answer true (desirable) or false (undesirable).",
        )
    if not prompt or prompt[-1]["role"] != "user" or any(m["role"] != "assistant" for m in completion):
        raise RowProblem(
            "preference.bad_answer",
            "each row needs a user prompt and one assistant answer.",
            "Put the question in the prompt and only the assistant's answer in the completion.",
        )
    return {"prompt": prompt, "completion": completion, "label": text in TRUE_LABELS}


MAX_ANSWER_NESTING = 4


def first_answer(value: Any) -> Any:
    """The first reference answer of a QA row, in the shapes datasets give it: text; SQuAD's
    {"text": [...], "answer_start": [...]}; a list of answers, each text or {"text": ...}, nested or not."""
    for _ in range(MAX_ANSWER_NESTING):
        if isinstance(value, dict) and "text" in value:
            value = value["text"]
        elif isinstance(value, list) and value:
            value = value[0]
        else:
            break
    return value


def _qa(row, columns, labels):
    answer = first_answer(row.get(columns["answer"]))
    if is_missing(answer):
        raise RowProblem("row.empty_value", f"'{columns['answer']}' is empty.", "Fill it in, or remove the row.")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise RowProblem(
            "row.bad_value",
            f"'{columns['answer']}' holds {type(answer).__name__}, not an answer's text.",
            'Give the answer as text, a list of texts, or {"text": [...]} as SQuAD does.',
        )
    context = _text(row, columns["context"], required=False) if "context" in columns else ""
    question = _text(row, columns["question"])
    prompt = "Answer the question" + (f" using the context.\n\nContext: {context}\n\n" if context else ".\n\n")
    return _conversation(
        [{"role": "user", "content": f"{prompt}Question: {question}"}, {"role": "assistant", "content": str(answer)}]
    )


def _summarization(row, columns, labels):
    document, summary = _text(row, columns["document"]), _text(row, columns["summary"])
    return _conversation(
        [
            {"role": "user", "content": f"Summarise the following text.\n\n{document}"},
            {"role": "assistant", "content": summary},
        ]
    )


def _classification(row, columns, labels):
    text, label = _text(row, columns["text"]), _text(row, columns["label"])
    choices = ", ".join(labels)
    return _conversation(
        [
            {"role": "user", "content": f"Classify the following text. Answer with one of: {choices}.\n\n{text}"},
            {"role": "assistant", "content": label},
        ]
    )


def _plain_text(row, columns, labels):
    return {"text": _text(row, columns["text"])}


BUILDERS = {
    "chat": _chat,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
    "preference": _preference,
    "unpaired_preference": _unpaired_preference,
    "qa": _qa,
    "summarization": _summarization,
    "classification": _classification,
    "text": _plain_text,
}


def _label_set(rows: list[tuple[str, dict]], column: str, out: Examples) -> dict[str, int]:
    """Every label with its count; numbers and text mixed are flagged (they become text)."""
    values = [row.get(column) for _, row in rows if not is_missing(row.get(column))]
    kinds = {type(v).__name__ for v in values if isinstance(v, str | int | float) and not isinstance(v, bool)}
    if "str" in kinds and kinds & {"int", "float"}:
        out.problems.append(
            Problem(
                "label.mixed_types",
                "file",
                f"'{column}' holds numbers in some rows and text in "
                "others; they are all treated as text (1 and '1' are the same label).",
                "Use one kind of label throughout.",
                "warning",
            )
        )
    return dict(sorted(Counter(str(v) for v in values if isinstance(v, str | int | float)).items()))


def preformatted(examples: list[dict]) -> bool:
    """Raw text that already carries some model's prompt markers (trained as it is, markers included)."""
    texts = [e["text"] for e in examples[:200] if "text" in e]
    return bool(texts) and sum(any(m in t for m in PREFORMATTED_MARKERS) for t in texts) > len(texts) / 2
