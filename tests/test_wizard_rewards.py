"""Step 3's GRPO inputs: rewards picked without code become the spec's `method.rewards`, a loaded GRPO spec
fills them back exactly, and a bad choice is a problem under the rewards, never a silent change."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from training.spec import load_spec
from wizard import rewards_form
from wizard.form import SpecForm
from wizard.steps import hyperparameters

GRPO_DEMO = Path(__file__).parents[1] / "presets" / "jobs" / "grpo-demo.yaml"


def step_three(base) -> SpecForm:
    with gr.Blocks():
        form = SpecForm(base)
        form.field("method.objective")
        hyperparameters.build(form)
    return form


def with_inputs(form: SpecForm, values: list, **changed) -> list:
    keys = list(form.components)
    values = list(values)
    for key, value in changed.items():
        values[keys.index(key)] = value
    return values


def test_a_loaded_grpo_spec_fills_the_reward_inputs_and_builds_the_same_spec():
    demo = load_spec(GRPO_DEMO)
    form = step_three(demo)
    rebuilt, problems = form.build(form.values_for(demo))
    assert problems == []
    assert rebuilt.method.rewards == demo.method.rewards
    assert rebuilt.method.grpo_generations == demo.method.grpo_generations == 4
    assert rebuilt.to_yaml() == demo.to_yaml()


def test_picked_rewards_become_the_spec_and_zero_weight_leaves_one_out():
    demo = load_spec(GRPO_DEMO)
    form = step_three(demo)
    values = with_inputs(
        form,
        form.values_for(demo),
        reward_length_weight=0,  # not used
        reward_format_preset=rewards_form.OWN_PATTERN,
        reward_format_pattern=r"\s*\d+\s*",
        reward_judge_weight=2,
        reward_judge_url="http://127.0.0.1:8000/v1",
        reward_judge_rubric="Gives the right number.",
        reward_json_schema_weight=0.5,
        reward_json_schema='{"type": "object", "required": ["answer"]}',
    )
    spec, problems = form.build(values)
    assert problems == []
    by_kind = {reward.kind: reward for reward in spec.method.rewards}
    assert set(by_kind) == {"match", "format", "judge", "json_schema"}
    assert by_kind["format"].pattern == r"\s*\d+\s*" and by_kind["format"].preset is None
    assert by_kind["judge"].weight == 2 and by_kind["judge"].rubric == "Gives the right number."
    assert by_kind["json_schema"].json_schema == {"type": "object", "required": ["answer"]}


def test_a_bad_reward_is_a_problem_under_the_rewards_and_other_objectives_train_without_any():
    demo = load_spec(GRPO_DEMO)
    form = step_three(demo)
    bad = with_inputs(
        form, form.values_for(demo), reward_format_preset=rewards_form.OWN_PATTERN, reward_format_pattern="(unclosed"
    )
    spec, problems = form.build(bad)
    assert spec is None
    ((path, message),) = problems
    assert path == rewards_form.WEIGHT["format"] and "regular expression" in message  # under the format reward
    updates = form.show_problems(problems, hyperparameters.PATHS)
    assert updates[hyperparameters.PATHS.index(path)]["info"].startswith("⚠")

    no_rewards = with_inputs(form, form.values_for(demo), **{key: 0 for key in rewards_form.WEIGHT.values()})
    spec, problems = form.build(no_rewards)
    assert spec is None and any("at least one reward" in message for _, message in problems)

    sft = demo.with_overrides({"method.objective": "sft", "method.rewards": [], "data.source": "demo:identity"})
    form = step_three(sft)
    spec, problems = form.build(form.values_for(sft))
    assert problems == [] and spec.method.rewards == []  # the ready-made weights wait for a switch to GRPO
    switched, problems = form.build(with_inputs(form, form.values_for(sft), **{"method.objective": "grpo"}))
    assert {reward.kind for reward in switched.method.rewards} == set(rewards_form.DEFAULT_WEIGHTS)


def test_two_rewards_of_one_kind_are_named_when_a_spec_is_loaded():
    demo = load_spec(GRPO_DEMO)
    twice = demo.with_overrides(
        {"method.rewards": [{"kind": "match", "column": "answer"}, {"kind": "match", "column": "other"}]}
    )
    assert "a second match reward" in step_three(twice).left_out_note(twice)
