"""The rewards a person picks for GRPO, declared as data: each a kind, a weight and its own settings.

No code: a reward is chosen from a list (match a reference column, a format, a length, a JSON schema,
a finished reward-model job, an LLM judge). The spec validates each choice's shape here (a regex that
does not compile, a judge without a URL); what needs the data or the disk (an unknown column, a job
that is not a reward model) is checked before the job starts (`training/rewards.py`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

REWARD_KINDS = ("match", "format", "length", "json_schema", "reward_model", "judge")

# Ready-made format choices, by name: the regular expression the whole answer must match
FORMAT_PRESETS = {
    "only_number": r"\s*-?\d+(?:[.,]\d+)?\s*",
    "json_object": r"\s*\{.*\}\s*",
    "answer_tags": r"(?s).*<answer>.+?</answer>\s*",
    "ends_with_sentence": r"(?s).*[A-Za-z0-9)\"'][.!?][\"')]?\s*",
}
FORMAT_PRESET_HELP = {
    "only_number": "only a number",
    "json_object": "a JSON object",
    "answer_tags": "the answer inside <answer>...</answer> tags",
    "ends_with_sentence": "ends with a finished sentence",
}
# Which settings belong to which kind: a setting given to another kind is a mistake worth naming
KIND_SETTINGS = {
    "match": {"column", "compare"},
    "format": {"preset", "pattern"},
    "length": {"target_words"},
    "json_schema": {"json_schema"},
    "reward_model": {"job"},
    "judge": {"url", "model", "rubric", "api_key_env"},
}


class RewardChoice(BaseModel):
    """One reward function and its weight; the job's reward is the weighted sum of its rewards."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["match", "format", "length", "json_schema", "reward_model", "judge"] = Field(
        description="match: the answer equals a reference column; format: it matches a pattern; length: it is near "
        "a target length; json_schema: it is JSON that fits a schema; reward_model: a finished Lathe reward job "
        "scores it; judge: an LLM behind an OpenAI-compatible endpoint grades it against a rubric."
    )
    weight: float = Field(1.0, ge=-100.0, le=100.0, description="How much this reward counts in the total.")
    column: str | None = Field(None, description="match: the data column holding the right answer (default: answer).")
    compare: Literal["number", "normalised", "exact"] = Field(
        "number",
        description="match: number compares the final number as a number ('#### 42', \\boxed{42}, '42.0' all "
        "match 42); normalised ignores case, punctuation and articles; exact compares the stripped text.",
    )
    preset: Literal["only_number", "json_object", "answer_tags", "ends_with_sentence"] | None = Field(
        None, description="format: a ready-made pattern (only a number, a JSON object, <answer> tags, a sentence)."
    )
    pattern: str | None = Field(None, description="format: your own regular expression the whole answer must match.")
    target_words: int | None = Field(
        None, ge=1, le=10000, description="length: the answer length in words that earns the full reward."
    )
    json_schema: dict[str, Any] | None = Field(
        None, description="json_schema: the JSON Schema the answer must satisfy (an answer that is not JSON gets 0)."
    )
    job: str | None = Field(None, description="reward_model: the folder of a finished Lathe job with objective reward.")
    url: str | None = Field(
        None, description="judge: the base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1."
    )
    model: str | None = Field(None, description="judge: the model name the endpoint serves.")
    rubric: str | None = Field(
        None, description="judge: what a good answer does; the judge scores each answer from 0 to 10 against it."
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="judge: the name of the environment variable holding the API key (the key never goes here).",
    )

    @model_validator(mode="after")
    def _settings_fit_the_kind(self) -> RewardChoice:
        problems = []
        given = {name for name in KIND_SETTINGS_ALL if getattr(self, name) not in (None, "number")}
        for name in sorted(given - KIND_SETTINGS[self.kind]):
            problems.append(f"{name} does not apply to a {self.kind} reward. Remove it, or choose the kind it is for.")
        if self.kind == "format":
            if (self.preset is None) == (self.pattern is None):
                problems.append("a format reward needs either preset or pattern. Choose one.")
            elif self.pattern is not None:
                try:
                    re.compile(self.pattern)
                except re.error as error:
                    problems.append(f"pattern is not a valid regular expression ({error}). Fix the pattern.")
        if self.kind == "length" and self.target_words is None:
            problems.append("a length reward needs target_words, e.g. 50.")
        if self.kind == "json_schema":
            if not self.json_schema:
                problems.append('a json_schema reward needs json_schema, e.g. {type: object, required: ["name"]}.')
            else:
                problem = schema_problem(self.json_schema)
                if problem:
                    problems.append(f"json_schema is not a valid JSON Schema ({problem}). Fix the schema.")
        if self.kind == "reward_model" and not self.job:
            problems.append("a reward_model reward needs job: the folder of a finished reward job.")
        if self.kind == "judge":
            if not self.url or not re.match(r"^https?://", self.url):
                problems.append("a judge reward needs url: the endpoint's base URL starting with http:// or https://.")
            if not self.rubric:
                problems.append("a judge reward needs rubric: a sentence or two on what a good answer does.")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def name(self) -> str:
        """The name this reward is logged and plotted under."""
        detail = {
            "match": self.column or "answer",
            "format": self.preset or "pattern",
            "length": f"{self.target_words}w",
            "json_schema": "schema",
            "reward_model": (self.job or "").rstrip("/").rpartition("/")[2],
            "judge": "llm",
        }[self.kind]
        return re.sub(r"[^A-Za-z0-9_]+", "_", f"{self.kind}_{detail}").strip("_")

    @property
    def regex(self) -> str | None:
        return FORMAT_PRESETS[self.preset] if self.preset else self.pattern


KIND_SETTINGS_ALL = sorted(set().union(*KIND_SETTINGS.values()))


def schema_problem(schema: dict) -> str | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return error.message
    return None


def grpo_problems(spec) -> list[str]:
    """Cross-field rules of a GRPO job, each naming its field and the fix."""
    method, hp = spec.method, spec.hyperparameters
    if method.objective != "grpo":
        return []
    problems = []
    if not method.rewards:
        problems.append(
            "method.rewards: a grpo job needs at least one reward, e.g. [{kind: format, preset: only_number}]."
        )
    per_step = hp.batch_size * hp.gradient_accumulation * hp.devices
    if per_step % method.grpo_generations:
        problems.append(
            f"method.grpo_generations: {method.grpo_generations} answers per prompt must divide the answers per step "
            f"(batch size × gradient accumulation × devices = {per_step}). Set the batch size to a multiple of "
            f"{method.grpo_generations}."
        )
    names = [reward.name for reward in method.rewards]
    if len(set(names)) != len(names):
        problems.append("method.rewards: two rewards of the same kind and settings. Merge them into one weight.")
    return problems
