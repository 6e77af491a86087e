"""Write the malformed-input corpus in tests/data/bad/ and expected.json (file -> the rule it must trip).

Run it again after changing a case: `python tests/data/make_bad_corpus.py`. The files are committed
so the corpus is plain to read; this script is how each was made.
"""

from __future__ import annotations

import json
from pathlib import Path

BAD = Path(__file__).parent / "bad"


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def jsonl(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


GOOD = json.dumps(chat("What is 2+2?", "4."))
CASES: dict[str, tuple[str | bytes, str]] = {
    "invalid_json_line.jsonl": (jsonl(GOOD, '{"messages": [}'), "json.invalid"),
    "trailing_comma.json": ('[{"prompt": "a", "completion": "b"},]', "json.invalid"),
    "truncated_array.json": ('[{"prompt": "a", "completion": "b"}, {"prompt": "c", "compl', "json.array_truncated"),
    "latin1.jsonl": (jsonl(chat("Café?", "Oui, café.")).encode("latin-1"), "file.encoding"),
    "utf16.jsonl": (jsonl(chat("q", "a")).encode("utf-16"), "file.encoding"),
    "bom_then_bad_json.jsonl": (b"\xef\xbb\xbf" + jsonl(GOOD, "{oops").encode(), "json.invalid"),
    "nan_value.jsonl": (jsonl(GOOD, '{"messages": [{"role": "user", "content": NaN}]}'), "json.invalid"),
    "infinity_label.jsonl": (jsonl({"text": "a", "label": "x"}, '{"text": "b", "label": Infinity}'), "json.invalid"),
    "null_content.jsonl": (
        jsonl(GOOD, {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "a"}]}),
        "chat.empty_turn",
    ),
    "misspelt_instruction.jsonl": (jsonl({"instrucion": "Say hi", "output": "Hi"}), "format.unknown"),
    "misspelt_output.csv": ("instruction,outptu\nSay hi,Hi\n", "format.unknown"),
    "unknown_columns.jsonl": (jsonl({"foo": 1, "bar": 2}), "format.unknown"),
    "object_not_list.json": ('{"a": 1, "b": 2}', "format.unknown"),
    "mixed_schemas.jsonl": (jsonl(GOOD, GOOD, GOOD, {"instruction": "Say hi", "output": "Hi"}), "row.missing_field"),
    "empty.jsonl": ("", "file.empty"),
    "whitespace_only.jsonl": ("\n  \n\t\n", "file.empty"),
    "empty_array.json": ("[]", "file.empty"),
    "header_only.csv": ("instruction,output\n", "file.empty"),
    "one_giant_line.jsonl": ("x" * 1_000_000, "json.invalid"),
    "deep_nesting.jsonl": ('{"messages": ' + "[" * 40 + "]" * 40 + "}\n", "json.too_deep"),
    "binary_renamed.jsonl": (bytes(range(256)) * 64, "file.binary"),
    "binary_renamed.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "file.binary"),
    "ragged_row.csv": ("instruction,input,output\nSay hi,,Hi\nAdd,2 and 3\n", "csv.ragged"),
    "ragged_row.tsv": ("prompt\tcompletion\nq\ta\nonly one field\n", "csv.ragged"),
    "duplicate_header.csv": ("text,text\na,b\n", "csv.header"),
    "roles_not_alternating.jsonl": (
        jsonl(
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "user", "content": "Still there?"},
                    {"role": "assistant", "content": "Yes."},
                ]
            }
        ),
        "chat.roles_not_alternating",
    ),
    "no_assistant_turn.jsonl": (jsonl({"messages": [{"role": "user", "content": "Hello?"}]}), "chat.no_assistant"),
    "no_user_turn.jsonl": (
        jsonl({"messages": [{"role": "system", "content": "Be nice."}, {"role": "assistant", "content": "Hi"}]}),
        "chat.no_user",
    ),
    "bad_role.jsonl": (
        jsonl({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}),
        "chat.bad_role",
    ),
    "messages_not_a_list.jsonl": (jsonl({"messages": "Hi there"}), "chat.not_a_list"),
    "message_not_an_object.jsonl": (jsonl({"messages": ["Hi", "Hello"]}), "chat.bad_message"),
    "sharegpt_bad_from.jsonl": (
        jsonl({"conversations": [{"from": "narrator", "value": "q"}, {"from": "gpt", "value": "a"}]}),
        "chat.bad_role",
    ),
    "lines_not_objects.jsonl": (jsonl(GOOD, "[1, 2, 3]", '"just text"'), "json.not_object"),
    "array_of_strings.json": ('["one", "two"]', "json.not_object"),
    "empty_instruction.jsonl": (jsonl({"instruction": " ", "output": "Hi"}), "row.empty_value"),
    "empty_output.csv": ("instruction,output\nSay hi,\n", "row.empty_value"),
    "qa_null_answer.jsonl": (jsonl({"question": "Why?", "answer": None, "context": "Because."}), "row.empty_value"),
    "object_in_text_field.jsonl": (jsonl({"text": {"a": 1}, "label": "x"}), "row.bad_value"),
    "labels_numbers_and_text.jsonl": (
        jsonl({"text": "great", "label": 1}, {"text": "awful", "label": "negative"}),
        "label.mixed_types",
    ),
    "preference_same_answers.jsonl": (
        jsonl({"prompt": "q", "chosen": "a", "rejected": "a"}),
        "preference.same_answers",
    ),
    "preference_no_prompt.jsonl": (jsonl({"chosen": "Blue.", "rejected": "No."}), "preference.no_prompt"),
    "ambiguous_columns.jsonl": (
        jsonl({"text": "a long story", "label": "story", "summary": "short"}),
        "format.ambiguous",
    ),
    "duplicate_rows.jsonl": (jsonl(GOOD, GOOD, json.dumps(chat("q", "a"))), "row.duplicate"),
    "longer_than_context.jsonl": (jsonl(chat("Recite.", "word " * 2000)), "length.over_context"),
    "wrong_extension.xlsx": ("PK\x03\x04 not really a spreadsheet", "file.type"),
    "not_parquet.parquet": ("instruction,output\nSay hi,Hi\n", "file.unreadable"),
}


def main() -> None:
    BAD.mkdir(parents=True, exist_ok=True)
    for name, (content, _) in CASES.items():
        data = content if isinstance(content, bytes) else content.encode()
        (BAD / name).write_bytes(data)
    expected = {name: rule for name, (_, rule) in CASES.items()}
    (BAD / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{len(CASES)} files in {BAD}")


if __name__ == "__main__":
    main()
