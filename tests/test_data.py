import json

import pytest

from training.data.load import build_datasets, load_conversations, load_rows, load_source, split_rows
from training.errors import UserError
from training.spec import DataSection


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def test_identity_demo_has_80_varied_questions_with_the_job_names_filled_in():
    rows = load_conversations(DataSection(source="demo:identity", assistant_name="Quill", assistant_maker="Acme"))
    questions = {row[0]["content"] for row in rows}
    assert len(rows) >= 80 and len(questions) == len(rows)
    answers = " ".join(row[-1]["content"] for row in rows)
    assert "Quill" in answers and "Acme" in answers
    assert "{name}" not in answers and "{maker}" not in answers


def test_general_demo_loads_and_mixes_in():
    alone = load_conversations(DataSection(source="demo:identity"))
    mixed = load_conversations(DataSection(source="demo:identity", mix_in=["demo:general"]))
    assert len(mixed) - len(alone) == load_source(DataSection(), "demo:general").rows_read >= 30


def test_placeholders_are_only_filled_in_demo_data(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [chat("Say {name}", "Literally {name}")])
    assert load_conversations(DataSection(source=path))[0][1]["content"] == "Literally {name}"


def test_unknown_demo_lists_the_choices():
    choices = "Choose one of: arithmetic, general, identity, kto, preferences"
    with pytest.raises(UserError, match=f"no demo called 'nope'. {choices}"):
        load_conversations(DataSection(source="demo:nope"))


def test_missing_file_names_the_field():
    with pytest.raises(UserError, match="data.source: file not found"):
        load_conversations(DataSection(source="/no/such/file.jsonl"))


def test_every_bad_row_is_reported_with_its_line_number(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            chat("ok", "fine"),
            "{not json",
            {"text": "wrong shape"},
            {"messages": [{"role": "user", "content": "q"}]},
            {"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]},
            '{"messages": [{"role": "user", "content": NaN}]}',
        ],
    )
    with pytest.raises(UserError) as caught:
        load_conversations(DataSection(source=path))
    text = str(caught.value)
    assert "6 problem(s)" in text
    for line, rule in (
        (2, "json.invalid"),
        (3, "row.missing_field"),
        (4, "chat.no_assistant"),
        (5, "chat.bad_role"),
        (6, "chat.empty_turn"),
        (7, "json.invalid"),
    ):
        assert f"[{rule}] line {line}:" in text
    assert "line 1:" not in text


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(UserError, match=r"\[file.empty\] file: empty.jsonl is empty"):
        load_conversations(DataSection(source=str(path)))


def test_a_byte_order_mark_is_harmless(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chat("q", "a")).encode())
    assert len(load_conversations(DataSection(source=str(path)))) == 1


def test_rows_become_prompt_and_completion_so_only_the_answer_is_trained(tmp_path):
    conversation = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    path = write_jsonl(tmp_path / "one.jsonl", [{"messages": conversation}])
    (row,) = load_rows(DataSection(source=path))
    assert row["prompt"] == conversation[:2] and row["completion"] == conversation[2:]


def test_validation_split_is_deterministic_by_seed_and_disjoint():
    rows = list(range(100))
    train, held = split_rows(rows, 0.1, seed=7)
    assert len(held) == 10 and not set(train) & set(held) and len(train) + len(held) == 100
    assert split_rows(rows, 0.1, seed=7) == (train, held)
    assert split_rows(rows, 0.1, seed=8)[1] != held


def test_build_datasets_shapes_for_trl():
    train, validation = build_datasets(DataSection(source="demo:identity", validation_split=0.2), seed=1)
    assert set(train.column_names) == {"prompt", "completion"}
    assert validation is not None and len(validation) == round(0.2 * (len(train) + len(validation)))


def test_held_out_probe_questions_are_not_in_the_training_data():
    from benchmarks.identity_probe import HELD_OUT

    assert len(HELD_OUT) >= 20
    seen = {row[0]["content"].strip().lower() for row in load_conversations(DataSection(mix_in=["demo:general"]))}
    assert not [q for q, _ in HELD_OUT if q.strip().lower() in seen]
