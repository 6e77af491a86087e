"""Every format and task: detected, mapped, rendered with the embedded model's template and trained;
and the malformed-input corpus: no tracebacks, a rule id and a location for each file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from training.data.check import check_data, spec_for_source
from training.data.load import load_source
from training.data.preview import render_examples
from training.engine import run_job
from training.events import Progress
from training.preflight import preflight_problems
from wizard.data_report import report_html

BAD = Path(__file__).parent / "data" / "bad"
EXPECTED = json.loads((BAD / "expected.json").read_text())


def write(path: Path, rows: list[dict]) -> str:
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="," if suffix == ".csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == ".txt":
        path.write_text("\n\n".join(r["text"] for r in rows) + "\n")
    return str(path)


def repeat(make, n=8):
    return [make(i) for i in range(n)]


SAMPLES = {
    "chat": (
        "rows.jsonl",
        repeat(
            lambda i: {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"What is {i}+1?"},
                    {"role": "assistant", "content": f"{i + 1}."},
                ]
            }
        ),
        "chat",
        "chat",
    ),
    "sharegpt": (
        "rows.json",
        repeat(
            lambda i: {
                "conversations": [
                    {"from": "human", "value": f"Count to {i}."},
                    {"from": "gpt", "value": " ".join(map(str, range(i + 1)))},
                ]
            }
        ),
        "sharegpt",
        "chat",
    ),
    "alpaca": (
        "rows.csv",
        repeat(lambda i: {"instruction": "Double the number.", "input": str(i), "output": str(2 * i)}),
        "alpaca",
        "chat",
    ),
    "prompt_completion": (
        "rows.tsv",
        repeat(lambda i: {"prompt": f"Say {i} in words.", "completion": f"Number {i}."}),
        "prompt_completion",
        "chat",
    ),
    "preference": (
        "rows.parquet",
        repeat(
            lambda i: {"prompt": f"Is {i} even?", "chosen": "Yes." if i % 2 == 0 else "No.", "rejected": "Hard to say."}
        ),
        "preference",
        "preference",
    ),
    "classification": (
        "rows.jsonl",
        repeat(
            lambda i: {"text": f"I {'loved' if i % 2 else 'hated'} it.", "label": "positive" if i % 2 else "negative"}
        ),
        "classification",
        "classification",
    ),
    "summarization": (
        "rows.jsonl",
        repeat(lambda i: {"article": f"Long report number {i}. " * 5, "summary": f"Report {i}."}),
        "summarization",
        "summarization",
    ),
    "qa": (
        "rows.jsonl",
        repeat(lambda i: {"context": f"Ann has {i} cats.", "question": "How many cats has Ann?", "answer": str(i)}),
        "qa",
        "qa",
    ),
    "text": (
        "rows.txt",
        repeat(lambda i: {"text": f"Paragraph {i} of a long book about rivers."}),
        "text",
        "language_modeling",
    ),
    "text_preformatted": (
        "rows.jsonl",
        repeat(lambda i: {"text": f"<s>[INST] Hi {i} [/INST] Hello {i}</s>"}),
        "text",
        "language_modeling",
    ),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_format_is_detected_mapped_rendered_and_trained(name, tiny_spec, tmp_path):
    filename, rows, fmt, task = SAMPLES[name]
    source = write(tmp_path / filename, rows)
    spec = spec_for_source(source, base=tiny_spec).with_overrides(
        {"hyperparameters.max_steps": 2, "hyperparameters.batch_size": 2}
    )
    loaded = load_source(spec.data, source)
    assert (loaded.detected.format.name, loaded.task) == (fmt, task)
    assert len(loaded.examples) == len(rows) and not loaded.errors, loaded.problems

    example = render_examples(spec, count=1)[0]
    if task == "language_modeling":  # raw text: no template, every token trained
        assert example.prompt == "" and example.completion == loaded.examples[0]["text"]
    else:  # the model's own chat template, with the answer as the trained part
        assert "<|im_start|>user" in example.prompt and example.completion.endswith("<|im_end|>\n")
    if task == "language_modeling":  # marked-up text is pointed out; plain prose is not
        flagged = "text.preformatted" in {p.rule for _, p in check_data(spec).all_problems}
        assert flagged == (name == "text_preformatted")
    if task == "classification":
        assert loaded.labels == {"negative": 4, "positive": 4}
        assert "Answer with one of: negative, positive." in example.prompt

    events = []
    run_job(spec, tmp_path / "job", events.append, lambda: False)
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2]
    saved = json.loads((tmp_path / "job" / "data.json").read_text())["sources"][0]
    assert (saved["format"], saved["task"], saved["rows_kept"]) == (fmt, task, len(rows))


def test_a_field_map_names_the_columns(tiny_spec, tmp_path):
    source = write(
        tmp_path / "reviews.csv", [{"review": "Great!", "sentiment": "pos"}, {"review": "Bad.", "sentiment": "neg"}]
    )
    assert load_source(spec_for_source(source, base=tiny_spec).data, source).detected.format is None
    spec = spec_for_source(source, field_map={"text": "review", "label": "sentiment"}, base=tiny_spec)
    loaded = load_source(spec.data, source)
    assert loaded.detected.format.name == "classification" and loaded.labels == {"neg": 1, "pos": 1}


def test_the_corpus_has_forty_kinds_of_bad_input():
    assert len(EXPECTED) >= 40
    assert {path.name for path in BAD.iterdir()} - {"expected.json"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input_gets_a_rule_and_a_place_never_a_traceback(name, embedded_model_dir):
    rule = EXPECTED[name]
    spec = spec_for_source(str(BAD / name))
    report = check_data(spec)  # must not raise
    found = {problem.rule: problem for _, problem in report.all_problems}
    assert rule in found, (name, [str(p) for _, p in report.all_problems])
    problem = found[rule]
    assert problem.where and problem.fix and "Traceback" not in str(problem)
    page = report_html(report)  # the dataset step draws it
    assert rule in page and "Traceback" not in page
    # Errors block the step's Next (preflight); warnings let it through
    blocking = dict(preflight_problems(spec)).get("data.source", "")
    assert (rule in blocking) == (problem.severity == "error"), (name, blocking)


def test_a_separate_validation_file_replaces_the_split(tiny_spec, tmp_path):
    from training.data.load import build_datasets
    from training.spec import SpecError

    train = write(tmp_path / "train.jsonl", SAMPLES["chat"][1])
    held = write(tmp_path / "held.csv", [{"prompt": "What is 100+1?", "completion": "101."}])
    spec = spec_for_source(train, base=tiny_spec).with_overrides({"data.validation_source": held})
    train_set, validation_set = build_datasets(spec.data, seed=1)
    assert len(train_set) == 8 and len(validation_set) == 1
    assert validation_set[0]["completion"][0]["content"] == "101."
    with pytest.raises(SpecError, match="Choose one: set the split to 0"):
        spec.with_overrides({"data.validation_split": 0.1})
    with pytest.raises(SpecError, match="split:NAME needs a Hub dataset"):
        spec.with_overrides({"data.validation_source": "split:validation"})
    broken = spec.with_overrides({"data.validation_source": write(tmp_path / "bad.jsonl", [{"foo": 1}])})
    assert "[format.unknown]" in dict(preflight_problems(broken))["data.validation_source"]
