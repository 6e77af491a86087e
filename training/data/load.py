"""From `data.source` (a demo or a file) to checked training examples in TRL's conversational shape.

Reading (`read.py`) and format detection (`formats.py`) collect every problem with a rule id and
a location; here the sources are combined, the task is matched to the training objective, and
any error stops the job before a model is loaded. Chat-like rows become prompt/completion pairs,
so only the answer is trained: TRL's `assistant_only_loss` needs `{% generation %}` markers that
most chat templates (SmolLM2's included) lack, while prompt/completion masking works with all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.formats import TASKS, Detected, detect, to_examples
from training.data.read import Problem, read_rows
from training.errors import UserError
from training.presets import PRESETS_DIR
from training.spec import DEMO_PREFIX, HUB_PREFIX, DataSection

DEMO_DIR = PRESETS_DIR / "data"
MAX_REPORTED_PROBLEMS = 10
PREFERENCE_OBJECTIVES = ("dpo", "reward", "orpo", "cpo")

Conversation = list[dict[str, str]]


def demo_names() -> list[str]:
    return sorted(path.stem for path in DEMO_DIR.glob("*.jsonl"))


def source_path(source: str) -> Path:
    if source.startswith(DEMO_PREFIX):
        name = source.removeprefix(DEMO_PREFIX)
        if name not in demo_names():
            raise UserError(f"data.source: there is no demo called {name!r}. Choose one of: {', '.join(demo_names())}.")
        return DEMO_DIR / f"{name}.jsonl"
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"data.source: file not found: {path}. Check the path, or use a demo such as demo:identity.")
    return path


@dataclass
class Loaded:
    """One source, read and mapped: its examples (with locations) and everything found wrong."""

    source: str
    rows_read: int = 0
    detected: Detected | None = None
    task: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def format_label(self) -> str:
        return self.detected.format.label if self.detected and self.detected.format else "not recognised"

    @property
    def dropped(self) -> int:
        return self.rows_read - len(self.examples)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def load_source(data: DataSection, source: str, main: bool = True, token: str | None = None) -> Loaded:
    """Read, detect and map one source; never raises for bad content (a missing file still raises).

    `source` is a demo, a file, hub:org/name, or split:NAME (another split of the main Hub dataset).
    """
    if source.startswith((HUB_PREFIX, "split:")):
        from training.data.hub_source import read_hub_rows

        split = source.removeprefix("split:") if source.startswith("split:") else None
        read = read_hub_rows(data, data.source if split else source, token, split, data.max_rows)
    else:
        read = read_rows(source_path(source), data.max_rows)
    rows = read.rows
    if source.startswith(DEMO_PREFIX):
        rows = [(where, _fill_placeholders(row, data.assistant_name, data.assistant_maker)) for where, row in rows]
    loaded = Loaded(source=source, rows_read=len(rows), problems=list(read.problems))
    if not rows:
        return loaded
    # The format and field map are the person's choice for their main file; mixed-in demos are detected
    detected = detect(rows, data.format if main else "auto", data.field_map if main else {})
    loaded.detected, loaded.problems = detected, loaded.problems + detected.problems
    if detected.format is None:
        return loaded
    task = data.task if main and data.task != "auto" else detected.format.task
    if task != detected.format.task and not (task == "language_modeling" and detected.format.task == "chat"):
        loaded.problems.append(
            Problem(
                "task.format_mismatch",
                "file",
                f"the task {TASKS[task]!r} does not fit {detected.format.label}.",
                f"Choose the task {TASKS[detected.format.task]!r}, or data with the right columns.",
            )
        )
        return loaded
    mapped = to_examples(rows, detected, task)
    loaded.task, loaded.examples, loaded.locations = task, mapped.examples, mapped.locations
    loaded.problems += mapped.problems
    loaded.labels = mapped.labels
    return loaded


def load_sources(data: DataSection, objective: str = "sft", token: str | None = None) -> list[Loaded]:
    """Every source of the spec, loaded, plus the checks that span them (task vs objective, mixing)."""
    if objective == "grpo":  # GRPO reads prompts only, from any chat-like file (training/data/prompts.py)
        from training.data.prompts import load_prompt_source

        return [load_prompt_source(data, data.source, token=token)] + [
            load_prompt_source(data, s, main=False, token=token) for s in data.mix_in
        ]
    sources = [load_source(data, data.source, token=token)]
    sources += [load_source(data, s, main=False, token=token) for s in data.mix_in]
    main = sources[0]
    if main.task == "preference" and objective not in PREFERENCE_OBJECTIVES:
        main.problems.append(
            Problem(
                "task.objective",
                "file",
                "these are preference rows (prompt/chosen/rejected).",
                "Train on them with method.objective dpo, orpo, cpo or reward.",
            )
        )
    elif main.task and main.task != "preference" and objective in PREFERENCE_OBJECTIVES:
        main.problems.append(
            Problem(
                "task.objective",
                "file",
                f"{objective} needs preference rows: prompt, chosen and rejected (found {main.detected.format.label}).",
                "Use preference data (demo:preferences is an example).",
            )
        )
    for extra in sources[1:]:
        if extra.task and main.task and (extra.task == "language_modeling") != (main.task == "language_modeling"):
            extra.problems.append(
                Problem(
                    "task.mixed",
                    "file",
                    f"{extra.source} is {TASKS[extra.task]!r} data but the main source is {TASKS[main.task]!r}.",
                    "Mix in only sources of the same kind.",
                )
            )
    return sources


def load_rows(data: DataSection, objective: str = "sft", token: str | None = None) -> list[dict[str, Any]]:
    """The examples a job trains on; raises UserError listing every error (rule id and location)."""
    sources = load_sources(data, objective, token)
    errors = [(loaded.source, problem) for loaded in sources for problem in loaded.errors]
    if errors:
        source_names = {loaded.source: _display_name(loaded.source) for loaded in sources}
        shown = "\n".join(f"  - {source_names[s]}: {p}" for s, p in errors[:MAX_REPORTED_PROBLEMS])
        more = len(errors) - MAX_REPORTED_PROBLEMS
        raise UserError(
            f"data.source: {len(errors)} problem(s) in the data:\n{shown}"
            + (f"\n  ... and {more} more (python app.py check-data FILE lists them all)" if more > 0 else "")
        )
    return [example for loaded in sources for example in loaded.examples]


def load_conversations(data: DataSection) -> list[Conversation]:
    """Chat-like examples as whole conversations (prompt + answer), e.g. for previews."""
    return [row["prompt"] + row["completion"] for row in load_rows(data) if "completion" in row]


def load_validation(data: DataSection, objective: str = "sft", token: str | None = None) -> list[dict[str, Any]]:
    """The separate validation set (data.validation_source), checked like the training data."""
    held_out = data.model_copy(update={"source": data.source, "mix_in": [], "max_rows": None})
    if objective == "grpo":
        from training.data.prompts import load_prompt_source

        loaded = load_prompt_source(held_out, data.validation_source, token=token)
    else:
        loaded = load_source(held_out, data.validation_source, token=token)
    if loaded.errors:
        shown = "\n".join(f"  - {p}" for p in loaded.errors[:MAX_REPORTED_PROBLEMS])
        raise UserError(f"data.validation_source: {len(loaded.errors)} problem(s):\n{shown}")
    return loaded.examples


def _display_name(source: str) -> str:
    return source if source.startswith(DEMO_PREFIX) else Path(source).name


def _fill_placeholders(value: Any, name: str, maker: str) -> Any:
    """{name} and {maker} in demo text become the job's names (str.replace: other braces stay as they are)."""
    if isinstance(value, str):
        return value.replace("{name}", name).replace("{maker}", maker)
    if isinstance(value, list):
        return [_fill_placeholders(v, name, maker) for v in value]
    if isinstance(value, dict):
        return {k: _fill_placeholders(v, name, maker) for k, v in value.items()}
    return value


def split_rows(rows: list, ratio: float, seed: int) -> tuple[list, list]:
    """A deterministic validation split: the same seed always holds out the same rows."""
    if ratio == 0 or len(rows) < 2:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held_out = max(1, round(len(rows) * ratio))
    held = set(order[:held_out])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def train_and_validation_rows(data: DataSection, seed: int, objective: str = "sft", token: str | None = None):
    """(training rows, validation rows): the validation source, or the seeded split of the data."""
    rows = load_rows(data, objective, token)
    if data.validation_source:
        return rows, load_validation(data, objective, token)
    return split_rows(rows, data.validation_split, seed)


def build_datasets(data: DataSection, seed: int, objective: str = "sft", token: str | None = None):
    """The train and (optional) validation `datasets.Dataset` in TRL's conversational shape."""
    from datasets import Dataset

    train, validation = train_and_validation_rows(data, seed, objective, token)
    return Dataset.from_list(train), (Dataset.from_list(validation) if validation else None)


def data_summary(data: DataSection, objective: str = "sft", token: str | None = None) -> dict[str, Any]:
    """What a job trained on, saved beside it: each source's hash, format, task, row counts and labels
    (a classifier's label set is what its results are scored against later)."""
    import hashlib

    summary = []
    for loaded in load_sources(data, objective, token):
        hub = loaded.source.startswith(HUB_PREFIX)  # the Hub revision identifies it instead of a file hash
        digest = None if hub else hashlib.sha256(source_path(loaded.source).read_bytes()).hexdigest()
        fmt = loaded.detected.format.name if loaded.detected and loaded.detected.format else None
        summary.append(
            {
                "source": loaded.source,
                "sha256": digest,
                "hub": {"config": data.hub_config, "split": data.hub_split, "revision": data.hub_revision}
                if hub
                else None,
                "format": fmt,
                "task": loaded.task,
                "rows_read": loaded.rows_read,
                "rows_kept": len(loaded.examples),
                "labels": loaded.labels or None,
            }
        )
    return {"sources": summary}
