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
from training.data.masking import sft_rows
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
    trained: dict[str, int] = field(default_factory=dict)  # SFT: kept / truncated / dropped, as the trainer counts
    validation: str = ""  # what is held out to measure validation loss, in words

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

    def source_facts(self) -> list[tuple[str, str, str]]:
        """Per source: (its name, what was read and kept, its labels with their counts or ""); the text
        report and the wizard's HTML one say the same facts."""
        return [
            (
                loaded.source,
                f"{loaded.rows_read} rows read, format {loaded.format_label}, task {loaded.task or '-'}; "
                f"{len(loaded.examples)} kept, {loaded.dropped} dropped",
                ", ".join(f"{label} ({n})" for label, n in loaded.labels.items()),
            )
            for loaded in self.sources
        ]

    def describe_trained(self) -> str:
        """What the trainer will make of the rows, counted by the function it uses (training/data/masking.py)."""
        if not self.trained:
            return ""
        t = self.trained
        scale = "about " if self.sampled_from else ""
        text = (
            f"as trained ({scale}{t['rows_in']} rows): {t['kept']} fit the context, {t['truncated']} cut at the "
            f"context length (answer cut), {t['dropped']} dropped (the prompt alone fills the context)"
        )
        if t["documents_split"]:
            text += f", {t['documents_split']} long documents split into {t['windows']} context-sized windows"
        return text

    def findings(self) -> list[tuple[str, str]]:
        """What the check found, before the problems, as (kind, sentence) pairs that the command line
        (`to_text`) and the wizard (wizard/data_report.py) each lay out in their own way. Kinds: source
        (its text starts with the source's name), reading, labels, lengths, trained, validation."""
        found = []
        for loaded, (source, facts, labels) in zip(self.sources, self.source_facts(), strict=True):
            found.append(("source", f"{source}: {facts}"))
            if loaded.reading:
                found.append(("reading", f"read as {loaded.reading}"))
            if labels:
                found.append(("labels", f"labels: {labels}"))
        stats = self.length_stats()
        if stats:
            sample = (
                f" (estimated from {len(self.lengths):,} of {self.sampled_from:,} rows)" if self.sampled_from else ""
            )
            found.append(
                (
                    "lengths",
                    f"tokens per row{sample}: min {stats['min']}, median {stats['median']}, p95 {stats['p95']}, "
                    f"max {stats['max']} (context length {self.context_length})",
                )
            )
        if self.trained:
            found.append(("trained", self.describe_trained()))
        if self.validation:
            found.append(("validation", f"validation: {self.validation}"))
        return found

    def to_text(self, preview: bool = True) -> str:
        lines = []
        for kind, sentence in self.findings():
            lines.append(f"  {sentence}" if kind in ("reading", "labels") else sentence)
            if kind == "lengths":
                peak = max(count for _, _, count in self.histogram())
                for start, end, count in self.histogram():
                    lines.append(f"  {start:>6}-{end:<6} {'#' * max(1, round(30 * count / peak))} {count}")
        problems = self.all_problems
        if problems:
            lines.append(f"{len(self.errors)} error(s), {len(problems) - len(self.errors)} warning(s):")
            lines += grouped_problems(problems)
        if preview and self.preview:
            lines.append("preview (what the model reads; [[ ]] marks what it learns to write):")
            lines += [
                f"  --- example {n}\n" + _indent(marked_text(example)) for n, example in enumerate(self.preview, 1)
            ]
        lines.append("usable: yes" if self.usable else "usable: no — fix the errors above")
        return "\n".join(lines)


def grouped_problems(problems: list[tuple[str, Problem]]) -> list[str]:
    """One line per kind of problem: identical ones are counted ("300 rows: ..., first at line 1")."""
    groups: dict[tuple, list[str]] = {}
    for source, problem in problems:
        key = (source, problem.severity, problem.rule, problem.message, problem.fix)
        groups.setdefault(key, []).append(problem.where)
    lines = []
    for (source, severity, rule, message, fix), places in groups.items():
        where = f"{source} " if source else ""
        if len(places) == 1:
            lines.append(f"  {severity:7} {where}[{rule}] {places[0]}: {message} {fix}".rstrip())
        else:
            lines.append(f"  {severity:7} {where}[{rule}] {len(places)} rows: {message} {fix} (first at {places[0]})")
    return lines


def marked_text(example: RenderedExample) -> str:
    """A rendered example for a terminal: [[trained]] text marked, a worse answer as {{-worse-}}."""
    if example.pieces:
        return "".join(f"[[{text}]]" if trained else text for text, trained in example.pieces)
    if example.rejected is not None:
        return (
            f"{example.prompt}[[{example.completion}]]\n  (worse answer, trained against:) {{{{-{example.rejected}-}}}}"
        )
    if example.label is not None:
        kind = "desirable: pushed up" if example.label else "undesirable: pushed down"
        return f"{example.prompt}[[{example.completion}]]  ({kind})"
    return f"{example.prompt}[[{example.completion}]]"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


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
    if task in ("auto", "preference"):
        # The first rows say what the file is; reading it all here would read it twice
        first = load_source(spec.data.model_copy(update={"max_rows": 1000}), source, token=token)
        if first.detected and first.detected.format and first.detected.format.task == "preference":
            objective = "kto" if first.detected.format.name == "unpaired_preference" else "dpo"
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
    report.validation = _validation_plan(spec, len(examples))
    if spec.method.objective == "grpo":  # a reward naming a column the data lacks, or a job that is no reward model
        from training.rewards import reward_check_problems

        report.problems += reward_check_problems(spec, [ex for _, _, ex in examples])
    tokenizer = load_tokenizer(spec, token, for_check=True)
    train_on = spec.data.train_on
    report.preview = _previews(tokenizer, [ex for _, _, ex in examples[:preview_rows]], train_on)
    measured = examples
    if len(examples) > LENGTH_SAMPLE:
        measured = random.Random(0).sample(examples, LENGTH_SAMPLE)
        report.sampled_from = len(examples)
    if spec.method.objective == "sft":
        _count_as_trained(report, tokenizer, measured, spec)
        return report
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
            _rows_warning(
                "length.over_context",
                over,
                f"{len(over)} row(s){scale} are longer than the context length "
                f"({spec.hyperparameters.context_length} tokens) and will be cut.",
                "Raise hyperparameters.context_length, or shorten those rows.",
            )
        )
    return report


def _previews(tokenizer, examples: list[dict], train_on: str) -> list[RenderedExample]:
    """The first rows as the model reads them; a row its template refuses is reported by the count, not here."""
    from training.data.masking import TemplateProblem

    shown = []
    for example in examples:
        try:
            shown.append(render_row(tokenizer, example, train_on))
        except TemplateProblem:
            continue
    return shown


def _count_as_trained(report: Report, tokenizer, measured: list[tuple[str, str, dict]], spec: JobSpec) -> None:
    """SFT rows go through the trainer's own masking function: the counts are what it will use."""
    context = spec.hyperparameters.context_length
    prepared = sft_rows(tokenizer, [ex for _, _, ex in measured], spec.data.train_on, context)
    report.trained = prepared.counts() | {"windows": prepared.windows}
    for index, problem in prepared.problems:
        report.problems.append(Problem(problem.rule, measured[index][1], problem.message, problem.fix))
    for note, count in prepared.notes.items():
        report.problems.append(Problem("template.last_turn_only", "file", f"{count} row(s): {note}.", "", "warning"))
    report.lengths = prepared.lengths

    def warn_about(indices: list[int], rule: str, problem: str, fix: str) -> None:
        if indices:
            places = [measured[i][1] for i in indices]
            report.problems.append(_rows_warning(rule, places, f"{len(places)} row(s) {problem}", fix))

    warn_about(
        prepared.dropped_at,
        "length.prompt_fills_context",
        f"are dropped: the prompt alone fills the context length ({context} tokens), so nothing is left to learn.",
        "Raise hyperparameters.context_length, or shorten those prompts.",
    )
    warn_about(
        prepared.truncated_at,
        "length.over_context",
        f"are longer than the context length ({context} tokens): their answers are cut.",
        "Raise hyperparameters.context_length, or shorten those rows.",
    )


def _rows_warning(
    rule: str, places: list[str], message: str, fix: str, shown: int = 5, separator: str = ", "
) -> Problem:
    """A warning about some rows that names the first `shown` of them; an ellipsis says there are more."""
    where = separator.join(places[:shown]) + (" …" if len(places) > shown else "")
    return Problem(rule, where, message, fix, "warning")


def _validation_plan(spec: JobSpec, rows: int) -> str:
    from training.data.load import MIN_ROWS_TO_HOLD_OUT

    data = spec.data
    if data.validation_source:
        return f"the separate source {data.validation_source}"
    if data.validation_split == 0:
        return "none held out (data.validation_split is 0): the evaluation will use training rows"
    if rows < MIN_ROWS_TO_HOLD_OUT:
        return f"none held out: {rows} rows are fewer than {MIN_ROWS_TO_HOLD_OUT}, too few to spare any"
    held = len(split_rows(list(range(rows)), data.validation_split, spec.hyperparameters.seed)[1])
    return f"{held} of {rows} rows held out ({data.validation_split:.0%}, data.validation_split)"


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
            _rows_warning(
                "row.duplicate",
                repeats,
                f"{len(repeats)} row(s) are exact repeats; they weigh more in training.",
                "Remove the repeats unless the extra weight is wanted.",
                shown=3,
                separator="; ",
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
