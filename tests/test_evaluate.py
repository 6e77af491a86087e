"""Evaluation: base vs tuned on held-out rows, the task metrics, and the report a finished job keeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_labels_are_read_from_free_text_answers():
    from training.evaluate import OTHER_LABEL, predicted_label

    labels = ["negative", "positive", "very positive"]
    assert predicted_label("Positive.", labels) == "positive"
    assert predicted_label("I'd say this is very positive overall", labels) == "very positive"
    assert predicted_label("The answer: negative", labels) == "negative"
    assert predicted_label("I cannot tell", labels) == OTHER_LABEL


def test_task_scores_match_hand_counts():
    from training.evaluate import task_scores, token_f1

    scores, confusion = task_scores(
        "classification",
        ["positive", "negative", "negative"],
        ["positive", "positive", "negative"],
        ["negative", "positive"],
    )
    assert scores == {"accuracy": pytest.approx(2 / 3)}
    assert confusion == {"positive": {"positive": 1, "negative": 1}, "negative": {"negative": 1}}
    qa, _ = task_scores("qa", ["The Eiffel Tower", "in 1889"], ["Eiffel tower", "1887"], [])
    assert qa["exact_match"] == 0.5 and qa["f1"] == pytest.approx(0.5 * (1 + 0))
    assert token_f1("Paris in France", "Paris") == pytest.approx(0.5)
    rouge, _ = task_scores("summarization", ["the cat sat on the mat"], ["a cat sat on a mat"], [])
    assert rouge["rouge_l"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def trained_job(tmp_path_factory, tiny_model_dir):
    """A tiny job trained through the engine, which evaluates it when training ends."""
    from training.engine import run_job
    from training.spec import JobSpec

    spec = JobSpec().with_overrides(
        {
            "name": "evaluated",
            "model.name_or_path": str(tiny_model_dir),
            "data.validation_split": 0.2,
            "hyperparameters.max_steps": 12,
            "hyperparameters.batch_size": 4,
            "hyperparameters.learning_rate": 2e-3,
            "hyperparameters.precision": "fp32",
        }
    )
    job_dir = tmp_path_factory.mktemp("evaluated") / "job"
    job_dir.mkdir()
    (job_dir / "spec.yaml").write_text(spec.to_yaml())  # as the JobManager writes it before the worker starts
    events = []
    run_job(spec, job_dir, events.append, lambda: False)
    return job_dir, events


def test_a_finished_job_is_evaluated_and_the_tuned_model_wins_on_held_out_rows(trained_job):
    job_dir, events = trained_job
    warnings = [e.message for e in events if e.type == "log" and e.level == "warning"]
    assert not warnings
    report = json.loads((job_dir / "eval.json").read_text())
    assert report["held_out"].startswith("rows of the validation split") and report["rows"] >= 10
    assert report["tuned"]["loss"] < report["base"]["loss"]
    assert report["tuned"]["perplexity"] < report["base"]["perplexity"]
    assert len(report["samples"]) == 3 and all(s["reference"] and s["prompt"] for s in report["samples"])
    assert any(e.type == "status" and e.phase == "evaluating" for e in events)
    summary = [e.message for e in events if e.type == "log" and e.message.startswith("evaluation on")]
    assert summary and "loss" in summary[0]
    assert events[-1].type == "finished"  # the job ends after its evaluation, not before
    card = (job_dir / "README.md").read_text()  # the job's model card carries the evaluation's numbers
    assert f"| tuned_loss | {report['tuned']['loss']:.4g} |" in card


def test_stop_ends_the_evaluation_between_rows(trained_job):
    from training.evaluate import EvaluationStopped, evaluate_job

    job_dir, _ = trained_job
    asked = []
    with pytest.raises(EvaluationStopped):
        evaluate_job(job_dir, max_rows=6, should_stop=lambda: asked.append(1) or len(asked) > 3)
    assert len(asked) == 4  # three rows scored, then the stop was seen before the fourth


def test_cli_eval_prints_the_table_and_refuses_a_reward_model(trained_job, tmp_path):
    job_dir, _ = trained_job
    (job_dir / "eval.json").unlink()
    done = subprocess.run(
        [sys.executable, "app.py", "eval", str(job_dir), "--rows", "6", "--samples", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "perplexity" in done.stdout and "expected:" in done.stdout
    assert json.loads((job_dir / "eval.json").read_text())["rows"] == 6

    from training.evaluate import evaluate_job
    from training.spec import load_spec

    reward = tmp_path / "reward"
    reward.mkdir()
    spec = load_spec(job_dir / "spec.yaml").with_overrides(
        {"method.objective": "reward", "data.source": "demo:preferences", "data.validation_split": 0.0}
    )
    (reward / "spec.yaml").write_text(spec.to_yaml())
    with pytest.raises(UserError, match="app.py score"):
        evaluate_job(reward)
