"""GRPO, ORPO and CPO/SimPO train for real: the judge and a finished reward-model job score the answers
GRPO writes, a GRPO job stops, resumes, shows its curves, evaluates and exports like any job, the
preference objectives' loss falls, and (slow) the demo's mean reward rises on the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import wait_for
from test_rewards import FakeJudge, judge_url  # noqa: F401 - the fixture is used by name

from training.engine import run_job
from training.events import Progress, Samples
from training.spec import JobSpec

pytestmark = pytest.mark.trains  # trains a small model in a worker or in-process: left out of test-fast


def tiny_grpo(tiny_model_dir, rewards: list[dict], **overrides) -> JobSpec:
    settings = {
        "name": "tiny-grpo",
        "model.name_or_path": str(tiny_model_dir),
        "data.source": "demo:arithmetic",
        "data.max_rows": 24,
        "method.objective": "grpo",
        "method.rewards": rewards,
        "method.grpo_generations": 2,
        "method.grpo_max_completion_length": 6,
        "hyperparameters.batch_size": 4,
        "hyperparameters.max_steps": 2,
        "hyperparameters.precision": "fp32",
        "hyperparameters.save_steps": 1000,
        "output.evaluate": False,
    }
    return JobSpec().with_overrides(settings | overrides)


def run(spec: JobSpec, job_dir: Path) -> list:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "spec.yaml").write_text(spec.to_yaml())
    events: list = []
    run_job(spec, job_dir, events.append, lambda: False)
    return events


def test_grpo_learns_from_a_local_openai_compatible_judge(tiny_model_dir, judge_url, tmp_path):  # noqa: F811
    spec = tiny_grpo(tiny_model_dir, [{"kind": "judge", "url": judge_url, "rubric": "Gives a number.", "weight": 2}])
    events = run(spec, tmp_path / "job")
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == [1, 2]
    # Every answer of both steps went to the judge (2 steps x 4 answers), with the prompt and the rubric
    assert len(FakeJudge.requests) == 8
    asked = FakeJudge.requests[0]["body"]["messages"][-1]["content"]
    assert "Rubric: Gives a number." in asked and "Answer with only the number." in asked
    for p in progress:
        judged = p.rewards_by_function["judge_llm"]
        # The judge grades 9 or 2 out of 10: the mean of four answers is one of five values
        assert any(judged == pytest.approx(0.2 + 0.7 * k / 4) for k in range(5)), judged
        assert p.reward_mean == pytest.approx(2 * judged)  # the weight counts in the total
        assert p.completion_length is not None and p.reward_std is not None
    samples = [e for e in events if isinstance(e, Samples)]
    assert samples and all(s["rewards"]["judge_llm"] in (0.2, 0.9) for s in samples[-1].samples)
    assert (tmp_path / "job" / "adapter" / "adapter_config.json").is_file()


def test_a_finished_reward_model_job_scores_the_answers(tiny_model_dir, tmp_path):
    from training.scoring import RewardScorer

    reward_spec = JobSpec().with_overrides(
        {
            "name": "tiny-reward",
            "model.name_or_path": str(tiny_model_dir),
            "data.source": "demo:preferences",
            "method.objective": "reward",
            "hyperparameters.max_steps": 2,
            "hyperparameters.batch_size": 2,
            "hyperparameters.precision": "fp32",
        }
    )
    reward_dir = tmp_path / "reward-job"
    run(reward_spec, reward_dir)
    spec = tiny_grpo(tiny_model_dir, [{"kind": "reward_model", "job": str(reward_dir)}])
    events = run(spec, tmp_path / "grpo-job")
    name = "reward_model_reward_job"
    assert all(name in p.rewards_by_function for p in events if isinstance(p, Progress))
    # The scores are the reward model's own: scoring a sample again gives the same number
    scorer = RewardScorer(reward_dir)
    sample = [e for e in events if isinstance(e, Samples)][-1].samples[0]
    assert sample["rewards"][name] == pytest.approx(scorer.score(sample["prompt"], sample["completion"]), abs=1e-4)
    assert scorer.score_many(["2+2?", "2+2?"], ["4", "a long answer"]) == pytest.approx(
        [scorer.score("2+2?", "4"), scorer.score("2+2?", "a long answer")], abs=1e-4
    )


@pytest.mark.parametrize(("objective", "loss"), [("orpo", "sigmoid"), ("cpo", "simpo"), ("cpo", "sigmoid")])
def test_orpo_and_cpo_simpo_train_on_the_bundled_pairs_with_a_falling_loss(objective, loss, tiny_model_dir, tmp_path):
    spec = JobSpec().with_overrides(
        {
            "name": f"tiny-{objective}",
            "model.name_or_path": str(tiny_model_dir),
            "data.source": "demo:preferences",
            "method.objective": objective,
            "method.preference_loss": loss,
            "method.dpo_beta": 2.0 if loss == "simpo" else 0.1,  # SimPO's paper uses a beta of 2-2.5
            "method.type": "full",
            "hyperparameters.context_length": 128,
            "hyperparameters.max_steps": 10,
            "hyperparameters.batch_size": 4,
            "hyperparameters.learning_rate": 1e-2,
            "hyperparameters.warmup_ratio": 0.0,
            "hyperparameters.precision": "fp32",
            "hyperparameters.save_steps": 1000,
            "output.evaluate": False,
        }
    )
    events = run(spec, tmp_path / "job")
    losses = [e.loss for e in events if isinstance(e, Progress)]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < 0.95 * sum(losses[:3]) / 3, losses
    assert (tmp_path / "job" / "model" / "config.json").is_file()
    assert "no TRL command line" in (tmp_path / "job" / "reproduce.md").read_text()


def test_a_grpo_job_stops_resumes_shows_its_curves_evaluates_and_exports(tiny_model_dir, tmp_path):
    from training.chat import ChatSession
    from training.export import export_adapter
    from training.jobs import JobManager
    from wizard.monitor import render, reward_frame
    from wizard.results import evaluation_markdown

    spec = tiny_grpo(
        tiny_model_dir,
        [{"kind": "format", "preset": "only_number"}, {"kind": "length", "target_words": 2, "weight": 0.5}],
        **{
            "hyperparameters.max_steps": 4,
            "hyperparameters.save_steps": 1,
            "data.max_rows": 40,  # a split needs 40 rows (training/data/load.py)
            "data.validation_split": 0.15,
            "output.evaluate": True,
        },
    )
    manager = JobManager(tmp_path / "jobs")
    job_id = manager.start(spec)
    assert wait_for(lambda: manager.snapshot(job_id).step >= 1, timeout=300)
    manager.stop(job_id)
    stopped = manager.wait(job_id, timeout=120)
    assert stopped.state == "stopped" and stopped.step < 4, (stopped.state, stopped.message)
    job_dir = Path(stopped.job_dir)
    assert list((job_dir / "checkpoints").glob("checkpoint-*"))
    manager.resume(job_id)
    done = manager.wait(job_id, timeout=600)
    assert done.state == "completed", done.message
    logs = "\n".join(done.logs)
    assert f"resuming from checkpoint-{stopped.step}" in logs
    assert [step for step, _ in done.reward_mean] == [1, 2, 3, 4]
    assert {name for _, name, _ in done.rewards_by_function} == {"format_only_number", "length_2w"}
    assert done.samples and "completion" in done.samples[0]

    view = render(manager, job_id)
    reward_plot, spread_plot, length_plot, samples = view[6:10]
    assert reward_plot.visible and spread_plot.visible and length_plot.visible
    assert len(reward_frame(done)) == 12  # the total and 2 rewards, 4 steps each
    assert "Answers the model just wrote" in samples

    report = json.loads((job_dir / "eval.json").read_text())
    assert report["task"] == "rewards" and report["rows"] == 6
    assert {"reward", "reward format_only_number", "reward length_2w"} <= set(report["tuned"])
    assert "| reward |" in evaluation_markdown(job_dir)
    exported = export_adapter(job_dir, tmp_path / "export")
    assert (exported / "adapter_model.safetensors").is_file()
    assert isinstance(ChatSession(job_dir).reply([{"role": "user", "content": "2+2?"}]), str)


@pytest.mark.slow
def test_the_grpo_demo_raises_the_mean_reward_on_the_embedded_model(embedded_model_dir, tmp_path):
    """The bundled preset, shortened: the mean reward of the last steps beats the first steps'."""
    from training.spec import load_spec

    spec = load_spec(Path(__file__).parents[1] / "presets" / "jobs" / "grpo-demo.yaml").with_overrides(
        {"hyperparameters.max_steps": 12, "hyperparameters.save_steps": 1000, "output.evaluate": False}
    )
    events = run(spec, tmp_path / "demo")
    rewards = [e.reward_mean for e in events if isinstance(e, Progress)]
    assert len(rewards) == 12
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first, rewards
