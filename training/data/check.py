"""The data check report: the same code behind the wizard's dataset step and `app.py check-data`.

It reads every source of a spec, says which format it found, which rows were kept or dropped and
why, measures token lengths with the model's own tokenizer, and flags what would go wrong in
training (rows longer than the context, duplicates, validation rows that also appear in training).
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field

from training.data.formats import preformatted
from training.data.load import Loaded, load_source, load_sources, split_rows
from training.data.preview import RenderedExample, load_tokenizer, render_row, token_lengths
from training.data.read import Problem
from training.spec import JobSpec

LENGTH_SAMPLE = 20_000  # rows tokenized exactly; bigger files are measured on a seeded sample
HISTOGRAM_BARS = 8


@dataclass
class Report:
    sources: list[Loaded]
    problems: list[Problem] = field(default_factory=list)  # the spec-wide ones (lengths, duplicates, overlap)
    lengths: list[int] = field(default_factory=list)
    sampled_from: int | None = None  # rows the length sample was drawn from, when sampled
    context_length: int = 0
    preview: list[RenderedExample] = field(default_factory=list)

    @property
    def all_problems(self) -> list[tuple[str, Problem]]:
        return [(s.source, p) for s in self.sources for p in s.problems] + [("", p) for p in self.problems]

    @property
    def errors(self) -> list[tuple[str, Problem]]:
        return [(s, p) for s, p in self.all_problems if p.severity == "error"]

    @property
    def usable(self) -> bool:
        return not self.errors and any(s.examples for s in self.sources)

    def length_stats(self) -> dict[str, int]:
        if not self.lengths:
            return {}
        ordered = sorted(self.lengths)
        return {
            "min": ordered[0],
            "median": int(statistics.median(ordered)),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "max": ordered[-1],
        }

    def histogram(self) -> list[tuple[int, int, int]]:
        """(from, to, rows) bars over the token lengths."""
        if not self.lengths:
            return []
        low, high = min(self.lengths), max(self.lengths)
        width = max(1, -(-(high - low + 1) // HISTOGRAM_BARS))
        bars = [(low + i * width, low + (i + 1) * width - 1, 0) for i in range(HISTOGRAM_BARS)]
        counts = [0] * HISTOGRAM_BARS
        for n in self.lengths:
            counts[min((n - low) // width, HISTOGRAM_BARS - 1)] += 1
        return [(start, end, count) for (start, end, _), count in zip(bars, counts, strict=True) if count]

    def to_text(self) -> str:
        lines = []
        for loaded in self.sources:
            lines.append(
                f"{loaded.source}: {loaded.rows_read} rows read, format {loaded.format_label}, task "
                f"{loaded.task or '-'}; {len(loaded.examples)} kept, {loaded.dropped} dropped"
            )
            if loaded.labels:
                lines.append("  labels: " + ", ".join(f"{label} ({n})" for label, n in loaded.labels.items()))
        stats = self.length_stats()
        if stats:
            sample = (
                f" (estimated from {len(self.lengths):,} of {self.sampled_from:,} rows)" if self.sampled_from else ""
            )
            lines.append(
                f"tokens per row{sample}: min {stats['min']}, median {stats['median']}, p95 {stats['p95']}, "
                f"max {stats['max']} (context length {self.context_length})"
            )
            peak = max(count for _, _, count in self.histogram())
            for start, end, count in self.histogram():
                lines.append(f"  {start:>6}-{end:<6} {'#' * max(1, round(30 * count / peak))} {count}")
        problems = self.all_problems
        if problems:
            lines.append(f"{len(self.errors)} error(s), {len(problems) - len(self.errors)} warning(s):")
            for source, problem in problems:
                where = f"{source} " if source else ""
                lines.append(f"  {problem.severity:7} {where}{problem}")
        lines.append("usable: yes" if self.usable else "usable: no — fix the errors above")
        return "\n".join(lines)


def spec_for_source(
    source: str,
    task: str = "auto",
    data_format: str = "auto",
    field_map: dict[str, str] | None = None,
    base: JobSpec | None = None,
    token: str | None = None,
) -> JobSpec:
    """A spec to check one source with (the CLI's and the tests' entry point): a preference file
    checked without a task gets the dpo objective its rows call for."""
    spec = (base or JobSpec()).with_overrides(
        {
            "data.source": source,
            "data.mix_in": [],
            "data.task": task,
            "data.format": data_format,
            "data.field_map": field_map or {},
        }
    )
    objective = "dpo" if task == "preference" else "sft"
    if task == "auto":
        # The first rows say what the file is; reading it all here would read it twice
        first = load_source(spec.data.model_copy(update={"max_rows": 1000}), source, token=token)
        if first.detected and first.detected.format and first.detected.format.task == "preference":
            objective = "dpo"
    return spec.with_overrides({"method.objective": objective})


def check_data(spec: JobSpec, token: str | None = None, preview_rows: int = 3) -> Report:
    """Check every source of the spec against its model's tokenizer and context length."""
    sources = load_sources(spec.data, spec.method.objective, token)
    report = Report(sources=sources, context_length=spec.hyperparameters.context_length)
    examples = [(s.source, where, ex) for s in sources for where, ex in zip(s.locations, s.examples, strict=True)]
    if not examples:
        return report
    for loaded in sources:
        if loaded.task == "language_modeling" and preformatted(loaded.examples):
            loaded.problems.append(
                Problem(
                    "text.preformatted",
                    "file",
                    "the text already carries a model's prompt markers "
                    "([INST], <|im_start|>, ### Human: …); it is trained exactly as it is.",
                    "Check they match the model you tune, or use chat rows so its own template is applied.",
                    "warning",
                )
            )
    _duplicates(report, examples)
    _overlap(report, [ex for _, _, ex in examples], spec)
    tokenizer = load_tokenizer(spec, token, for_check=True)
    report.preview = [render_row(tokenizer, ex) for _, _, ex in examples[:preview_rows]]
    measured = examples
    if len(examples) > LENGTH_SAMPLE:
        measured = random.Random(0).sample(examples, LENGTH_SAMPLE)
        report.sampled_from = len(examples)
    over = []
    for _, where, example in measured:
        longest = max(token_lengths(tokenizer, example))
        report.lengths.append(longest)
        if longest > spec.hyperparameters.context_length:
            over.append(where)
    if over:
        scale = (
            f" (about {round(len(over) * report.sampled_from / len(measured)):,} in all)" if report.sampled_from else ""
        )
        report.problems.append(
            Problem(
                "length.over_context",
                ", ".join(over[:5]) + (" …" if len(over) > 5 else ""),
                f"{len(over)} row(s){scale} are longer than the context length "
                f"({spec.hyperparameters.context_length} tokens) and will be cut.",
                "Raise hyperparameters.context_length, or shorten those rows.",
                "warning",
            )
        )
    return report


def _key(example: dict) -> str:
    return json.dumps(example, sort_keys=True, ensure_ascii=False)


def _duplicates(report: Report, examples: list[tuple[str, str, dict]]) -> None:
    first_seen: dict[str, str] = {}
    repeats = []
    for _, where, example in examples:
        key = _key(example)
        if key in first_seen:
            repeats.append(f"{where} repeats {first_seen[key]}")
        else:
            first_seen[key] = where
    if repeats:
        report.problems.append(
            Problem(
                "row.duplicate",
                "; ".join(repeats[:3]) + (" …" if len(repeats) > 3 else ""),
                f"{len(repeats)} row(s) are exact repeats; they weigh more in training.",
                "Remove the repeats unless the extra weight is wanted.",
                "warning",
            )
        )


def _overlap(report: Report, examples: list[dict], spec: JobSpec) -> None:
    train, validation = split_rows(examples, spec.data.validation_split, spec.hyperparameters.seed)
    if not validation:
        return
    seen = {_key(example) for example in train}
    shared = sum(_key(example) in seen for example in validation)
    if shared:
        report.problems.append(
            Problem(
                "split.overlap",
                "validation split",
                f"{shared} validation row(s) also appear in training, so validation loss will look better than it is.",
                "Remove the duplicate rows.",
                "warning",
            )
        )
