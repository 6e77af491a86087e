"""`data.source: path/dataset_info.json#name`: a LLaMA-Factory dataset entry, its columns and tags applied.

LLaMA-Factory describes each dataset in a `dataset_info.json`: the file, its `formatting` (alpaca or
sharegpt), which column plays which role (`columns`) and, for sharegpt, which keys and role names the
messages use (`tags`). Files that train there are read here with the same mapping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from training.errors import UserError

SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
OUR_ROLES = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "observation",
             "function_tag": "function_call", "system_tag": "system"}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    path: Path
    format: str
    field_map: dict[str, str]
    messages_column: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def apply(self, row: dict) -> dict:
        """A sharegpt row's messages with our keys and role names (role/content, user/assistant/...)."""
        if not self.messages_column or not isinstance(row.get(self.messages_column), list):
            return row
        roles = {self.tags[tag]: ours for tag, ours in OUR_ROLES.items()}
        messages = [
            {"role": roles.get(m.get(self.tags["role_tag"]), m.get(self.tags["role_tag"])),
             "content": m.get(self.tags["content_tag"])}
            if isinstance(m, dict) else m
            for m in row[self.messages_column]
        ]  # fmt: skip
        return {**row, self.messages_column: messages}


def is_dataset_info(source: str) -> bool:
    return "#" in source and source.split("#", 1)[0].endswith("dataset_info.json")


def resolve(source: str) -> Entry:
    file_part, name = source.split("#", 1)
    info_path = Path(file_part).expanduser()
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"data.source: cannot read {info_path} ({str(error)[:120]}). Check the path.") from None
    if name not in info:
        raise UserError(f"data.source: {info_path.name} has no dataset {name!r}. Choose one of: {', '.join(info)}.")
    entry = info[name]
    if "file_name" not in entry:
        raise UserError(
            f"data.source: {name} in {info_path.name} has no file_name (Hub and script datasets are not read "
            "from dataset_info.json). Use hub:org/name instead."
        )
    path = info_path.parent / entry["file_name"]
    columns = entry.get("columns", {})
    if entry.get("formatting", "alpaca") == "sharegpt":
        if entry.get("ranking"):
            raise UserError(
                f"data.source: {name} is a sharegpt preference set; export it as prompt/chosen/rejected "
                "columns and point data.source at that file."
            )
        messages = columns.get("messages", "conversations")
        tags = SHAREGPT_TAGS | entry.get("tags", {})
        wanted = {"conversations": messages, "system": columns.get("system"), "tools": columns.get("tools")}
        return Entry(path, "sharegpt", {k: v for k, v in wanted.items() if v}, messages, tags)
    prompt, response = columns.get("prompt", "instruction"), columns.get("response", "output")
    if columns.get("kto_tag"):
        return Entry(
            path, "unpaired_preference", {"prompt": prompt, "completion": response, "label": columns["kto_tag"]}
        )
    if entry.get("ranking"):
        wanted = {
            "prompt": prompt,
            "chosen": columns.get("chosen", "chosen"),
            "rejected": columns.get("rejected", "rejected"),
        }
        return Entry(path, "preference", wanted)
    wanted = {"instruction": prompt, "input": columns.get("query", "input"), "output": response,
              "system": columns.get("system"), "history": columns.get("history")}  # fmt: skip
    return Entry(path, "alpaca", {k: v for k, v in wanted.items() if v})
