"""The narrow interface between the engine and everything that watches it.

The engine only ever calls `emit(event)`; the worker appends each event as one JSON line to
`events.jsonl`, and the JobManager folds those lines into a snapshot for the UI and the CLI.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, dataclass_transform


# Every subclass is made a frozen dataclass here, so no event can be left mutable by a missing
# decorator; dataclass_transform tells type checkers so.
@dataclass_transform(frozen_default=True)
@dataclass(frozen=True)
class Event:
    # The "type" of each JSON line: the event's class name, lowercased (Progress -> "progress")
    type: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type = cls.__name__.lower()
        dataclass(frozen=True)(cls)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}

    def to_json(self) -> str:
        # allow_nan: a diverging run must show its NaN loss, not hide it
        return json.dumps(self.to_dict(), allow_nan=True)


class Status(Event):
    """A phase change: loading_model, preparing_data, training, saving, ..."""

    phase: str
    detail: str = ""


class Progress(Event):
    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    tokens_seen: int = 0
    eta_seconds: float | None = None
    # Preference objectives only (DPO, reward): how far the better answer scores above the worse
    # one, and how often it scores higher at all
    reward_margin: float | None = None
    reward_accuracy: float | None = None
    # GRPO only: the mean reward of the answers generated this step (weighted total, and per reward
    # function), its spread, the KL from the starting model, and the answers' mean length in tokens
    reward_mean: float | None = None
    reward_std: float | None = None
    kl: float | None = None
    completion_length: float | None = None
    rewards_by_function: dict[str, float] | None = None


class Eval(Event):
    step: int
    eval_loss: float


class Samples(Event):
    """GRPO: a few answers the model just wrote, each with its prompt, rewards and weighted total."""

    step: int
    samples: list[dict[str, Any]]


class Log(Event):
    message: str
    level: str = "info"


class Finished(Event):
    output_dir: str
    stopped_early: bool = False
    final_loss: float | None = None
    train_seconds: float = 0.0


class Failed(Event):
    message: str
    hint: str = ""


EVENT_TYPES = {cls.type: cls for cls in (Status, Progress, Eval, Log, Finished, Failed, Samples)}


def parse_event(line: str) -> dict[str, Any] | None:
    """Read one events.jsonl line; a torn last line (worker killed mid-write) is skipped, not fatal."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get("type") in EVENT_TYPES else None
