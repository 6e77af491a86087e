"""Read chat-format rows (bundled demos or a JSONL file), check them, and shape them for TRL.

Rows become *conversational prompt/completion* pairs: the prompt is every message before the
last assistant turn, the completion is that turn. TRL then applies the model's own chat template
and computes the loss on the completion only. We do it this way because TRL's
`assistant_only_loss` needs `{% generation %}` markers that most chat templates (SmolLM2's
included) lack, while prompt/completion masking works with every template.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from training.errors import UserError
from training.presets import PRESETS_DIR
from training.spec import DEMO_PREFIX, DataSection

DEMO_DIR = PRESETS_DIR / "data"
ROLES = {"system", "user", "assistant"}
MAX_REPORTED_PROBLEMS = 10

Conversation = list[dict[str, str]]


def demo_names() -> list[str]:
    return sorted(path.stem for path in DEMO_DIR.glob("*.jsonl"))


def source_path(source: str) -> Path:
    if source.startswith(DEMO_PREFIX):
        name = source.removeprefix(DEMO_PREFIX)
        if name not in demo_names():
            raise UserError(f"data.source: there is no demo called {name!r}. Choose one of: {', '.join(demo_names())}.")
        return DEMO_DIR / f"{name}.jsonl"
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"data.source: file not found: {path}. Check the path, or use a demo such as demo:identity.")
    return path


def load_conversations(data: DataSection) -> list[Conversation]:
    """Every conversation of the main source and the mixed-in ones, checked."""
    conversations = []
    for source in [data.source, *data.mix_in]:
        rows = read_source(source, data.max_rows)
        if source.startswith(DEMO_PREFIX):
            rows = [_fill_placeholders(c, data.assistant_name, data.assistant_maker) for c in rows]
        conversations.extend(rows)
    return conversations


def read_source(source: str, max_rows: int | None = None) -> list[Conversation]:
    """One source's conversations; all bad rows are reported together with their line numbers."""
    path = source_path(source)
    conversations, problems = [], []
    with path.open(encoding="utf-8-sig") as lines:  # utf-8-sig: a BOM from Windows editors is harmless
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            conversation, problem = _parse_line(line)
            if problem:
                problems.append(f"line {number}: {problem}")
            else:
                conversations.append(conversation)
            if max_rows and len(conversations) >= max_rows:
                break
    if problems:
        report_bad_rows(
            path,
            problems,
            'Each line must be {"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}]}.',
        )
    if not conversations:
        raise UserError(f"data.source: {path.name} has no rows. Add at least one conversation.")
    return conversations


def report_bad_rows(path: Path, problems: list[str], expected: str) -> None:
    """Raise one error listing the first bad rows by line number, and what a good row looks like."""
    shown = "\n".join(f"  - {problem}" for problem in problems[:MAX_REPORTED_PROBLEMS])
    more = len(problems) - MAX_REPORTED_PROBLEMS
    raise UserError(
        f"data.source: {path.name} has {len(problems)} bad row(s):\n{shown}"
        + (f"\n  ... and {more} more" if more > 0 else "")
        + f"\n{expected}"
    )


def _parse_line(line: str) -> tuple[Conversation, str | None]:
    try:
        row = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        return [], f"not valid JSON ({error})"
    if isinstance(row, dict) and {"chosen", "rejected"} <= row.keys():
        return [], "a preference row (prompt/chosen/rejected): train on it with method.objective dpo or reward"
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
        return [], 'expected an object with a "messages" list'
    messages = row["messages"]
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return [], f"message {index + 1} needs a role of system, user or assistant"
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return [], f"message {index + 1} has empty or non-text content"
    if not messages or messages[-1]["role"] != "assistant":
        return [], "the last message must be the assistant's answer"
    if not any(message["role"] == "user" for message in messages):
        return [], "there is no user message"
    return [{"role": m["role"], "content": m["content"]} for m in messages], None


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity, which are not JSON and break Arrow later on
    raise ValueError(f"{name} is not allowed in JSON")


def _fill_placeholders(conversation: Conversation, name: str, maker: str) -> Conversation:
    # str.replace, not str.format: demo text may contain other braces
    return [
        {**message, "content": message["content"].replace("{name}", name).replace("{maker}", maker)}
        for message in conversation
    ]


def to_prompt_completion(conversation: Conversation) -> dict[str, Conversation]:
    return {"prompt": conversation[:-1], "completion": conversation[-1:]}


def split_rows(rows: list, ratio: float, seed: int) -> tuple[list, list]:
    """A deterministic validation split: the same seed always holds out the same rows."""
    if ratio == 0 or len(rows) < 2:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held_out = max(1, round(len(rows) * ratio))
    held = set(order[:held_out])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def load_rows(data: DataSection, objective: str = "sft") -> list[dict]:
    """The rows a job trains on, checked: prompt/completion for sft, prompt/chosen/rejected otherwise."""
    if objective == "sft":
        return [to_prompt_completion(c) for c in load_conversations(data)]
    from training.data.preferences import load_preferences

    return load_preferences(data)


def build_datasets(data: DataSection, seed: int, objective: str = "sft"):
    """The train and (optional) validation `datasets.Dataset` in TRL's conversational shape."""
    from datasets import Dataset

    rows = load_rows(data, objective)
    train, validation = split_rows(rows, data.validation_split, seed)
    return Dataset.from_list(train), (Dataset.from_list(validation) if validation else None)
