"""Preference data, DPO and reward models: rows are checked, jobs run end to end, and jobs chain."""

from __future__ import annotations

import json

import pytest

from training.chat import ChatSession
from training.data.load import load_rows
from training.data.preview import render_examples, summarize
from training.engine import run_job
from training.errors import UserError
from training.events import Finished, Progress
from training.jobs import JobSnapshot, apply_event
from training.models import starting_point
from training.preflight import preflight_problems
from training.presets import example_jobs
from training.spec import DataSection, JobSpec


def write_rows(path, rows) -> str:
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return str(path)


def test_preference_rows_take_text_or_messages(tmp_path):
    source = write_rows(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Well, as an AI..."},
            {
                "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
                "chosen": [{"role": "assistant", "content": "4."}],
                "rejected": [{"role": "assistant", "content": "It depends."}],
            },
        ],
    )
    first, second = load_rows(DataSection(source=source), "dpo")
    assert first == {
        "prompt": [{"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Well, as an AI..."}],
    }
    assert second["prompt"][0]["role"] == "system" and second["chosen"][0]["content"] == "4."


def test_an_implicit_prompt_is_the_shared_start_of_both_conversations(tmp_path):
    user = {"role": "user", "content": "Name a colour."}
    source = write_rows(
        tmp_path / "implicit.jsonl",
        [
            {
                "chosen": [user, {"role": "assistant", "content": "Blue."}],
                "rejected": [user, {"role": "assistant", "content": "I cannot say."}],
            }
        ],
    )
    (row,) = load_rows(DataSection(source=source), "reward")
    assert row["prompt"] == [user] and row["chosen"][0]["content"] == "Blue."


def test_every_bad_preference_row_is_named_by_line(tmp_path):
    source = write_rows(
        tmp_path / "bad.jsonl",
        [
            {"prompt": "ok", "chosen": "a", "rejected": "b"},
            {"prompt": "no rejected", "chosen": "a"},
            {"prompt": "same", "chosen": "a", "rejected": "a"},
            "{not json",
            {"prompt": "", "chosen": "a", "rejected": "b"},
            {"prompt": "x", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
        ],
    )
    with pytest.raises(UserError) as error:
        load_rows(DataSection(source=source), "dpo")
    text = str(error.value)
    assert "5 problem(s)" in text and "data.source" in text
    for expected in (
        "[row.missing_field] line 2",
        "[preference.same_answers] line 3",
        "[json.invalid] line 4",
        "[row.empty_value] line 5",
        "[preference.bad_answer] line 6",
    ):
        assert expected in text


def test_the_wrong_kind_of_rows_for_the_objective_says_which_objective_fits(tmp_path):
    dpo_on_chat_rows = JobSpec().with_overrides({"method.objective": "dpo", "data.mix_in": []})
    problems = dict(preflight_problems(dpo_on_chat_rows))
    assert "dpo needs preference rows" in problems["data.source"]
    sft_on_pairs = JobSpec().with_overrides({"data.source": "demo:preferences", "data.mix_in": []})
    assert (
        "Train on them with method.objective dpo, orpo, cpo or reward"
        in dict(preflight_problems(sft_on_pairs))["data.source"]
    )


def test_the_demo_has_80_distinct_pairs():
    rows = load_rows(DataSection(source="demo:preferences"), "dpo")
    assert len(rows) == 80
    assert len({row["prompt"][0]["content"] for row in rows}) == 80
    assert all(row["chosen"] != row["rejected"] for row in rows)


def test_preview_shows_both_answers_and_counts_both(embedded_model_dir):
    spec = example_jobs()["dpo-demo"].with_overrides({"model.name_or_path": str(embedded_model_dir)})
    example, row = render_examples(spec, count=1)[0], load_rows(spec.data, "dpo")[0]
    assert example.prompt.endswith("<|im_start|>assistant\n") and row["prompt"][0]["content"] in example.prompt
    assert example.completion == row["chosen"][0]["content"] + "<|im_end|>\n"
    assert example.rejected == row["rejected"][0]["content"] + "<|im_end|>\n"
    summary = summarize(spec)
    assert summary.train_rows == 72 and summary.validation_rows == 8  # the demo's 10% split
    assert summary.steps == 18  # one epoch of 72 rows at batch 4


def test_preference_curves_fold_into_the_snapshot():
    snapshot = JobSnapshot(job_id="j", job_dir="/j")
    for step, margin, accuracy in ((1, 0.01, 0.5), (2, 0.2, 0.75)):
        snapshot = apply_event(
            snapshot,
            {
                "type": "progress",
                "step": step,
                "total_steps": 2,
                "epoch": 1.0,
                "loss": 0.6,
                "reward_margin": margin,
                "reward_accuracy": accuracy,
            },
        )
    assert snapshot.reward_margin == ((1, 0.01), (2, 0.2)) and snapshot.reward_accuracy == ((1, 0.5), (2, 0.75))


@pytest.mark.slow
def test_dpo_demo_runs_end_to_end_and_its_margins_grow(embedded_model_dir, tmp_path):
    spec = example_jobs()["dpo-demo"].with_overrides(
        {
            "model.name_or_path": str(embedded_model_dir),
            "data.max_rows": 8,
            "data.validation_split": 0.0,
            "hyperparameters.max_steps": 6,
            "hyperparameters.learning_rate": 2e-4,
            "hyperparameters.batch_size": 4,
            "hyperparameters.context_length": 128,
            "output.evaluate": False,
        }
    )
    events = []
    run_job(spec, tmp_path, events.append, lambda: False)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [e.step for e in progress] == [1, 2, 3, 4, 5, 6]
    assert all(e.reward_margin is not None and e.reward_accuracy is not None for e in progress)
    assert progress[0].loss == pytest.approx(0.6931, abs=1e-3)  # log(2): policy equals reference at the start
    assert sum(e.reward_margin for e in progress[-2:]) > sum(e.reward_margin for e in progress[:2])
    assert next(e for e in events if isinstance(e, Finished)).output_dir.endswith("adapter")
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())  # as JobManager.start writes it
    session = ChatSession(tmp_path)  # a DPO adapter chats like any other
    assert session.reply([{"role": "user", "content": "What is 12 times 7?"}]).strip()


@pytest.mark.slow
def test_reward_demo_learns_to_score_the_better_answer_higher(embedded_model_dir, tmp_path):
    from training.scoring import RewardScorer

    spec = example_jobs()["reward-demo"].with_overrides(
        {
            "model.name_or_path": str(embedded_model_dir),
            "data.max_rows": 16,
            "data.validation_split": 0.0,
            "hyperparameters.max_steps": 8,
            "hyperparameters.batch_size": 4,
        }
    )
    events = []
    run_job(spec, tmp_path, events.append, lambda: False)
    progress = [e for e in events if isinstance(e, Progress)]
    assert all(e.reward_accuracy is not None for e in progress)
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())  # as JobManager.start writes it
    scorer = RewardScorer(tmp_path)
    rows = load_rows(DataSection(source="demo:preferences", max_rows=16), "reward")
    better = sum(
        scorer.score(row["prompt"][-1]["content"], row["chosen"][0]["content"])
        > scorer.score(row["prompt"][-1]["content"], row["rejected"][0]["content"])
        for row in rows
    )
    assert better >= 13, better  # of 16; an untrained head is a coin toss
    with pytest.raises(UserError, match="reward model"):
        ChatSession(tmp_path)


@pytest.mark.slow
def test_dpo_builds_on_a_finished_sft_job(tiny_spec, tmp_path):
    sft_dir, dpo_dir = tmp_path / "sft", tmp_path / "dpo"
    run_job(tiny_spec, sft_dir, lambda event: None, lambda: False)
    (sft_dir / "spec.yaml").write_text(tiny_spec.to_yaml())
    dpo = tiny_spec.with_overrides(
        {
            "method.objective": "dpo",
            "model.start_from_job": str(sft_dir),
            "data.source": "demo:preferences",
            "data.mix_in": [],
            "hyperparameters.max_steps": 2,
        }
    )
    reference, adapters = starting_point(dpo)
    assert reference == tiny_spec.model.name_or_path and adapters == [sft_dir / "adapter"]
    run_job(dpo, dpo_dir, lambda event: None, lambda: False)
    (dpo_dir / "spec.yaml").write_text(dpo.to_yaml())

    # The DPO job's "base" is the SFT model: its base answer is the SFT job's tuned answer
    question = [{"role": "user", "content": "Who are you?"}]
    sft_answer = ChatSession(sft_dir).reply(question)
    assert ChatSession(dpo_dir).reply(question, tuned=False) == sft_answer

    wrong_base = dpo.with_overrides({"model.name_or_path": "embedded:smollm2-135m-instruct"})
    with pytest.raises(UserError, match="Set model.name_or_path to"):
        starting_point(wrong_base)
    reward_dir = tmp_path / "reward"
    reward_dir.mkdir()
    (reward_dir / "spec.yaml").write_text(dpo.with_overrides({"method.objective": "reward"}).to_yaml())
    with pytest.raises(UserError, match="is a reward model"):
        starting_point(dpo.with_overrides({"model.start_from_job": str(reward_dir)}))
