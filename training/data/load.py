"""From `data.source` (a demo or a file) to checked training examples in TRL's conversational shape.

Reading (`read.py`) and format detection (`formats.py`) collect every problem with a rule id and
a location; here the sources are combined, the task is matched to the training objective, and
any error stops the job before a model is loaded. Chat-like rows become prompt/completion pairs,
so only the answer is trained: TRL's `assistant_only_loss` needs `{% generation %}` markers that
most chat templates (SmolLM2's included) lack, while prompt/completion masking works with all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from training.data import llamafactory
from training.data.formats import TASKS, Detected, detect, to_examples
from training.data.read import Problem, read_rows
from training.data.refuse import media_problem, placeholder_problem, with_system_prompt
from training.errors import UserError
from training.memo import Recent
from training.presets import PRESETS_DIR
from training.spec import DEMO_PREFIX, HUB_PREFIX, DataSection

DEMO_DIR = PRESETS_DIR / "data"
MAX_REPORTED_PROBLEMS = 10
PREFERENCE_OBJECTIVES = ("dpo", "reward", "orpo", "cpo")  # trained on pairs; kto on single answers marked good or bad
UNPAIRED = "unpaired_preference"

Conversation = list[dict[str, str]]


def demo_names() -> list[str]:
    return sorted(path.stem for path in DEMO_DIR.glob("*.jsonl"))


def source_path(source: str) -> Path:
    if source.startswith(DEMO_PREFIX):
        name = source.removeprefix(DEMO_PREFIX)
        if name not in demo_names():
            raise UserError(f"data.source: there is no demo called {name!r}. Choose one of: {', '.join(demo_names())}.")
        return DEMO_DIR / f"{name}.jsonl"
    path = llamafactory.resolve(source).path if llamafactory.is_dataset_info(source) else Path(source).expanduser()
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
    reading: str | None = None  # how a plain text file was cut into rows, when there was a choice

    @property
    def format_label(self) -> str:
        return self.detected.format.label if self.detected and self.detected.format else "not recognised"

    @property
    def dropped(self) -> int:
        return self.rows_read - len(self.examples)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def read_source(data: DataSection, source: str, token: str | None):
    """The raw rows of one source (a file, a demo, hub:org/name or split:NAME), as read, not yet mapped."""
    if source.startswith((HUB_PREFIX, "split:")):
        from training.data.hub_source import read_hub_rows

        split = source.removeprefix("split:") if source.startswith("split:") else None
        return read_hub_rows(data, data.source if split else source, token, split, data.max_rows)
    return read_rows(source_path(source), data.max_rows)


def load_source(data: DataSection, source: str, main: bool = True, token: str | None = None) -> Loaded:
    """Read, detect and map one source; never raises for bad content (a missing file still raises).

    `source` is a demo, a file, hub:org/name, or split:NAME (another split of the main Hub dataset).
    """
    read = read_source(data, source, token)
    rows = read.rows
    entry = llamafactory.resolve(source) if llamafactory.is_dataset_info(source) else None
    if entry:  # LLaMA-Factory's sharegpt tags: its role and content keys become ours
        rows = [(where, entry.apply(row)) for where, row in rows]
    if source.startswith(DEMO_PREFIX):
        rows = [(where, _fill_placeholders(row, data.assistant_name, data.assistant_maker)) for where, row in rows]
    loaded = Loaded(source=source, rows_read=len(rows), problems=list(read.problems), reading=read.reading)
    if not rows:
        return loaded
    media = media_problem(rows)
    if media:  # refused whole: a text model would train on the words with the media silently gone
        loaded.problems.append(media)
        return loaded
    # The format and field map are the person's choice for their main file; mixed-in demos are detected
    forced, field_map = (data.format, data.field_map) if main else ("auto", {})
    if entry:  # the entry's formatting and columns, as LLaMA-Factory reads them; the person's field map wins
        forced, field_map = (forced if forced != "auto" else entry.format), entry.field_map | field_map
    detected = detect(rows, forced, field_map)
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
    examples = mapped.examples
    if main and data.system_prompt:
        examples = [with_system_prompt(example, data.system_prompt) for example in examples]
    loaded.task, loaded.examples, loaded.locations = task, examples, mapped.locations
    loaded.problems += mapped.problems
    loaded.labels = mapped.labels
    if not source.startswith(DEMO_PREFIX) and (unreplaced := placeholder_problem(examples, mapped.locations)):
        loaded.problems.append(unreplaced)
    return loaded


# The wizard checks the data at Next, at step 4's estimate and again at Launch: the same files, unchanged, are
# read and parsed once. Keyed on the data section, the objective and each file's size and modification time.
LOADED: Recent[list[Loaded]] = Recent(size=2)  # a few sources' rows: a 100 MB file's are a few hundred MB


def data_stamp(data: DataSection) -> tuple | None:
    """What identifies the data's current contents: each file's path, size and modification time.

    None when a source is on the Hub (its answer depends on the token and the server, so it is not kept)
    or a file is missing (reading it again gives the person the message)."""
    stamps = []
    for source in [data.source, *data.mix_in, data.validation_source]:
        if not source:
            continue
        if source.startswith((HUB_PREFIX, "split:")):
            return None
        try:
            stat = source_path(source).stat()
        except (UserError, OSError):
            return None
        stamps.append((source, stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def load_sources(data: DataSection, objective: str = "sft", token: str | None = None) -> list[Loaded]:
    """Every source of the spec, loaded, plus the checks that span them (task vs objective, mixing).

    Unchanged local files are read once per process (see `LOADED`); callers get their own copies."""
    if objective == "grpo":  # GRPO reads prompts only, from any chat-like file (training/data/prompts.py)
        from training.data.prompts import load_prompt_source

        return [load_prompt_source(data, data.source, token=token)] + [
            load_prompt_source(data, s, main=False, token=token) for s in data.mix_in
        ]
    stamp = data_stamp(data)
    key = None if stamp is None else (data.model_dump_json(), objective, stamp)
    kept = LOADED.get(key, lambda: _read_sources(data, objective, token))
    # A caller may add problems (the data check's warnings) or examples: it must not change the kept copy
    return [replace(s, examples=list(s.examples), locations=list(s.locations), problems=list(s.problems)) for s in kept]


def _read_sources(data: DataSection, objective: str, token: str | None) -> list[Loaded]:
    sources = [load_source(data, data.source, token=token)]
    sources += [load_source(data, s, main=False, token=token) for s in data.mix_in]
    main = sources[0]
    unpaired = bool(main.detected and main.detected.format and main.detected.format.name == UNPAIRED)
    if unpaired and objective != "kto":
        main.problems.append(
            Problem(
                "task.objective",
                "file",
                "these are single answers marked good or bad (prompt/completion/label, KTO's shape); "
                f"{objective} would train the bad answers as targets or cannot read them.",
                "Train on them with method.objective: kto.",
            )
        )
    elif main.task == "preference" and objective == "kto":
        for loaded in sources:  # pairs serve KTO too: the better answer is desirable, the worse one not
            loaded.examples, loaded.locations = _unpair(loaded.examples, loaded.locations)
    elif main.task and main.task != "preference" and objective == "kto":
        main.problems.append(
            Problem(
                "task.objective",
                "file",
                f"kto needs answers marked good or bad (prompt/completion/label) or preference pairs "
                f"(found {main.detected.format.label}).",
                "Use such data (presets/data/kto.jsonl is an example), or method.objective sft.",
            )
        )
    elif main.task == "preference" and objective not in PREFERENCE_OBJECTIVES:
        main.problems.append(
            Problem(
                "task.objective",
                "file",
                "these are preference rows (prompt/chosen/rejected).",
                "Train on them with method.objective dpo, orpo, cpo or reward, or kto.",
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
    return examples_of(load_sources(data, objective, token))


def examples_of(sources: list[Loaded]) -> list[dict[str, Any]]:
    """The examples of loaded sources, or a UserError listing every error (rule id and location)."""
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


def _unpair(examples: list[dict], locations: list[str]) -> tuple[list[dict], list[str]]:
    """Preference pairs as KTO rows: the chosen answer desirable, the rejected one undesirable."""
    if not examples or "chosen" not in examples[0]:
        return examples, locations
    rows, places = [], []
    for example, where in zip(examples, locations, strict=True):
        for answer, good in (("chosen", True), ("rejected", False)):
            rows.append({"prompt": example["prompt"], "completion": example[answer], "label": good})
            places.append(where)
    return rows, places


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


MIN_ROWS_TO_HOLD_OUT = 40  # below this a 10% split is a handful of rows: a noisy curve bought with training data


def split_rows(rows: list, ratio: float, seed: int) -> tuple[list, list]:
    """A deterministic validation split: the same seed always holds out the same rows."""
    if ratio == 0 or len(rows) < MIN_ROWS_TO_HOLD_OUT:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held_out = max(1, round(len(rows) * ratio))
    held = set(order[:held_out])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def train_and_validation_rows(
    data: DataSection, seed: int, objective: str = "sft", token: str | None = None, sources: list[Loaded] | None = None
):
    """(training rows, validation rows): the validation source, or the seeded split of the data.

    `sources`: the data already loaded (`load_sources`), so it is not read again."""
    rows = examples_of(sources if sources is not None else load_sources(data, objective, token))
    if data.validation_source:
        return rows, load_validation(data, objective, token)
    return split_rows(rows, data.validation_split, seed)


def build_datasets(
    data: DataSection, seed: int, objective: str = "sft", token: str | None = None, sources: list[Loaded] | None = None
):
    """The train and (optional) validation `datasets.Dataset` in TRL's conversational shape."""
    from datasets import Dataset

    from training.data.masking import to_wire  # tools and tool calls travel as JSON text through Arrow

    train, validation = train_and_validation_rows(data, seed, objective, token, sources)
    train, validation = [to_wire(r) for r in train], [to_wire(r) for r in validation]
    return Dataset.from_list(train), (Dataset.from_list(validation) if validation else None)


def data_summary(
    data: DataSection, objective: str = "sft", token: str | None = None, sources: list[Loaded] | None = None
) -> dict[str, Any]:
    """What a job trained on, saved beside it: each source's hash, format, task, row counts and labels
    (a classifier's label set is what its results are scored against later). `sources`: the data the
    job trained on, already loaded, so the summary describes those very rows."""
    import hashlib

    summary = []
    for loaded in sources if sources is not None else load_sources(data, objective, token):
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
