"""The shapes real data files come in, what is refused, and what the check says will really be trained."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from chat_templates import CHATML_TOOLS, with_template

from training.data.check import check_data, spec_for_source
from training.data.load import load_rows, load_source
from training.data.masking import IGNORED, label_example, prepare_sft
from training.errors import UserError
from training.spec import DataSection, JobSpec

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def trained(tokenizer, labelled) -> str:
    return tokenizer.decode([t for t in labelled.labels if t != IGNORED])


# ---- refused: media and unpaired labels ---------------------------------------------------------------------------


def test_media_rows_are_refused_with_one_error_naming_the_columns(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "<image> What is this?"},
                {"role": "assistant", "content": "A cat."},
            ]
        },
        {
            "messages": [{"role": "user", "content": "And this?"}, {"role": "assistant", "content": "A dog."}],
            "images": ["dog.png"],
        },
    ]
    loaded = load_source(DataSection(), write_jsonl(tmp_path / "vision.jsonl", rows))
    assert [p.rule for p in loaded.errors] == ["data.media"]
    assert "'messages', 'images'" in loaded.errors[0].message and not loaded.examples
    parts = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "Hi"}],
                },
                {"role": "assistant", "content": "Hello"},
            ]
        }
    ]
    with pytest.raises(UserError, match=r"data\.media"):
        load_rows(DataSection(source=write_jsonl(tmp_path / "parts.jsonl", parts)))


# ---- more shapes ---------------------------------------------------------------------------------------------------


def test_content_parts_gz_files_and_single_message_answers_are_read(tmp_path):
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        ]
    }
    packed = tmp_path / "chat.jsonl.gz"
    packed.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    [example] = load_rows(DataSection(source=str(packed)))
    assert example == {
        "prompt": [{"role": "user", "content": "Hi there"}],
        "completion": [{"role": "assistant", "content": "Hello!"}],
    }
    pair = {
        "prompt": "2+2?",
        "chosen": {"role": "assistant", "content": "4"},
        "rejected": {"role": "assistant", "content": "5"},
    }
    [preference] = load_rows(DataSection(source=write_jsonl(tmp_path / "pairs.jsonl", [pair])), "dpo")
    assert preference["chosen"] == [{"role": "assistant", "content": "4"}]


def test_human_assistant_transcripts_are_split_into_turns(tmp_path):
    row = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: 4",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: No idea",
    }
    [example] = load_rows(DataSection(source=write_jsonl(tmp_path / "hh.jsonl", [row])), "dpo")
    assert [m["role"] for m in example["prompt"]] == ["user", "assistant", "user"]
    assert example["chosen"] == [{"role": "assistant", "content": "4"}]


def test_system_prompt_and_row_system_reach_the_preview_and_placeholders_warn(tmp_path, tiny_model_dir):
    rows = [
        {"conversations": [{"from": "human", "value": "Who are you?"}, {"from": "gpt", "value": "I am {{name}}."}]},
        {"system": "Be brief.", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hi."}]},
    ]
    source = write_jsonl(tmp_path / "share.jsonl", rows)
    base = JobSpec().with_overrides({"model.name_or_path": str(tiny_model_dir), "data.system_prompt": "You are Juno."})
    report = check_data(spec_for_source(source, base=base))
    first, second = ("".join(text for text, _ in e.pieces) for e in report.preview)
    assert "<|im_start|>system\nYou are Juno.<|im_end|>" in first and "SmolLM" not in first
    assert "<|im_start|>system\nBe brief.<|im_end|>" in second
    [warning] = [p for _, p in report.all_problems if p.rule == "text.placeholder"]
    assert "'{{name}}'" in warning.message and warning.where == "line 1"


def test_a_text_file_of_one_document_per_line_is_read_one_row_per_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"Document {n}: " + "word " * 60 + "\n" for n in range(3)))
    loaded = load_source(DataSection(source=str(corpus)), str(corpus))
    assert len(loaded.examples) == 3 and loaded.reading.startswith("one document per line")
    poem = tmp_path / "poem.txt"
    poem.write_text("Roses are red\nviolets are blue\n\nA second verse\nends here\n")
    loaded = load_source(DataSection(source=str(poem)), str(poem))
    assert len(loaded.examples) == 2 and loaded.reading.startswith("one document per paragraph")


# ---- what is really trained ----------------------------------------------------------------------------------------


def test_long_documents_are_split_into_context_windows_every_token_trained(tokenizer):
    text = " ".join(f"w{n}" for n in range(300))
    train, _, counts = prepare_sft(tokenizer, [{"text": text}], None, "all_assistant_turns", 64)
    ids = label_example(tokenizer, {"text": text}).input_ids
    assert [len(row["input_ids"]) for row in train] == [64] * (len(ids) // 64) + (
        [len(ids) % 64] if len(ids) % 64 else []
    )
    assert sum((row["input_ids"] for row in train), []) == ids  # nothing cut away
    assert all(row["labels"] == row["input_ids"] for row in train)
    assert counts["train"]["documents_split"] == 1 and counts["train"]["sequences"] == len(train)


def test_the_check_counts_dropped_and_truncated_rows_as_the_trainer_uses_them(tiny_spec, tmp_path):
    from training.data import build_datasets
    from training.engine import build_trainer, load_model
    from training.hardware import plan_for

    rows = [
        {"instruction": "Short question?", "output": "Short answer."},  # fits
        {"instruction": "Tell me more.", "output": "very long answer " * 40},  # answer cut
        {"instruction": "long question " * 60, "output": "Unreachable."},  # the prompt alone fills the context
        {"instruction": "Another short one?", "output": "Yes."},
    ]
    source = write_jsonl(tmp_path / "lengths.jsonl", rows)
    spec = tiny_spec.with_overrides(
        {"data.source": source, "data.validation_split": 0.0, "hyperparameters.context_length": 96}
    )
    report = check_data(spec)
    assert {k: report.trained[k] for k in ("kept", "truncated", "dropped")} == {"kept": 2, "truncated": 1, "dropped": 1}
    assert {p.rule: p.where for _, p in report.all_problems if p.rule.startswith("length.")} == {
        "length.prompt_fills_context": "line 3",
        "length.over_context": "line 2",
    }
    plan = plan_for(spec)
    model, tok = load_model(spec, plan, None)
    train, _ = build_datasets(spec.data, spec.hyperparameters.seed)
    trainer = build_trainer(spec, plan, model, tok, train, None, [], tmp_path / "checkpoints")
    assert len(trainer.train_dataset) == report.trained["kept"] + report.trained["truncated"] == 3
    lengths = sorted(len(row["input_ids"]) for row in trainer.train_dataset)
    assert lengths[-1] == 96  # the cut row, at the context length
    assert all(any(label != IGNORED for label in row["labels"]) for row in trainer.train_dataset)
    counts = trainer.lathe_data_counts["train"]
    assert (counts["kept"], counts["truncated"], counts["dropped"]) == (2, 1, 1)


# ---- tools ----------------------------------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOL_ROW = {
    "tools": [WEATHER],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C, sunny"},
        {"role": "assistant", "content": "It is 18C and sunny in Paris."},
    ],
}


def test_tool_schemas_and_calls_reach_the_text_and_the_calls_are_trained(tokenizer, tmp_path):
    sharegpt = {
        "tools": json.dumps([WEATHER]),
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
            {"from": "observation", "value": "18C, sunny"},
            {"from": "gpt", "value": "It is 18C and sunny in Paris."},
        ],
    }
    tools_tokenizer = with_template(tokenizer, CHATML_TOOLS)
    for name, row in (("openai.jsonl", TOOL_ROW), ("sharegpt.jsonl", sharegpt)):
        examples = load_rows(DataSection(source=write_jsonl(tmp_path / name, [row, row])))
        # through the Arrow form the trainer's datasets use, as build_datasets makes them
        from datasets import Dataset

        from training.data.masking import to_wire

        train, _, _ = prepare_sft(
            tools_tokenizer, Dataset.from_list([to_wire(e) for e in examples]), None, "all_assistant_turns", 512
        )
        text = tools_tokenizer.decode(train[0]["input_ids"])
        assert '"name": "get_weather"' in text and '"description": "Weather in a city"' in text  # the schema
        learned = tools_tokenizer.decode([t for t in train[0]["labels"] if t != IGNORED])
        assert learned == (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
            "It is 18C and sunny in Paris.<|im_end|>\n"
        )
        assert "18C, sunny\n" not in learned and "Weather in Paris?" not in learned  # results and questions are not


def test_a_template_that_cannot_render_tools_is_a_clear_error(tmp_path, tiny_spec):
    source = write_jsonl(tmp_path / "tools.jsonl", [TOOL_ROW])
    report = check_data(tiny_spec.with_overrides({"data.source": source, "data.mix_in": []}))
    [error] = [p for _, p in report.errors]
    assert error.rule == "tools.unsupported" and "'tools'" in error.message
    assert "Choose a model whose chat template supports tools" in error.fix


# ---- the command line ----------------------------------------------------------------------------------------------


def test_check_data_prints_marked_preview_and_groups_identical_problems(tmp_path, tiny_model_dir):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "A2"},
            ]
        }
    ]
    rows += [{"messages": [{"role": "user", "content": "Q"}]} for _ in range(300)]
    source = write_jsonl(tmp_path / "chat.jsonl", rows)
    result = subprocess.run(
        [sys.executable, "app.py", "check-data", source, "--model", str(tiny_model_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 1
    assert "[chat.no_assistant] 300 rows: the conversation does not end with an assistant answer." in out
    assert "(first at line 2)" in out and out.count("chat.no_assistant") == 1
    assert (
        "<|im_start|>assistant\n[[A1<|im_end|>\n]]<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n[[A2<|im_end|>\n]]"
        in out.replace("\n  ", "\n")  # the preview is indented under its heading
    )


def test_a_llamafactory_dataset_info_entry_applies_its_columns_and_tags(tmp_path):
    rows = [
        {
            "dialog": [
                {"speaker": "client", "text": "Hi"},
                {"speaker": "agent", "text": "Hello!"},
                {"speaker": "client", "text": "Bye"},
                {"speaker": "agent", "text": "Bye!"},
            ],
            "sys": "Be kind.",
        }
    ]
    write_jsonl(tmp_path / "talks.jsonl", rows)
    write_jsonl(tmp_path / "qa.jsonl", [{"q": "2+2?", "a": "4", "ok": True}, {"q": "2+2?", "a": "5", "ok": False}])
    info = {
        "talks": {
            "file_name": "talks.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "dialog", "system": "sys"},
            "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "client", "assistant_tag": "agent"},
        },
        "graded": {"file_name": "qa.jsonl", "columns": {"prompt": "q", "response": "a", "kto_tag": "ok"}},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    [talk] = load_rows(DataSection(source=f"{tmp_path}/dataset_info.json#talks"))
    assert talk["prompt"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    graded = load_rows(DataSection(source=f"{tmp_path}/dataset_info.json#graded"), "kto")
    assert [(e["completion"][0]["content"], e["label"]) for e in graded] == [("4", True), ("5", False)]
    with pytest.raises(UserError, match="has no dataset 'nope'. Choose one of: talks, graded"):
        load_rows(DataSection(source=f"{tmp_path}/dataset_info.json#nope"))


def test_defaults_hold_out_ten_percent_of_enough_rows_and_mix_in_only_for_the_identity_demo(tiny_model_dir):
    from wizard.form import SOURCE_DEMO, SOURCE_UPLOAD
    from wizard.steps.data import mix_in_by_default

    assert mix_in_by_default(SOURCE_DEMO, "identity") and not mix_in_by_default(SOURCE_UPLOAD, "identity")
    assert not mix_in_by_default(SOURCE_DEMO, "support-tickets")
    base = JobSpec().with_overrides({"model.name_or_path": str(tiny_model_dir)})
    assert base.data.validation_split == 0.1
    report = check_data(base.with_overrides({"data.mix_in": []}))  # demo:identity, 90 rows
    assert report.validation == "9 of 90 rows held out (10%, data.validation_split)"
    small = check_data(base.with_overrides({"data.mix_in": [], "data.max_rows": 30}))
    assert small.validation == "none held out: 30 rows are fewer than 40, too few to spare any"
    assert "validation: 9 of 90 rows held out" in report.to_text()


def test_qa_answers_in_every_nesting_train_their_text_and_others_are_refused(tmp_path):
    """SQuAD's dict of lists, a list of {"text"} objects, nested lists: the target is the first answer's
    text, never the Python text of the structure; a shape with no text is refused, naming the column."""
    question = {"context": "Two plus two is four.", "question": "What is 2+2?"}
    shapes = [
        "four",
        {"text": ["four", "4"], "answer_start": [17, 17]},
        [{"text": "four", "answer_start": 17}],
        [["four", "4"]],
        ["four"],
    ]
    rows = [question | {"answers": shape} for shape in shapes]
    examples = load_rows(DataSection(source=write_jsonl(tmp_path / "qa.jsonl", rows)))
    assert [e["completion"] for e in examples] == [[{"role": "assistant", "content": "four"}]] * len(shapes)

    refused = check_data(
        spec_for_source(write_jsonl(tmp_path / "odd.jsonl", [question | {"answers": [{"span": [17, 21]}]}] * 3))
    )
    assert not refused.usable
    assert any("'answers' holds dict, not an answer's text" in p.message for _, p in refused.all_problems)
