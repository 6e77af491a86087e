"""Step 3's rewards for GRPO, picked without code: one row of inputs per kind of reward, each with a weight.

A weight of 0 leaves that reward out. The inputs become the spec's `method.rewards` list
(training/reward_spec.py declares each kind and checks its settings); a spec holding two rewards of
one kind cannot be shown here, and `left_out` says so instead of dropping one without a word.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from training.reward_spec import FORMAT_PRESET_HELP, RewardChoice
from training.spec import JobSpec

OWN_PATTERN = "pattern"  # the format dropdown's last choice: the person's own regular expression
WEIGHT = {
    kind: f"reward_{kind}_weight" for kind in ("match", "format", "length", "json_schema", "reward_model", "judge")
}
# Each kind's settings: the input's key, and the RewardChoice field it fills
SETTINGS = {
    "match": {"reward_match_column": "column", "reward_match_compare": "compare"},
    "format": {"reward_format_preset": "preset", "reward_format_pattern": "pattern"},
    "length": {"reward_length_words": "target_words"},
    "json_schema": {"reward_json_schema": "json_schema"},
    "reward_model": {"reward_model_job": "job"},
    "judge": {"reward_judge_url": "url", "reward_judge_model": "model", "reward_judge_rubric": "rubric"},
}
KEYS = [key for kind, weight in WEIGHT.items() for key in (weight, *SETTINGS[kind])]
# The rewards a new GRPO job starts with: the grpo demo's, right answer first
DEFAULT_WEIGHTS = {"match": 1.0, "format": 0.5}


def _help(field: str) -> str:
    return RewardChoice.model_fields[field].description.partition(": ")[2]


def build(form) -> None:
    """The reward inputs, registered on the form (SpecForm.extra) so every handler receives them."""
    gr.Markdown(
        "**Rewards** score each answer the model writes; it learns to write answers that score higher. "
        "Give a reward a weight to use it (0 = not used); the total is the weighted sum."
    )
    values = dict(zip(KEYS, reward_values(form.base), strict=True))

    def weight(kind: str, label: str):
        return form.extra(WEIGHT[kind], gr.Number(values[WEIGHT[kind]], label=label, info="Weight (0 = not used)."))

    def text(key: str, label: str, info: str, **options):
        return form.extra(key, gr.Textbox(values[key], label=label, info=info, **options))

    with gr.Row():
        weight("match", "Right answer")
        text("reward_match_column", "Reference column", _help("column"), placeholder="answer")
        form.extra(
            "reward_match_compare",
            gr.Dropdown(
                ["number", "normalised", "exact"],
                value=values["reward_match_compare"],
                label="Compare as",
                info=_help("compare"),
            ),
        )
    with gr.Row():
        weight("format", "Format")
        presets = [(f"{help_text.capitalize()}", name) for name, help_text in FORMAT_PRESET_HELP.items()]
        form.extra(
            "reward_format_preset",
            gr.Dropdown(
                [*presets, ("Your own pattern (below)", OWN_PATTERN)],
                value=values["reward_format_preset"],
                label="The answer is",
                info="A ready-made format, or your own regular expression.",
            ),
        )
        text("reward_format_pattern", "Your own pattern", _help("pattern"))
    with gr.Row():
        weight("length", "Length")
        form.extra(
            "reward_length_words",
            gr.Number(values["reward_length_words"], precision=0, label="Target words", info=_help("target_words")),
        )
        weight("json_schema", "JSON schema")
        text("reward_json_schema", "JSON Schema", _help("json_schema"), lines=2)
    with gr.Row():
        weight("reward_model", "Reward model")
        text("reward_model_job", "Reward job", _help("job"))
    with gr.Row():
        weight("judge", "LLM judge")
        text("reward_judge_url", "Judge URL", _help("url"))
        text("reward_judge_model", "Judge model", _help("model"))
        text("reward_judge_rubric", "Rubric", _help("rubric"), lines=2)


def rewards_from(fields: dict[str, Any], objective: str | None) -> list[dict[str, Any]]:
    """Pop the reward inputs from the form's fields; the spec's `method.rewards` list (empty unless the
    objective is GRPO, the only one that scores its own answers)."""
    rewards = []
    for kind, weight_key in WEIGHT.items():
        weight = fields.pop(weight_key, None) or 0
        settings = {field: fields.pop(key, None) for key, field in SETTINGS[kind].items()}
        if not weight:
            continue
        settings = {field: value for field, value in settings.items() if value not in (None, "")}
        if kind == "format":
            if settings.get("preset") == OWN_PATTERN:
                settings.pop("preset")
            else:
                settings.pop("pattern", None)
        if kind == "json_schema" and isinstance(settings.get("json_schema"), str):
            settings["json_schema"] = _json_or_text(settings["json_schema"])
        if kind == "length" and isinstance(settings.get("target_words"), float):
            settings["target_words"] = int(settings["target_words"])
        rewards.append({"kind": kind, "weight": weight, **settings})
    return rewards if objective == "grpo" else []


def _json_or_text(text: str) -> Any:
    """The schema as JSON; text that is not JSON goes on as it is, and the spec names the field's problem."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def reward_values(spec: JobSpec) -> list[Any]:
    """The reward inputs (in KEYS order) that describe the spec's rewards: the inverse of `rewards_from`."""
    chosen = {reward.kind: reward for reward in reversed(spec.method.rewards)}  # the first of a kind is shown
    if spec.method.objective != "grpo" and not spec.method.rewards:
        weights = dict(DEFAULT_WEIGHTS)  # ready for a switch to GRPO
    else:
        weights = {kind: reward.weight for kind, reward in chosen.items()}
    values = {}
    for kind, weight_key in WEIGHT.items():
        values[weight_key] = weights.get(kind, 0)
        reward = chosen.get(kind)
        for key, field in SETTINGS[kind].items():
            values[key] = getattr(reward, field) if reward else None
    values["reward_match_compare"] = values["reward_match_compare"] or "number"
    values["reward_format_preset"] = values["reward_format_preset"] or (
        OWN_PATTERN if values["reward_format_pattern"] else "only_number"
    )
    if values["reward_json_schema"] is not None:
        values["reward_json_schema"] = json.dumps(values["reward_json_schema"])
    return [values[key] for key in KEYS]


def left_out(spec: JobSpec) -> list[str]:
    """What of the spec's rewards these inputs cannot show (a second reward of one kind)."""
    kinds = [reward.kind for reward in spec.method.rewards]
    return [f"a second {kind} reward" for kind in sorted({k for k in kinds if kinds.count(k) > 1})]


def place_problems(problems: list[tuple[str, str]], rewards: list[dict] | None) -> list[tuple[str, str]]:
    """A problem with the N-th reward (`method.rewards.N`) goes to that reward's row of inputs."""
    placed = []
    for path, message in problems:
        index = path.removeprefix("method.rewards.")
        if rewards and index.isdigit() and int(index) < len(rewards):
            path = WEIGHT[rewards[int(index)]["kind"]]
        placed.append((path, message))
    return placed
