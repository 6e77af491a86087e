"""hyperparameters.packing: rows packed into one padding-free row still attend only to themselves (the
model reads each row's positions as its own), and a packed job trains with the trainer's own collator."""

from __future__ import annotations

import pytest


def test_a_packed_row_reads_each_example_apart(tiny_model_dir):
    """TRL's padding-free collator flattens a batch into one row with restarting position ids; the logits of
    the second example must be the same as when it is run alone, or packing would train on cross-talk.
    Run without a KV cache, as TRL's SFTTrainer.compute_loss runs the model: transformers reads packed rows
    from the position ids only then (with a cache the same call mixes them)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    first, second = list(range(10, 30)), list(range(200, 212))
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collate([{"input_ids": first}, {"input_ids": second}])
    assert batch["input_ids"].shape == (1, len(first) + len(second))
    assert batch["position_ids"][0, len(first)].item() == 0  # the second example starts again at 0
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[
            0, len(first) :
        ]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_a_packed_job_trains_and_says_so(tiny_spec, tmp_path):
    from training.engine import run_job
    from training.events import Progress

    spec = tiny_spec.with_overrides({"hyperparameters.packing": True, "hyperparameters.max_steps": 2})
    job_dir = tmp_path / "packed"
    job_dir.mkdir()
    (job_dir / "spec.yaml").write_text(spec.to_yaml())
    events: list = []
    run_job(spec, job_dir, events.append, lambda: False)
    losses = [e.loss for e in events if isinstance(e, Progress) and e.loss is not None]
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # trained, no NaN
