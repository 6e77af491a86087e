"""Every assistant turn is trained, no user token is, and the spans come from each model's own template.

The labels asserted here are the ones the trainer reads: rows go through `prepare_sft` (what
`build_trainer` hands TRL) or through a real trainer's dataset and collator.
"""

from __future__ import annotations

import json

import pytest
from chat_templates import CHATML_DROPS_EARLIER_REASONING, CHATML_MARKED, GEMMA, LLAMA3, MISTRAL, with_template

from training.data.masking import IGNORED, LAST_TURN, label_conversation, prepare_sft, sft_rows

CONVERSATION = [
    {"role": "user", "content": "First question?"},
    {"role": "assistant", "content": "Answer one."},
    {"role": "user", "content": "Second question?"},
    {"role": "assistant", "content": "Answer two."},
    {"role": "user", "content": "Third question?"},
    {"role": "assistant", "content": "Answer three."},
]
# Each family's turn markers are single special tokens in its own tokenizer; so they are in these copies
FAMILIES = {
    "chatml": (None, "<|im_end|>\n", []),
    "llama3": (LLAMA3, "<|eot_id|>", ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "mistral": (MISTRAL, "<|im_end|>", ["[INST]", "[/INST]"]),  # eos_token of the embedded tokenizer
    "gemma": (GEMMA, "<end_of_turn>\n", ["<start_of_turn>", "<end_of_turn>"]),
    "generation markers": (CHATML_MARKED, "<|im_end|>", []),
}


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def family_tokenizer(tokenizer, name):
    template, _, specials = FAMILIES[name]
    if template is None:
        return tokenizer
    copied = with_template(tokenizer, template)
    if specials:
        copied.add_special_tokens({"additional_special_tokens": specials})
    return copied


def trained_runs(tokenizer, ids, labels) -> list[str]:
    """The trained tokens, decoded run by run (a run = consecutive trained positions)."""
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORED:
            assert label == token  # a trained position predicts its own token (TRL shifts later)
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_assistant_turn_is_trained_and_no_user_token_in_each_template_family(tokenizer, family):
    tok = family_tokenizer(tokenizer, family)
    end = FAMILIES[family][1]
    example = {"prompt": CONVERSATION[:-1], "completion": CONVERSATION[-1:]}
    train, _, counts = prepare_sft(tok, [example], None, "all_assistant_turns", 512)
    row = train[0]
    runs = trained_runs(tok, row["input_ids"], row["labels"])
    leading = " " if family == "mistral" else ""  # Mistral's template puts a space before each answer
    assert runs == [f"{leading}Answer one.{end}", f"{leading}Answer two.{end}", f"{leading}Answer three.{end}"]
    trained = tok.decode([t for t in row["labels"] if t != IGNORED])
    assert "question" not in trained and "user" not in trained
    assert counts["train"]["kept"] == 1 and counts["train"]["dropped"] == 0


def test_last_assistant_turn_trains_only_the_final_answer(tokenizer):
    labelled = label_conversation(tokenizer, CONVERSATION, train_on=LAST_TURN)
    assert trained_runs(tokenizer, labelled.input_ids, labelled.labels) == ["Answer three.<|im_end|>\n"]


def test_a_template_that_rewrites_earlier_turns_falls_back_to_the_last_turn_and_says_so(tokenizer):
    tok = with_template(tokenizer, CHATML_DROPS_EARLIER_REASONING)
    conversation = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "<think>hm</think> A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "<think>so</think> A2"},
    ]
    prepared = sft_rows(
        tok, [{"prompt": conversation[:-1], "completion": conversation[-1:]}], "all_assistant_turns", 512
    )
    row = prepared.rows[0]
    assert trained_runs(tok, row["input_ids"], row["labels"]) == ["<think>so</think> A2<|im_end|>\n"]
    assert list(prepared.notes) == [
        "the model's chat template renders earlier turns differently inside the whole conversation, so only the "
        "last assistant answer is trained in these rows"
    ]


def test_the_trainer_reads_these_labels(tiny_spec, tmp_path):
    """build_trainer over a multi-turn file: the collated batch's labels are exactly the three answers."""
    from training.data import build_datasets
    from training.engine import build_trainer, load_model
    from training.hardware import plan_for

    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps({"messages": CONVERSATION}) for _ in range(4)) + "\n")
    spec = tiny_spec.with_overrides({"data.source": str(data), "data.validation_split": 0.0})
    plan = plan_for(spec)
    model, tok = load_model(spec, plan, None)
    train, _ = build_datasets(spec.data, spec.hyperparameters.seed)
    trainer = build_trainer(spec, plan, model, tok, train, None, [], tmp_path / "checkpoints")
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0].tolist()
    ids = batch["input_ids"][0].tolist()
    assert trained_runs(tok, ids, labels) == [
        "Answer one.<|im_end|>\n",
        "Answer two.<|im_end|>\n",
        "Answer three.<|im_end|>\n",
    ]
    assert trainer.lathe_data_counts["train"]["kept"] == 4
