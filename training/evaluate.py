"""Is the tuned model any good? The base and the tuned model side by side on held-out rows.

- Loss and perplexity on the answers (the prompt is context, as in training): the tuned model
  should be lower on data like what it trained on.
- A task score from greedy answers: accuracy with a per-label confusion table for classification,
  ROUGE-L (Google's `rouge-score`, the reference implementation) for summarisation, exact match and
  token F1 (SQuAD's normalisation, computed here: a dozen lines, no library fits better) for
  question answering. Chat and continued pre-training have no single right answer; they get the
  loss and the sample table.
- A few held-out prompts answered by both models, saved beside the job.

Held-out rows are the validation split (or validation_source); a job trained without one is
evaluated on its training rows, and the report says so.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training import jobdir
from training.data.load import train_and_validation_rows
from training.errors import UserError
from training.export import load_job_spec

ANSWER_TOKENS = {"classification": 16, "qa": 48, "summarization": 128}  # room for the longest answer
SAMPLE_ANSWER_TOKENS = 96
OTHER_LABEL = "(none of the labels)"


@dataclass
class EvalReport:
    job: str
    task: str
    held_out: str  # which rows: "validation split", "validation source" or "training rows"
    rows: int
    base: dict[str, float] = field(default_factory=dict)
    tuned: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # side -> gold -> predicted
    samples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: each score, base -> tuned."""
        scores = ", ".join(f"{name} {self.base[name]:.3g} -> {value:.3g}" for name, value in self.tuned.items())
        return f"evaluation on {self.rows} {self.held_out}, base -> tuned: {scores}"

    def to_text(self, samples: int = 5) -> str:
        lines = [f"{self.job}: {self.task}, {self.rows} {self.held_out}", ""]
        lines.append(f"{'metric':18} {'base':>10} {'tuned':>10}")
        for name in self.tuned:
            lines.append(f"{name:18} {self.base.get(name, float('nan')):10.4f} {self.tuned[name]:10.4f}")
        for side, table in self.confusion.items():
            lines += ["", f"confusion ({side}): gold -> predicted counts"]
            lines += [f"  {gold}: {dict(predicted)}" for gold, predicted in table.items()]
        for sample in self.samples[:samples]:
            lines += ["", f"> {sample['prompt'][:300]}", f"  expected: {sample['reference'][:300]}"]
            lines += [f"  base:     {sample['base'][:300]}", f"  tuned:    {sample['tuned'][:300]}"]
        return "\n".join(lines)


def held_out_rows(spec, token: str | None) -> tuple[list[dict], str]:
    """The rows training validated on (the same split), or its training rows when it had none."""
    data = spec.data
    train, validation = train_and_validation_rows(data, spec.hyperparameters.seed, spec.method.objective, token)
    # KTO rows hold good and bad answers: only the good ones are answers the tuned model should give
    train, validation = [r for r in train if r.get("label", True)], [r for r in validation if r.get("label", True)]
    if data.validation_source:
        return validation, "rows of the validation source"
    if validation:
        return validation, "rows of the validation split"
    return train, "training rows (the job has no validation split, so these are not held out)"


def job_task(job_dir: Path) -> str:
    """The task the data was read as (data.json, saved when training started); chat if unknown."""
    summary = job_dir / jobdir.DATA_SUMMARY
    if summary.is_file():
        return json.loads(summary.read_text())["sources"][0].get("task") or "chat"
    return "chat"


def job_labels(job_dir: Path) -> list[str]:
    """A classifier's label set as training saw it (data.json), so a label missing from the held-out
    rows still counts as a possible prediction."""
    summary = job_dir / jobdir.DATA_SUMMARY
    return list(json.loads(summary.read_text())["sources"][0].get("labels") or {}) if summary.is_file() else []


class EvaluationStopped(Exception):
    """Stop was pressed while the evaluation ran: the trained model is saved, the evaluation is dropped."""


def _never() -> bool:
    return False


def rows_until_stopped(rows: list[dict], should_stop):
    """The rows one by one, ending the evaluation between rows once a stop is requested."""
    for row in rows:
        if should_stop():
            raise EvaluationStopped
        yield row


def answer_loss(session, rows: list[dict], tuned: bool, max_length: int, should_stop=_never) -> float:
    """Mean negative log-likelihood per answer token (prompt tokens are context only)."""
    import torch

    total, count = 0.0, 0
    tokenizer = session.tokenizer
    with session.model_for(tuned) as model, torch.inference_mode():
        for row in rows_until_stopped(rows, should_stop):
            if "text" in row:  # continued pre-training: every token is an answer token
                ids = tokenizer(row["text"], truncation=True, max_length=max_length)["input_ids"]
                prompt_length = 1
            else:
                answer = row.get("completion") or row["chosen"]
                prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
                whole = tokenizer.apply_chat_template(row["prompt"] + answer, tokenize=False)
                prompt_length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
                ids = tokenizer(whole, add_special_tokens=False)["input_ids"][:max_length]
            if len(ids) <= prompt_length:
                continue  # the answer was cut off by the context length
            input_ids = torch.tensor([ids], device=session.device)
            labels = input_ids.clone()
            labels[:, :prompt_length] = -100
            loss = model(input_ids=input_ids, labels=labels).loss.float().item()
            answer_tokens = len(ids) - prompt_length
            total, count = total + loss * answer_tokens, count + answer_tokens
    if count == 0:
        raise UserError("There are no answer tokens to evaluate (every answer is beyond the context length).")
    return total / count


def normalise_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    predicted, gold = normalise_answer(prediction).split(), normalise_answer(reference).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if not predicted or not gold or common == 0:
        return float(predicted == gold)
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def predicted_label(answer: str, labels: list[str]) -> str:
    """The label an answer names: the whole answer, else the first label mentioned (longest first, so
    'very positive' wins over 'positive')."""
    said = normalise_answer(answer)
    by_name = {normalise_answer(label): label for label in labels}
    if said in by_name:
        return by_name[said]
    for name in sorted(by_name, key=len, reverse=True):
        if name and re.search(rf"\b{re.escape(name)}\b", said):
            return by_name[name]
    return OTHER_LABEL


def task_scores(task: str, answers: list[str], references: list[str], labels: list[str]) -> tuple[dict, dict]:
    """(scores, confusion) for one model's answers."""
    if task == "classification":
        predicted = [predicted_label(a, labels) for a in answers]
        confusion: dict[str, Counter] = {}
        for gold, guess in zip(references, predicted, strict=True):
            confusion.setdefault(gold, Counter())[guess] += 1
        accuracy = sum(g == p for g, p in zip(references, predicted, strict=True)) / len(references)
        return {"accuracy": accuracy}, {gold: dict(counts) for gold, counts in confusion.items()}
    if task == "summarization":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        scores = [scorer.score(r, a)["rougeL"].fmeasure for a, r in zip(answers, references, strict=True)]
        return {"rouge_l": sum(scores) / len(scores)}, {}
    if task == "qa":
        pairs = list(zip(answers, references, strict=True))
        exact = sum(normalise_answer(a) == normalise_answer(r) for a, r in pairs) / len(pairs)
        return {"exact_match": exact, "f1": sum(token_f1(a, r) for a, r in pairs) / len(pairs)}, {}
    return {}, {}


def _reference(row: dict) -> str:
    answer = row.get("completion") or row.get("chosen") or []
    return " ".join(m["content"] for m in answer)


def _question(row: dict) -> str:
    return row["prompt"][-1]["content"]


def evaluate_session(
    session, spec, job_dir: Path, rows: list[dict], held_out: str, samples: int = 3, should_stop=_never
) -> EvalReport:
    """Score both sides of an open ChatSession on `rows`; `run_job`'s evaluation and the CLI share this.
    `should_stop` is asked between rows (the worker's Stop); a stop raises EvaluationStopped."""
    from training.chat import GenerationSettings

    task = job_task(job_dir)
    report = EvalReport(job=job_dir.name, task=task, held_out=held_out, rows=len(rows))
    max_length = spec.hyperparameters.context_length
    for side, tuned in (("base", False), ("tuned", True)):
        loss = answer_loss(session, rows, tuned, max_length, should_stop)
        getattr(report, side).update({"loss": loss, "perplexity": math.exp(min(loss, 50.0))})
    chat_rows = [row for row in rows if "prompt" in row]
    scored = chat_rows if task in ANSWER_TOKENS else chat_rows[:samples]
    answers: dict[str, list[str]] = {}
    for side, tuned in (("base", False), ("tuned", True)):
        settings = GenerationSettings(max_new_tokens=ANSWER_TOKENS.get(task, SAMPLE_ANSWER_TOKENS))
        answers[side] = [
            session.reply(row["prompt"], tuned=tuned, settings=settings).strip()
            for row in rows_until_stopped(scored, should_stop)
        ]
    if task in ANSWER_TOKENS and scored:
        references = [_reference(row) for row in scored]
        labels = (job_labels(job_dir) or sorted(set(references))) if task == "classification" else []
        for side in ("base", "tuned"):
            scores, confusion = task_scores(task, answers[side], references, labels)
            getattr(report, side).update(scores)
            if confusion:
                report.confusion[side] = confusion
    report.samples = [
        {"prompt": _question(row), "reference": _reference(row), "base": base, "tuned": tuned}
        for row, base, tuned in zip(scored[:samples], answers["base"], answers["tuned"], strict=False)
    ]
    (job_dir / jobdir.EVALUATION).write_text(json.dumps(report.to_dict(), indent=1))
    return report


def evaluate_job(
    job_dir: Path, token: str | None = None, max_rows: int = 50, samples: int = 5, should_stop=_never
) -> EvalReport:
    """Load the finished job's base and tuned models and compare them; writes JOB_DIR/eval.json."""
    from training.chat import ChatSession

    job_dir = Path(job_dir)
    spec = load_job_spec(job_dir)
    if spec.method.objective == "reward":
        raise UserError(
            f"{job_dir.name} is a reward model: its training log already shows how often it prefers the better "
            "answer. Score answers with `python app.py score`."
        )
    rows, held_out = held_out_rows(spec, token)
    session = ChatSession(job_dir, token=token, share_base_weights=True)
    if spec.method.objective == "grpo":  # no answers to compare with: the job's own rewards score both sides
        from training.grpo import evaluate_rewards

        return evaluate_rewards(session, spec, job_dir, rows[:max_rows], held_out, samples, should_stop, token)
    return evaluate_session(session, spec, job_dir, rows[:max_rows], held_out, samples, should_stop)


def read_report(job_dir: Path) -> EvalReport | None:
    path = Path(job_dir) / jobdir.EVALUATION
    if not path.is_file():
        return None
    return EvalReport(**json.loads(path.read_text()))
