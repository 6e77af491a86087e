"""The reward functions a GRPO job picks from, each a plain tested function, and their TRL wrappers.

TRL's GRPOTrainer calls each reward as `reward(prompts=..., completions=..., **dataset_columns)` and
wants one float per completion; it weighs them with `GRPOConfig.reward_weights` and logs each under
the callable's `__name__`. `build_rewards(spec)` turns the spec's choices into such callables, which
also remember their last batch so the run view can show what the model wrote and what it earned.
"""

from __future__ import annotations

import json
import math
import os
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.errors import UserError
from training.reward_spec import RewardChoice

JUDGE_TIMEOUT_SECONDS = 60.0
SAMPLES_SHOWN = 3

# ---- the plain functions: text in, a score in [0, 1] out ----------------------------------------

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"


def final_number(text: str) -> float | None:
    """The answer a text gives as a number: a \\boxed{...} value, else what follows '####' (GSM8K's
    convention), else the last number in the text. '1,234' reads as 1234."""
    for pattern in (r"\\boxed\{\s*(" + _NUMBER + r")\s*\}", r"####\s*(" + _NUMBER + ")"):
        found = re.findall(pattern, text)
        if found:
            return _to_float(found[-1])
    numbers = re.findall(_NUMBER, text)
    return _to_float(numbers[-1]) if numbers else None


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def normalise_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def match_score(answer: str, reference: Any, compare: str = "number") -> float:
    """1.0 when the answer gives the reference answer, else 0.0."""
    reference = "" if reference is None else str(reference)
    if compare == "number":
        expected, given = final_number(reference), final_number(answer)
        if expected is None:  # a reference that is not a number is compared as text
            return float(normalise_text(answer) == normalise_text(reference))
        return float(given is not None and math.isclose(given, expected, rel_tol=1e-6, abs_tol=1e-9))
    if compare == "normalised":
        return float(normalise_text(answer) == normalise_text(reference))
    return float(answer.strip() == reference.strip())


def format_score(answer: str, regex: str) -> float:
    """1.0 when the whole answer matches the pattern (re.fullmatch), else 0.0."""
    return float(re.fullmatch(regex, answer, flags=re.DOTALL) is not None)


def length_score(answer: str, target_words: int) -> float:
    """1.0 at the target length in words, falling smoothly with the distance from it (0.5 at one target's
    distance): every answer earns something, so a group of answers always says which length is better."""
    words = len(answer.split())
    return target_words / (target_words + abs(words - target_words))


def json_schema_score(answer: str, schema: dict) -> float:
    """1.0 for JSON that satisfies the schema, 0.0 for anything else (a ```json fence is allowed)."""
    from jsonschema import Draft202012Validator

    text = answer.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except (json.JSONDecodeError, ValueError):
        return 0.0
    return float(Draft202012Validator(schema).is_valid(value))


JUDGE_INSTRUCTIONS = (
    "You grade an answer to a prompt against a rubric. Reply with one whole number from 0 (fails the rubric) "
    "to 10 (fully meets it), and nothing else."
)


def judge_score(reply: str) -> float | None:
    """The judge's 0-10 grade as a score in [0, 1]; None when the reply holds no grade."""
    found = re.search(r"\d+(?:\.\d+)?", reply)
    if not found:
        return None
    return min(max(float(found.group()) / 10.0, 0.0), 1.0)


class Judge:
    """An LLM behind an OpenAI-compatible /chat/completions endpoint grades answers against a rubric.
    The key comes from the environment variable the spec names, and goes only into the request header."""

    def __init__(self, url: str, rubric: str, model: str | None = None, api_key_env: str | None = None):
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.rubric, self.model, self.api_key_env = rubric, model, api_key_env

    def grade(self, prompt: str, answer: str) -> float | None:
        import urllib.error
        import urllib.request

        body = {
            "model": self.model or "default",
            "temperature": 0,
            "max_tokens": 8,
            "messages": [
                {"role": "system", "content": JUDGE_INSTRUCTIONS},
                {"role": "user", "content": f"Rubric: {self.rubric}\n\nPrompt: {prompt}\n\nAnswer: {answer}"},
            ],
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.endpoint, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=JUDGE_TIMEOUT_SECONDS) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as error:  # the message names the endpoint and the status, never the key
            raise UserError(f"method.rewards: the judge at {self.endpoint} answered HTTP {error.code}.") from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise UserError(f"method.rewards: the judge at {self.endpoint} could not be reached ({reason}).") from None
        try:
            return judge_score(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise UserError(f"method.rewards: the judge at {self.endpoint} sent no chat completion back.") from None


# ---- the TRL side: one callable per chosen reward --------------------------------------------


def completion_text(completion: Any) -> str:
    """TRL hands conversational completions as [{"role": "assistant", "content": ...}], plain ones as text."""
    if isinstance(completion, list):
        return "".join(str(message.get("content") or "") for message in completion)
    return str(completion)


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m for m in prompt if m.get("role") == "user"]
        return str((users or prompt)[-1].get("content") or "")
    return str(prompt)


class RewardLog:
    """The last batch every reward scored, so a callback can show a few answers with their rewards."""

    def __init__(self, weights: dict[str, float]):
        self.weights = weights
        self.prompts: list[str] = []
        self.answers: list[str] = []
        self.scores: dict[str, list[float | None]] = {}

    def record(self, name: str, prompts: list[str], answers: list[str], scores: list[float | None]) -> None:
        if answers != self.answers:  # a new batch: the first reward to see it starts the record
            self.prompts, self.answers, self.scores = prompts, answers, {}
        self.scores[name] = scores

    def samples(self, count: int = SAMPLES_SHOWN) -> list[dict[str, Any]]:
        """The best, the worst and a middle answer of the last batch, each with its rewards and total."""
        if not self.answers or set(self.scores) != set(self.weights):
            return []
        rows = []
        for i, (prompt, answer) in enumerate(zip(self.prompts, self.answers, strict=True)):
            rewards = {name: self.scores[name][i] for name in self.weights}
            total = sum(w * (rewards[n] or 0.0) for n, w in self.weights.items())
            rows.append({"prompt": prompt, "completion": answer, "rewards": rewards, "total": total})
        ordered = sorted(rows, key=lambda row: row["total"], reverse=True)
        picks = sorted({0, len(ordered) // 2, len(ordered) - 1})[:count]
        return [ordered[i] for i in picks]


class ChosenReward:
    """One reward of the spec as TRL calls it. `score(prompts, answers, columns)` does the work."""

    def __init__(self, choice: RewardChoice, score: Callable[[list[str], list[str], dict], list], log: RewardLog):
        self.__name__ = choice.name  # TRL logs rewards/<name>/mean from this
        self.choice, self._score, self.log = choice, score, log

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        asked = [prompt_text(p) for p in prompts]
        answers = [completion_text(c) for c in completions]
        scores = self._score(asked, answers, columns)
        self.log.record(self.__name__, asked, answers, scores)
        return scores


def scorer_for(choice: RewardChoice, token: str | None = None) -> Callable[[list[str], list[str], dict], list]:
    """The batch scoring function for one choice: (prompts, answers, data columns) -> scores."""
    if choice.kind == "match":
        column = choice.column or "answer"
        return lambda prompts, answers, columns: [
            match_score(a, r, choice.compare) for a, r in zip(answers, columns[column], strict=True)
        ]
    if choice.kind == "format":
        regex = choice.regex
        return lambda prompts, answers, columns: [format_score(a, regex) for a in answers]
    if choice.kind == "length":
        return lambda prompts, answers, columns: [length_score(a, choice.target_words) for a in answers]
    if choice.kind == "json_schema":
        return lambda prompts, answers, columns: [json_schema_score(a, choice.json_schema) for a in answers]
    if choice.kind == "reward_model":
        from training.scoring import RewardScorer

        scorer = RewardScorer(choice.job, token)
        return lambda prompts, answers, columns: scorer.score_many(prompts, answers)
    judge = Judge(choice.url, choice.rubric, choice.model, choice.api_key_env)
    return lambda prompts, answers, columns: [judge.grade(p, a) for p, a in zip(prompts, answers, strict=True)]


def build_rewards(rewards: Sequence[RewardChoice], token: str | None = None) -> tuple[list[ChosenReward], RewardLog]:
    log = RewardLog({choice.name: choice.weight for choice in rewards})
    return [ChosenReward(choice, scorer_for(choice, token), log) for choice in rewards], log


# ---- checks before a job starts (they need the data's columns or the disk) ---------------------


def data_columns(examples: Sequence[dict]) -> set[str]:
    """The reference columns GRPO rows carry beside their prompt (what a match reward can read)."""
    return {key for example in examples for key in example if key != "prompt"}


def reward_problems(rewards: Sequence[RewardChoice], columns: set[str] | None) -> list[tuple[str, str]]:
    """(field, message) for every reward that cannot work with this data or on this disk.
    `columns`: the data's reference columns; None when the data could not be read (then not checked)."""
    problems = []
    for i, choice in enumerate(rewards):
        field = f"method.rewards.{i}"
        if choice.kind == "match" and columns is not None and (choice.column or "answer") not in columns:
            have = ", ".join(sorted(columns)) or "none"
            problems.append(
                (
                    f"{field}.column",
                    f"{field}.column: the data has no column {choice.column or 'answer'!r} to match against "
                    f"(its columns: {have}). Name one of them.",
                )
            )
        if choice.kind == "reward_model":
            problem = reward_job_problem(Path(choice.job).expanduser())
            if problem:
                problems.append((f"{field}.job", f"{field}.job: {problem}"))
        if choice.kind == "judge" and choice.api_key_env and not os.environ.get(choice.api_key_env):
            problems.append(
                (
                    f"{field}.api_key_env",
                    f"{field}.api_key_env: the environment variable {choice.api_key_env} is not set. Set it "
                    "to the judge's API key before starting, or remove api_key_env if the endpoint needs none.",
                )
            )
    return problems


def reward_job_problem(job_dir: Path) -> str | None:
    from training import jobdir

    if not jobdir.is_job_dir(job_dir):
        return f"{job_dir} is not a Lathe job folder. Give the folder of a finished reward job."
    try:
        objective = jobdir.load_job_spec(job_dir).method.objective
    except UserError:
        return f"{job_dir}: its spec could not be read. Give the folder of a finished reward job."
    if objective != "reward":
        return f"{job_dir.name} is a {objective} job, not a reward model. Give a job trained with objective reward."
    if not ((job_dir / "adapter").is_dir() or (job_dir / "model").is_dir()):
        return f"{job_dir.name} has not finished (no adapter/ or model/ yet). Wait for it, or pick a finished one."
    return None


def reward_check_problems(spec, examples: Sequence[dict]) -> list:
    """The same checks as data-check Problems (the wizard's dataset step and `app.py check-data` show them)."""
    from training.data.read import Problem

    if spec.method.objective != "grpo":
        return []
    return [
        Problem("reward.choice", field, message.removeprefix(f"{field}: "), "", "error")
        for field, message in reward_problems(spec.method.rewards, data_columns(examples))
    ]


def progress_fields(logs: dict) -> dict:
    """The GRPO numbers of one TRL log record, as Progress fields (None where the record has none).

    Here, not in training/grpo.py: importing TRL's GRPO trainer imports Trackio, which fixes its folder
    at import, so the engine must not import it before the job's trackers are prepared."""
    by_function = {
        key.removeprefix("rewards/").removesuffix("/mean"): float(value)
        for key, value in logs.items()
        if key.startswith("rewards/") and key.endswith("/mean")
    }
    return {
        "reward_mean": _maybe(logs.get("reward")),
        "reward_std": _maybe(logs.get("reward_std")),
        "kl": _maybe(logs.get("kl")),
        "completion_length": _maybe(logs.get("completions/mean_length")),
        "rewards_by_function": by_function or None,
    }


def _maybe(value):
    return None if value is None else float(value)
