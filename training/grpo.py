"""GRPO: the model answers each prompt several times, the picked rewards score the answers, and it
learns to write more like the answers that scored above their group's mean (TRL's GRPOTrainer).

Here: the spec -> GRPOConfig translator, the trainer with the spec's rewards, a callback that sends a
few scored answers to the run view, and the base-vs-tuned reward evaluation on held-out prompts.
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from training import jobdir
from training.events import Samples
from training.rewards import RewardLog, build_rewards
from training.spec import JobSpec

EVAL_ANSWER_TOKENS_CAP = 256


def to_grpo_config(spec: JobSpec, plan, output_dir: Path, gradient_checkpointing: bool, sharding=None):
    from training.engine import training_arguments

    method = spec.method
    arguments = training_arguments(spec, plan, output_dir, gradient_checkpointing, False, sharding)
    arguments.pop("max_length")  # GRPO bounds the answer it writes instead (max_completion_length)
    return GRPOConfig(
        **arguments,
        num_generations=method.grpo_generations,
        max_completion_length=method.grpo_max_completion_length,
        temperature=method.grpo_temperature,
        beta=method.grpo_beta,
        reward_weights=[reward.weight for reward in method.rewards],
        log_completions=False,  # the run view shows scored samples (SampleCallback); TRL's table prints to stdout
        shuffle_dataset=True,
    )


def build_grpo_trainer(
    spec: JobSpec,
    plan,
    model,
    tokenizer,
    train_data,
    callbacks,
    output_dir: Path,
    checkpointing: bool,
    peft_config,
    token: str | None = None,
):
    rewards, log = build_rewards(spec.method.rewards, token)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=to_grpo_config(spec, plan, output_dir, checkpointing),
        train_dataset=train_data,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.lathe_reward_log = log  # run_job hands it to SampleCallback
    return trainer


class SampleCallback(TrainerCallback):
    """After each logged step, a few of the answers just scored (best, middle, worst) go to the run view."""

    def __init__(self, log: RewardLog, emit):
        self.log, self.emit = log, emit

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "reward" in logs:
            samples = self.log.samples()
            if samples:
                self.emit(Samples(step=state.global_step, samples=samples))


def evaluate_rewards(
    session,
    spec: JobSpec,
    job_dir: Path,
    rows: list[dict],
    held_out: str,
    samples: int = 3,
    should_stop=None,
    token: str | None = None,
):
    """The base and the tuned model answer the held-out prompts (greedy); every reward scores both."""
    import json

    from training.chat import GenerationSettings
    from training.evaluate import EvalReport, _never, rows_until_stopped
    from training.rewards import prompt_text

    should_stop = should_stop or _never
    rewards, _ = build_rewards(spec.method.rewards, token)
    weights = {reward.__name__: reward.choice.weight for reward in rewards}
    report = EvalReport(job=job_dir.name, task="rewards", held_out=held_out, rows=len(rows))
    columns = {key: [row.get(key, "") for row in rows] for key in {k for row in rows for k in row if k != "prompt"}}
    prompts = [row["prompt"] for row in rows]
    settings = GenerationSettings(max_new_tokens=min(spec.method.grpo_max_completion_length, EVAL_ANSWER_TOKENS_CAP))
    answers = {}
    for side, tuned in (("base", False), ("tuned", True)):
        answers[side] = [
            session.reply(row["prompt"], tuned=tuned, settings=settings).strip()
            for row in rows_until_stopped(rows, should_stop)
        ]
        completions = [[{"role": "assistant", "content": answer}] for answer in answers[side]]
        scores = {reward.__name__: reward(prompts=prompts, completions=completions, **columns) for reward in rewards}
        means = {name: _mean(values) for name, values in scores.items()}
        getattr(report, side).update({"reward": sum(weights[n] * means[n] for n in means)})
        getattr(report, side).update({f"reward {name}": value for name, value in means.items()})
    reference_column = next((c for c in ("answer", "reference") if c in columns), None)
    report.samples = [
        {
            "prompt": prompt_text(row["prompt"]),
            "reference": str(row.get(reference_column, "")) if reference_column else "",
            "base": base,
            "tuned": tuned,
        }
        for row, base, tuned in zip(rows[:samples], answers["base"], answers["tuned"], strict=False)
    ]
    (job_dir / jobdir.EVALUATION).write_text(json.dumps(report.to_dict(), indent=1))
    return report


def _mean(values) -> float:
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else 0.0
