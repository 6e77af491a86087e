"""GRPO's no-code rewards: each function scores what it says, bad choices are refused naming the field,
prompt-only data loads from any chat-like file, and the run view folds the reward curves and samples."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from training.data.load import load_rows
from training.errors import UserError
from training.reward_spec import FORMAT_PRESETS
from training.rewards import (
    Judge,
    RewardLog,
    build_rewards,
    final_number,
    format_score,
    json_schema_score,
    length_score,
    match_score,
)
from training.spec import DataSection, JobSpec, parse_spec


def grpo_spec(**overrides) -> JobSpec:
    base = {"method.objective": "grpo", "data.source": "demo:arithmetic", "hyperparameters.batch_size": 8}
    base["method.rewards"] = [{"kind": "match", "column": "answer"}, {"kind": "format", "preset": "only_number"}]
    return JobSpec().with_overrides(base | overrides)


# ---- the functions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("#### 42", 42.0),
        ("so the total is \\boxed{42}.", 42.0),
        ("3 + 4 = 7", 7.0),
        ("It costs 1,234 dollars", 1234.0),
        ("about -2.5 degrees", -2.5),
        ("first 3, then \\boxed{9}, not 12", 9.0),
        ("no number here", None),
    ],
)
def test_final_number_reads_the_answer_a_text_gives(text, number):
    assert final_number(text) == number


def test_match_compares_numbers_as_numbers_and_text_normalised():
    assert match_score("The answer is 42.0", "#### 42") == 1.0
    assert match_score("\\boxed{42}", "42") == 1.0
    assert match_score("41", "42") == 0.0
    assert match_score("nothing", "42") == 0.0
    assert match_score("The Paris!", "paris", "normalised") == 1.0
    assert match_score("Paris", "paris", "exact") == 0.0
    assert match_score("Paris", "Paris", "number") == 1.0  # a reference that is no number compares as text


def test_the_ready_made_formats_accept_and_refuse_what_they_name():
    assert format_score(" 42\n", FORMAT_PRESETS["only_number"]) == 1.0
    assert format_score("It is 42", FORMAT_PRESETS["only_number"]) == 0.0
    assert format_score('{"a": 1}', FORMAT_PRESETS["json_object"]) == 1.0
    assert format_score("[1]", FORMAT_PRESETS["json_object"]) == 0.0
    assert format_score("think...\n<answer>7</answer>", FORMAT_PRESETS["answer_tags"]) == 1.0
    assert format_score("<answer></answer>", FORMAT_PRESETS["answer_tags"]) == 0.0
    assert format_score("It is done.", FORMAT_PRESETS["ends_with_sentence"]) == 1.0
    assert format_score("It is done and", FORMAT_PRESETS["ends_with_sentence"]) == 0.0


def test_length_peaks_at_the_target_and_falls_with_distance():
    assert length_score("one two three", 3) == 1.0
    assert length_score("one two three four five six", 3) == 0.5
    assert length_score("one", 3) < length_score("one two", 3) < 1.0


def test_json_schema_scores_only_json_that_fits():
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert json_schema_score('{"name": "Ada"}', schema) == 1.0
    assert json_schema_score('```json\n{"name": "Ada"}\n```', schema) == 1.0
    assert json_schema_score('{"name": 3}', schema) == 0.0
    assert json_schema_score("name: Ada", schema) == 0.0


def test_rewards_are_called_as_trl_calls_them_and_remember_their_batch():
    spec = grpo_spec()
    rewards, log = build_rewards(spec.method.rewards)
    assert [r.__name__ for r in rewards] == ["match_answer", "format_only_number"]
    prompts = [[{"role": "user", "content": "2+2?"}]] * 3
    completions = [[{"role": "assistant", "content": text}] for text in ("4", "It is 4", "5 apples")]
    assert rewards[0](prompts=prompts, completions=completions, answer=["4"] * 3) == [1.0, 1.0, 0.0]
    assert rewards[1](prompts=prompts, completions=completions, answer=["4"] * 3) == [1.0, 0.0, 0.0]
    best, middle, worst = log.samples()
    assert (
        best["completion"] == "4"
        and best["total"] == 2.0
        and best["rewards"]
        == {
            "match_answer": 1.0,
            "format_only_number": 1.0,
        }
    )
    assert (
        middle["total"] == 1.0
        and worst["completion"] == "5 apples"
        and worst["total"] == 0.0
        and best["prompt"] == "2+2?"
    )


def test_samples_wait_until_every_reward_scored_the_batch():
    log = RewardLog({"a": 1.0, "b": 1.0})
    log.record("a", ["p"], ["x"], [1.0])
    assert log.samples() == []
    log.record("b", ["p"], ["x"], [0.5])
    assert log.samples()[0]["total"] == 1.5


# ---- the spec refuses bad choices, naming the field -----------------------------------------------


def problems_of(data: dict) -> str:
    with pytest.raises(UserError) as error:
        parse_spec(data)
    return str(error.value)


def test_bad_reward_choices_are_refused_naming_the_field():
    text = problems_of(
        {
            "method": {
                "objective": "grpo",
                "rewards": [
                    {"kind": "format", "pattern": "(unclosed"},
                    {"kind": "judge", "rubric": "be kind"},
                    {"kind": "length", "column": "answer", "target_words": 5},
                    {"kind": "json_schema", "json_schema": {"type": "not-a-type"}},
                    {"kind": "judge", "url": "http://x", "rubric": "r", "api_key_env": "sk-abc def"},
                ],
            }
        }
    )
    assert "method.rewards.0: pattern is not a valid regular expression" in text
    assert "method.rewards.1: a judge reward needs url" in text
    assert "method.rewards.2: column does not apply to a length reward" in text
    assert "method.rewards.3: json_schema is not a valid JSON Schema" in text
    assert "method.rewards.4.api_key_env" in text


def test_a_grpo_job_needs_rewards_and_a_batch_its_generations_divide():
    text = problems_of({"method": {"objective": "grpo", "grpo_generations": 4}, "hyperparameters": {"batch_size": 6}})
    assert "method.rewards: a grpo job needs at least one reward" in text
    assert "method.grpo_generations: 4 answers per prompt must divide the answers per step" in text
    assert grpo_spec().method.grpo_generations == 4  # batch 8 is fine


# ---- prompt-only data -----------------------------------------------------------------------------


def test_grpo_reads_prompts_and_reference_columns_from_any_chat_like_file(tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "4"},
                ],
                "level": 1,
            }
        )
        + "\n"
    )
    (row,) = load_rows(DataSection(source=str(chat)), "grpo")
    assert row == {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "reference": "4",
        "level": "1",
    }
    first = load_rows(DataSection(source="demo:arithmetic"), "grpo")[0]
    assert first["prompt"][0]["role"] == "user" and first["answer"].isdigit()
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text(json.dumps({"instruction": "Add.", "input": "2 and 2", "output": "4"}) + "\n")
    (row,) = load_rows(DataSection(source=str(alpaca)), "grpo")
    assert row["prompt"][0]["content"] == "Add.\n\n2 and 2" and row["output"] == "4"


def test_rows_without_a_prompt_are_named_by_line(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps({"prompt": "ok", "answer": "1"}) + "\n" + json.dumps({"answer": "2"}) + "\n")
    with pytest.raises(UserError, match=r"\[prompt.missing\] line 2"):
        load_rows(DataSection(source=str(source)), "grpo")


def test_an_unknown_column_and_a_job_that_is_no_reward_model_are_refused_at_the_check(tmp_path, tiny_model_dir):
    from training.data.check import check_data
    from training.preflight import preflight_problems

    sft_job = tmp_path / "sft-job"
    sft_job.mkdir()
    (sft_job / "spec.yaml").write_text(JobSpec().to_yaml())
    spec = grpo_spec(
        **{
            "model.name_or_path": str(tiny_model_dir),
            "method.rewards": [{"kind": "match", "column": "solution"}, {"kind": "reward_model", "job": str(sft_job)}],
        }
    )
    problems = dict(preflight_problems(spec))
    assert (
        "no column 'solution'" in problems["method.rewards.0.column"]
        and "answer" in problems["method.rewards.0.column"]
    )
    assert "is a sft job, not a reward model" in problems["method.rewards.1.job"]
    report = check_data(spec)
    assert not report.usable
    assert any("method.rewards.0.column" in str(p) for _, p in report.errors)
    missing = grpo_spec(**{"method.rewards": [{"kind": "reward_model", "job": str(tmp_path / "nowhere")}]})
    assert "not a Lathe job folder" in dict(preflight_problems(missing))["method.rewards.0.job"]


def test_a_judge_key_variable_that_is_not_set_is_refused(monkeypatch):
    from training.preflight import preflight_problems

    monkeypatch.delenv("LATHE_TEST_JUDGE_KEY", raising=False)
    judge = {"kind": "judge", "url": "http://127.0.0.1:9/v1", "rubric": "r", "api_key_env": "LATHE_TEST_JUDGE_KEY"}
    problems = dict(preflight_problems(grpo_spec(**{"method.rewards": [judge]})))
    assert "LATHE_TEST_JUDGE_KEY is not set" in problems["method.rewards.0.api_key_env"]


# ---- the judge, against a local OpenAI-compatible server -----------------------------------------


class FakeJudge(BaseHTTPRequestHandler):
    """Grades 9 when the answer holds a digit, else 2; remembers every request it got."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        answer = body["messages"][-1]["content"].rpartition("Answer:")[2]
        grade = "9" if any(ch.isdigit() for ch in answer) else "2"
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": grade}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    FakeJudge.requests = []
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_the_judge_grades_through_an_openai_compatible_endpoint_with_the_key_from_the_environment(
    judge_url, monkeypatch
):
    key = "judge" + "-secret-value"
    monkeypatch.setenv("LATHE_TEST_JUDGE_KEY", key)
    judge = Judge(judge_url, "Gives a number.", model="grader", api_key_env="LATHE_TEST_JUDGE_KEY")
    assert judge.grade("2+2?", "4") == 0.9 and judge.grade("2+2?", "four") == 0.2
    request = FakeJudge.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == f"Bearer {key}"
    assert request["body"]["model"] == "grader" and "Gives a number." in request["body"]["messages"][-1]["content"]
    with pytest.raises(UserError) as error:
        Judge("http://127.0.0.1:9/v1", "r", api_key_env="LATHE_TEST_JUDGE_KEY").grade("p", "a")
    assert "could not be reached" in str(error.value) and key not in str(error.value)


# ---- the run view ---------------------------------------------------------------------------------


def test_grpo_progress_and_samples_fold_into_the_snapshot_and_the_plots():
    from training.jobs import JobSnapshot, apply_event
    from wizard.monitor import grpo_views, length_frame, reward_frame, samples_html, spread_frame

    snapshot = JobSnapshot(job_id="g", job_dir="/tmp/g")
    assert grpo_views(snapshot)[0].visible is False  # other objectives show no reward curves
    for step, reward in ((1, 0.2), (2, 0.6)):
        record = {"type": "progress", "step": step, "total_steps": 2, "epoch": 0.1, "loss": 0.0}
        record |= {"reward_mean": reward, "reward_std": 0.3, "kl": 0.01, "completion_length": 12.0}
        record["rewards_by_function"] = {"match_answer": reward / 2, "format_only_number": reward}
        snapshot = apply_event(snapshot, record)
    sample = {"prompt": "2+2?", "completion": "<b>4</b>", "rewards": {"match_answer": 1.0}, "total": 1.0}
    snapshot = apply_event(snapshot, {"type": "samples", "step": 2, "samples": [sample]})
    assert snapshot.reward_mean == ((1, 0.2), (2, 0.6)) and snapshot.kl == ((1, 0.01), (2, 0.01))
    frame = reward_frame(snapshot)
    assert set(frame["reward"]) == {"total (weighted)", "match_answer", "format_only_number"} and len(frame) == 6
    assert len(spread_frame(snapshot)) == 4 and list(length_frame(snapshot)["answer_tokens"]) == [12.0, 12.0]
    shown = samples_html(snapshot)
    assert "2+2?" in shown and "&lt;b&gt;4&lt;/b&gt;" in shown and "match_answer 1.00" in shown
    assert grpo_views(snapshot)[0].visible is True


# ---- the estimate -----------------------------------------------------------------------------------


def test_the_gpu_preview_counts_generation_the_reference_model_and_the_time_to_write(tiny_model_dir):
    from training.estimate import Device, estimate_memory, preview_job
    from training.sizes import ModelShape

    shape = ModelShape.from_config(
        {
            "vocab_size": 128256,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
        }
    )
    gpu = Device("cuda", "NVIDIA H100", 80.0, True)
    short = grpo_spec(**{"method.grpo_max_completion_length": 64})
    long = grpo_spec(**{"method.grpo_max_completion_length": 1024})
    kv = [estimate_memory(s, shape, gpu, tokens_per_row=100).generation for s in (short, long)]
    # keys and values, 32 layers x 8 heads x 128 dims, bf16, for the 8 answers of a step
    assert kv[0] == pytest.approx(8 * (100 + 64) * 32 * 2 * 8 * 128 * 2)
    assert kv[1] / kv[0] == pytest.approx((100 + 1024) / (100 + 64))
    lora_kl = estimate_memory(short.with_overrides({"method.grpo_beta": 0.04}), shape, gpu, tokens_per_row=100)
    full_kl = estimate_memory(
        short.with_overrides({"method.grpo_beta": 0.04, "method.type": "full"}), shape, gpu, tokens_per_row=100
    )
    assert lora_kl.generation == kv[0]  # LoRA's reference is the base with the adapter off: no copy
    assert full_kl.generation - kv[0] == pytest.approx(shape.parameters() * 2)
    assert "generation (KV cache" in "\n".join(full_kl.lines())

    tiny = grpo_spec(**{"model.name_or_path": str(tiny_model_dir), "hyperparameters.max_steps": 10})
    (preview,) = preview_job(tiny, devices=[gpu])
    assert 0 < preview.generation_seconds < preview.seconds
    (longer,) = preview_job(tiny.with_overrides({"method.grpo_max_completion_length": 640}), devices=[gpu])
    assert longer.generation_seconds == pytest.approx(10 * preview.generation_seconds)
    assert any("writing answers" in line for line in preview.lines())
