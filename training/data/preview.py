"""What the model will see: examples rendered through its own chat template, and the job's size.

Rendering follows TRL's prompt/completion path: the prompt is the chat template applied with a
generation prompt, the completion is the rest of the fully templated conversation. Only the
completion is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from training.data.load import data_stamp, load_rows, split_rows
from training.data.masking import ALL_TURNS, label_example, trained_text
from training.data.prompts import is_prompt_row
from training.errors import UserError
from training.memo import Recent, secret_digest
from training.models import resolve_model
from training.spec import JobSpec


@dataclass(frozen=True)
class RenderedExample:
    prompt: str  # seen by the model, not trained
    completion: str  # seen and trained (for preference rows: the better answer)
    rejected: str | None = None  # preference rows only: the worse answer, trained *against*
    pieces: tuple[tuple[str, bool], ...] = ()  # chat rows: the whole text as (piece, trained?) runs, every turn
    label: bool | None = None  # KTO rows: whether this answer is the desirable kind


@dataclass(frozen=True)
class DataSummary:
    train_rows: int
    validation_rows: int
    tokens_per_epoch: int  # after cutting rows to the context length
    longest_tokens: int
    rows_over_context: int
    steps_per_epoch: int
    steps: int

    @property
    def total_tokens(self) -> int:
        """Tokens the whole run will train on: whole epochs, or max steps' share of them."""
        return round(self.tokens_per_epoch * self.steps / self.steps_per_epoch)

    def describe(self) -> str:
        text = (
            f"~{self.steps} optimizer steps, ~{self.total_tokens:,} tokens "
            f"({self.train_rows} training rows, {self.validation_rows} validation rows, "
            f"longest {self.longest_tokens} tokens)"
        )
        if self.rows_over_context:
            text += f". {self.rows_over_context} rows are longer than the context length and will be cut."
        return text


def load_tokenizer(spec: JobSpec, token: str | None = None, for_check: bool = False):
    """`for_check`: only what a data check calls, without transformers where it can (training/data/tokenizer.py)."""
    from training.data.tokenizer import load_for_check, load_full

    reference = resolve_model(spec.model.name_or_path)
    try:
        return (load_for_check if for_check else load_full)(reference, revision=spec.model.revision, token=token)
    except OSError as error:
        raise UserError(
            f"model.name_or_path: could not load the tokenizer of {spec.model.name_or_path} "
            f"({str(error).splitlines()[0][:200]}). Check the id and your access, or pick a local model."
        ) from None


def render(tokenizer, conversation: list[dict[str, str]]) -> RenderedExample:
    prompt = tokenizer.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
    return RenderedExample(prompt=prompt, completion=_answer_after(tokenizer, prompt, conversation))


def render_pair(tokenizer, row: dict) -> RenderedExample:
    """A preference row: one prompt, then the better and the worse answer, each as the model reads it."""
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    chosen = _answer_after(tokenizer, prompt, row["prompt"] + row["chosen"])
    rejected = _answer_after(tokenizer, prompt, row["prompt"] + row["rejected"])
    return RenderedExample(prompt=prompt, completion=chosen, rejected=rejected)


def _answer_after(tokenizer, prompt: str, conversation: list[dict[str, str]]) -> str:
    full = tokenizer.apply_chat_template(conversation, tokenize=False)
    return full[len(prompt) :] if full.startswith(prompt) else conversation[-1]["content"]


def render_examples(spec: JobSpec, count: int = 3, token: str | None = None) -> list[RenderedExample]:
    tokenizer = load_tokenizer(spec, token)
    rows = load_rows(spec.data, spec.method.objective, token)[:count]
    return [render_row(tokenizer, row, spec.data.train_on) for row in rows]


def render_row(tokenizer, row: dict, train_on: str = ALL_TURNS) -> RenderedExample:
    if is_prompt_row(row):  # a GRPO prompt: the model writes the answer itself while training
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        return RenderedExample(prompt=prompt, completion="")
    if "chosen" in row:
        return render_pair(tokenizer, row)
    if "text" in row:  # continued pre-training: the raw text, every token trained, no template
        return RenderedExample(prompt="", completion=row["text"], pieces=((row["text"], True),))
    if "label" in row:  # KTO: one answer, pushed up when desirable and down when not
        rendered = render(tokenizer, row["prompt"] + row["completion"])
        return RenderedExample(prompt=rendered.prompt, completion=rendered.completion, label=bool(row["label"]))
    # The spans the trainer learns from, found by the same masking function (training/data/masking.py)
    pieces = tuple(trained_text(label_example(tokenizer, row, train_on)))
    first = next((i for i, (_, trained) in enumerate(pieces) if trained), len(pieces))
    prompt = "".join(text for text, _ in pieces[:first])
    return RenderedExample(prompt=prompt, completion="".join(text for text, _ in pieces[first:]), pieces=pieces)


def token_lengths(tokenizer, row: dict) -> list[int]:
    """Tokens of each sequence the trainer reads for this row (two for a preference pair)."""
    if is_prompt_row(row):  # a GRPO prompt: its answer is generated, not read
        prompt = tokenizer.apply_chat_template(
            row["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True
        )
        return [len(prompt["input_ids"])]
    if "text" in row or "label" not in row and "chosen" not in row:  # what the SFT trainer reads
        return [len(label_example(tokenizer, row).input_ids)]
    answers = [row["chosen"], row["rejected"]] if "chosen" in row else [row["completion"]]
    return [
        len(tokenizer.apply_chat_template(row["prompt"] + answer, tokenize=True, return_dict=True)["input_ids"])
        for answer in answers
    ]


SUMMARIES: Recent[DataSummary] = Recent(size=8)


def summarize(spec: JobSpec, token: str | None = None) -> DataSummary:
    """Rows, tokens and optimizer steps for the GPU preview, counted with the model's tokenizer.

    Step 4 and the Launch after it ask for the same spec: an unchanged spec on unchanged files is counted once."""
    stamp = data_stamp(spec.data)
    key = None if stamp is None else (spec.model_dump_json(), stamp, secret_digest(token))
    return SUMMARIES.get(key, lambda: _count(spec, token))


def _count(spec: JobSpec, token: str | None) -> DataSummary:
    tokenizer = load_tokenizer(spec, token)
    hp = spec.hyperparameters
    rows = load_rows(spec.data, spec.method.objective, token)
    train, validation = split_rows(rows, spec.data.validation_split, hp.seed)
    lengths = [n for row in train for n in token_lengths(tokenizer, row)]
    # The Trainer's count: batches per epoch, divided by accumulation, at least one update
    steps_per_epoch = max(math.ceil(len(train) / hp.batch_size) // hp.gradient_accumulation, 1)
    steps = hp.max_steps or math.ceil(hp.epochs * steps_per_epoch)
    return DataSummary(
        train_rows=len(train),
        validation_rows=len(validation),
        tokens_per_epoch=sum(min(n, hp.context_length) for n in lengths),
        longest_tokens=max(lengths),
        rows_over_context=sum(n > hp.context_length for n in lengths),
        steps_per_epoch=steps_per_epoch,
        steps=steps,
    )
