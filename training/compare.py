"""Compare runs: curves, the settings that differ, final metrics and evaluation scores, best marked.

Everything is read from the job folders alone (spec.yaml, events.jsonl, status.json, eval.json), so
a job made by the CLI, by the wizard, by an earlier run of the app, or one still running, compares
the same way. `app.py compare` prints the table; the wizard's Runs tab draws it and the curves.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training import jobdir
from training.errors import UserError
from training.events import parse_event
from training.jobdir import read_status
from training.spec import JobSpec
from training.sweep import sweep_of

BEST = "★"
LOWER_IS_BETTER = ("loss", "perplexity", "wall time")


@dataclass
class Run:
    """One job, as a comparison needs it."""

    name: str
    job_dir: Path
    spec: JobSpec
    state: str
    train_loss: list[tuple[int, int, float]] = field(default_factory=list)  # (step, tokens seen, loss)
    eval_loss: list[tuple[int, int, float]] = field(default_factory=list)
    wall_seconds: float | None = None
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)  # "base"/"tuned" -> metric -> value
    sweep: dict | None = None

    @property
    def final_train_loss(self) -> float | None:
        return self.train_loss[-1][2] if self.train_loss else None

    @property
    def final_eval_loss(self) -> float | None:
        return self.eval_loss[-1][2] if self.eval_loss else None

    @property
    def best_eval_loss(self) -> float | None:
        values = [v for *_, v in self.eval_loss if math.isfinite(v)]
        return min(values) if values else None


def load_run(job_dir: str | Path) -> Run:
    job_dir = Path(job_dir)
    spec = jobdir.load_job_spec(job_dir)  # refuses a folder that is not a job's
    status = read_status(job_dir)
    run = Run(job_dir.name, job_dir, spec, status.get("state", "unknown"), sweep=sweep_of(job_dir))
    train_seconds, tokens = None, 0
    events = job_dir / jobdir.EVENTS
    lines = events.read_text(encoding="utf-8", errors="replace").splitlines() if events.is_file() else []
    for line in lines:
        record = parse_event(line)
        if record is None:
            continue
        if record["type"] == "progress" and record.get("loss") is not None:
            tokens = int(record.get("tokens_seen") or 0)
            # A resumed run repeats steps after its checkpoint: the newer points replace the older
            run.train_loss = [p for p in run.train_loss if p[0] < record["step"]]
            run.train_loss.append((record["step"], tokens, float(record["loss"])))
        elif record["type"] == "eval":
            run.eval_loss = [p for p in run.eval_loss if p[0] < record["step"]]
            run.eval_loss.append((record["step"], tokens, float(record["eval_loss"])))
        elif record["type"] == "finished":
            train_seconds = record.get("train_seconds")
            run.state = "stopped" if record.get("stopped_early") else "completed"
        elif record["type"] == "failed":
            run.state = "failed"
    started, ended = status.get("started_at"), status.get("ended_at")
    if started and ended and ended >= started:
        run.wall_seconds = ended - started
    elif started and run.state == "running":
        run.wall_seconds = time.time() - started  # so far
    elif train_seconds:
        run.wall_seconds = train_seconds
    try:
        report = json.loads((job_dir / jobdir.EVALUATION).read_text())
        run.evaluation = {side: dict(report.get(side) or {}) for side in ("base", "tuned")}
    except (OSError, ValueError, AttributeError):
        pass
    return run


def load_runs(job_dirs: list[str | Path]) -> list[Run]:
    if len(job_dirs) < 2:
        raise UserError("Compare needs at least two jobs.")
    return [load_run(path) for path in job_dirs]


def flat_settings(spec: JobSpec) -> dict[str, Any]:
    flat = {}
    for section, values in spec.model_dump(mode="json").items():
        if isinstance(values, dict):
            flat.update({f"{section}.{name}": value for name, value in values.items()})
        else:
            flat[section] = values
    return flat


def differing_settings(runs: list[Run]) -> dict[str, list[Any]]:
    """Only the settings that differ between the runs (the name always differs, so it is left out)."""
    settings = [flat_settings(run.spec) for run in runs]
    paths = [p for p in settings[0] if p not in ("name", "sweep")]
    return {p: [s.get(p) for s in settings] for p in paths if len({json.dumps(s.get(p)) for s in settings}) > 1}


def best_run(runs: list[Run]) -> Run | None:
    """The run with the lowest validation loss (the best point seen); without any, the lowest training loss."""
    scored = [(r.best_eval_loss, r) for r in runs if r.best_eval_loss is not None]
    if not scored:
        scored = [(r.final_train_loss, r) for r in runs if r.final_train_loss is not None]
    return min(scored, key=lambda item: item[0])[1] if scored else None


@dataclass
class Row:
    label: str
    values: list[Any]
    better: str | None = None  # "lower" or "higher": the best value is marked; None: nothing to rank

    def best_index(self) -> int | None:
        numbers = [(v, i) for i, v in enumerate(self.values) if isinstance(v, int | float) and math.isfinite(v)]
        if self.better is None or len(numbers) < 2 or len({v for v, _ in numbers}) < 2:
            return None
        return (min if self.better == "lower" else max)(numbers)[1]


def comparison_rows(runs: list[Run]) -> list[Row]:
    rows = [Row("state", [r.state for r in runs])]
    if any(r.sweep for r in runs):
        rows.append(Row("sweep", [r.sweep["sweep"] if r.sweep else "-" for r in runs]))
    rows += [Row(path, values) for path, values in differing_settings(runs).items()]
    rows += [
        Row("final training loss", [r.final_train_loss for r in runs], "lower"),
        Row("final validation loss", [r.final_eval_loss for r in runs], "lower"),
        Row("best validation loss", [r.best_eval_loss for r in runs], "lower"),
        Row("steps", [r.train_loss[-1][0] if r.train_loss else None for r in runs]),
        Row("tokens seen", [r.train_loss[-1][1] if r.train_loss else None for r in runs]),
        Row("wall time", [r.wall_seconds for r in runs], "lower"),
    ]
    metrics = list(dict.fromkeys(m for r in runs for m in r.evaluation.get("tuned", {})))
    for metric in metrics:
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        rows.append(Row(f"eval {metric} (base)", [r.evaluation.get("base", {}).get(metric) for r in runs]))
        rows.append(Row(f"eval {metric} (tuned)", [r.evaluation.get("tuned", {}).get(metric) for r in runs], better))
    return [row for row in rows if any(v is not None for v in row.values)]


def format_value(label: str, value: Any) -> str:
    if value is None:
        return "-"
    if label == "wall time":
        seconds = int(value)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{value:.1f}s"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of text cells, the best value of each ranked row marked with ★."""
    best = best_run(runs)
    header = ["", *[f"{r.name}{' ' + BEST + ' best' if r is best else ''}" for r in runs]]
    cells = []
    for row in comparison_rows(runs):
        marked = row.best_index()
        texts = [format_value(row.label, v) + (f" {BEST}" if i == marked else "") for i, v in enumerate(row.values)]
        cells.append([row.label, *texts])
    return header, cells


def to_text(runs: list[Run]) -> str:
    header, cells = table(runs)
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *cells]
    ]
    best = best_run(runs)
    by = "validation loss" if best and best.best_eval_loss is not None else "training loss"
    footer = f"\n{BEST} marks the best value in each row; best run by {by}: {best.name}" if best else ""
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]]) + footer


def to_markdown(runs: list[Run]) -> str:
    header, cells = table(runs)

    def line(items):
        return "| " + " | ".join(str(i).replace("|", "\\|") for i in items) + " |"

    return "\n".join([line(header), "|---" * len(header) + "|", *[line(c) for c in cells]])


def curve_points(runs: list[Run]) -> list[dict[str, Any]]:
    """One record per point for the overlaid plots: run, metric, step, tokens seen, value."""
    points = []
    for run in runs:
        for metric, series in (("training loss", run.train_loss), ("validation loss", run.eval_loss)):
            points += [
                {"run": run.name, "metric": metric, "step": s, "tokens": t, "loss": v}
                for s, t, v in series
                if math.isfinite(v)
            ]
    return points
