"""KTO: single answers marked good or bad train through TRL's KTOTrainer; other objectives refuse them."""

from __future__ import annotations

import json

import pytest

from training.data.load import load_rows
from training.errors import UserError
from training.presets import example_jobs
from training.spec import DataSection


def write_rows(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


UNPAIRED = [
    {"prompt": "What is 2+2?", "completion": "4.", "label": True},
    {"prompt": "What is 2+2?", "completion": "Hard to say.", "label": False},
]


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_unpaired_rows_are_refused_for_sft_and_dpo_naming_kto(tmp_path, objective):
    source = write_rows(tmp_path / "kto.jsonl", UNPAIRED)
    with pytest.raises(UserError, match=r"Train on them with method\.objective: kto"):
        load_rows(DataSection(source=source), objective)


def test_kto_tag_columns_and_text_labels_are_read_as_booleans(tmp_path):
    rows = [
        {"instruction": "Hi?", "output": "Hello!", "kto_tag": "true"},
        {"instruction": "Hi?", "output": "Go away.", "kto_tag": 0},
    ]
    examples = load_rows(DataSection(source=write_rows(tmp_path / "tagged.jsonl", rows)), "kto")
    assert [e["label"] for e in examples] == [True, False]
    assert examples[1]["completion"] == [{"role": "assistant", "content": "Go away."}]
    bad = write_rows(tmp_path / "bad.jsonl", [{**UNPAIRED[0], "label": "maybe"}, UNPAIRED[1]])
    with pytest.raises(UserError, match=r"label\.not_boolean.*line 1"):
        load_rows(DataSection(source=bad), "kto")


def test_preference_pairs_serve_kto_as_one_good_and_one_bad_answer():
    pairs = load_rows(DataSection(source="demo:preferences", max_rows=2), "dpo")
    unpaired = load_rows(DataSection(source="demo:preferences", max_rows=2), "kto")
    assert [(e["completion"], e["label"]) for e in unpaired[:2]] == [
        (pairs[0]["chosen"], True),
        (pairs[0]["rejected"], False),
    ]


def test_kto_needs_marked_answers_not_plain_chat():
    with pytest.raises(UserError, match="kto needs answers marked good or bad"):
        load_rows(DataSection(source="demo:identity"), "kto")


def test_kto_trains_through_kto_trainer_and_the_desirable_answers_reward_rises_above_the_undesirable(
    tiny_spec, tmp_path
):
    from trl import KTOTrainer

    from training.data import build_datasets
    from training.engine import EventCallback, build_trainer, load_model
    from training.events import Progress
    from training.hardware import plan_for

    spec = example_jobs()["kto-demo"].with_overrides(
        {
            "model.name_or_path": tiny_spec.model.name_or_path,
            "data.max_rows": 16,
            "data.validation_split": 0.0,
            "hyperparameters.max_steps": 8,
            "hyperparameters.epochs": None,
            "hyperparameters.learning_rate": 3e-3,
            "hyperparameters.context_length": 128,
            "hyperparameters.precision": "fp32",
            "output.evaluate": False,
        }
    )
    plan = plan_for(spec)
    model, tokenizer = load_model(spec, plan, None)
    train, _ = build_datasets(spec.data, spec.hyperparameters.seed, "kto")
    events = []
    callback = EventCallback(events.append, lambda: False)
    trainer = build_trainer(spec, plan, model, tokenizer, train, None, [callback], tmp_path / "checkpoints")
    assert isinstance(trainer, KTOTrainer)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "rewards/chosen" in log]
    assert len(logs) >= 6
    assert logs[0]["rewards/chosen"] == logs[0]["rewards/rejected"] == 0.0  # the policy starts as the reference
    # The desirable answers' reward ends above the undesirable ones' in every late step (random tiny model:
    # both move, the gap is what KTO trains)
    assert all(log["rewards/chosen"] > log["rewards/rejected"] + 0.05 for log in logs[-3:])
    margins = [e.reward_margin for e in events if isinstance(e, Progress) and e.reward_margin is not None]
    assert len(margins) == len(logs) and margins[0] == 0.0 and min(margins[-3:]) > 0.1  # the monitor's curve
