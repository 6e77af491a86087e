"""The engine's translators and a real (tiny) training run in-process."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoints import COMPLETE_MARKER
from training.engine import run_job, to_lora_config, to_sft_config
from training.events import Finished, Progress, Status
from training.hardware import Plan, wants_gradient_checkpointing
from training.spec import JobSpec


def test_lora_config_follows_the_spec():
    spec = JobSpec().with_overrides(
        {
            "method.lora_r": 8,
            "method.lora_alpha": 16,
            "method.lora_dropout": 0.1,
            "method.target_modules": "q_proj,v_proj",
        }
    )
    config = to_lora_config(spec)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.1)
    assert set(config.target_modules) == {"q_proj", "v_proj"}
    assert to_lora_config(JobSpec().with_overrides({"method.target_modules": "attention"})).target_modules == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    }
    assert to_lora_config(JobSpec().with_overrides({"method.type": "full"})) is None


def test_sft_config_follows_the_spec(tmp_path):
    spec = JobSpec().with_overrides(
        {
            "hyperparameters.max_steps": 7,
            "hyperparameters.learning_rate": 3e-4,
            "hyperparameters.batch_size": 2,
            "hyperparameters.gradient_accumulation": 4,
            "hyperparameters.warmup_ratio": 0.1,
            "hyperparameters.scheduler": "cosine",
            "hyperparameters.save_steps": 5,
            "hyperparameters.context_length": 256,
        }
    )
    config = to_sft_config(spec, Plan(device="cpu", precision="bf16"), tmp_path, False, has_eval=False)
    assert (config.max_steps, config.learning_rate, config.per_device_train_batch_size) == (7, 3e-4, 2)
    assert (config.gradient_accumulation_steps, config.warmup_steps, config.max_length) == (4, 0.1, 256)
    assert config.lr_scheduler_type == "cosine" and config.save_steps == 5 and config.save_strategy == "steps"
    assert config.bf16 and config.use_cpu and not config.gradient_checkpointing
    assert config.logging_nan_inf_filter is False  # divergence must be visible
    assert config.train_sampling_strategy == "group_by_length"
    assert config.eval_strategy == "no"


def test_gradient_checkpointing_auto_is_off_for_small_models_and_on_for_big_ones_on_gpu():
    spec = JobSpec()
    assert not wants_gradient_checkpointing(spec, Plan("cpu", "bf16"), 8_000_000_000)
    assert not wants_gradient_checkpointing(spec, Plan("cuda", "bf16"), 135_000_000)
    assert wants_gradient_checkpointing(spec, Plan("cuda", "bf16"), 8_000_000_000)
    forced = spec.with_overrides({"hyperparameters.gradient_checkpointing": "on"})
    assert wants_gradient_checkpointing(forced, Plan("cpu", "fp32"), 1)


def test_tiny_run_trains_the_adapter_and_leaves_the_base_alone(tiny_spec, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_before = load_file(tiny_model_dir / "model.safetensors")
    events = []
    run_job(tiny_spec, tmp_path, events.append, lambda: False)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [e.step for e in progress] == [1, 2, 3, 4]  # loss logged every step
    assert all(e.tokens_per_second and e.tokens_seen > 0 for e in progress)
    assert [e.phase for e in events if isinstance(e, Status)] == [
        "preparing_data",
        "loading_model",
        "training",
        "saving",
    ]
    finished = events[-1]
    assert isinstance(finished, Finished) and not finished.stopped_early
    assert list(tmp_path.glob("tensorboard/events.out.tfevents.*"))

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), finished.output_dir)
    lora_b = [p for name, p in tuned.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: training moved it
    base = {
        name.replace(".base_layer", ""): p
        for name, p in tuned.get_base_model().named_parameters()
        if "lora_" not in name
    }
    assert all(torch.equal(base[name], tensor) for name, tensor in base_before.items())
    assert base_before.keys() == load_file(tiny_model_dir / "model.safetensors").keys()


def test_stop_ends_training_at_the_next_step_and_saves_a_complete_checkpoint(tiny_spec, tmp_path):
    spec = tiny_spec.with_overrides({"hyperparameters.max_steps": 50})
    events = []

    def should_stop():  # asked at every step end: stop once step 3 has been logged
        return any(isinstance(e, Progress) and e.step >= 3 for e in events)

    run_job(spec, tmp_path, events.append, should_stop)
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert max(steps) <= 4  # the request raised after step 3's log is honoured at step 4's boundary at the latest
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.stopped_early
    checkpoint = tmp_path / "checkpoints" / f"checkpoint-{max(steps)}"
    assert (checkpoint / COMPLETE_MARKER).is_file()
    assert (Path(finished.output_dir) / "adapter_config.json").is_file()


def test_scoring_only_labelled_positions_changes_nothing_but_speed(tiny_model_dir):
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from training.patches import score_only_labelled_positions

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    add_fused_lm_head(model)
    ids = torch.randint(0, 1000, (2, 12))
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt: masked, as in prompt/completion training
    weight = model.model.layers[0].mlp.down_proj.weight

    def log_probs_and_gradient():
        model.zero_grad()
        log_probs = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
        log_probs.sum().backward()
        return log_probs.detach(), weight.grad.clone()

    saved = trl_utils._use_triton
    try:
        trl_utils._use_triton = kernels._use_triton  # TRL as shipped: every position scored on the CPU
        shipped = log_probs_and_gradient()
        score_only_labelled_positions()
        assert trl_utils._use_triton(torch.device("cpu"))
        compacted = log_probs_and_gradient()
    finally:
        trl_utils._use_triton = saved
    assert torch.allclose(shipped[0], compacted[0], atol=1e-6)
    assert torch.allclose(shipped[1], compacted[1], atol=1e-6)
    assert shipped[1].abs().sum() > 0


def test_resume_continues_exactly_where_the_stopped_run_left_off(tiny_spec, tmp_path):
    from training.checkpoints import latest_complete_checkpoint

    # 16 rows at batch 4: 4 steps an epoch, so the stop lands in the second epoch, whose order a
    # resumed run must reproduce too (length-grouped batches did not, before reproducible_length_grouping)
    spec = tiny_spec.with_overrides({"hyperparameters.max_steps": 12, "data.max_rows": 8})
    straight = []
    run_job(spec, tmp_path / "straight", straight.append, lambda: False)

    events = []
    run_job(
        spec, tmp_path / "resumed", events.append, lambda: any(isinstance(e, Progress) and e.step >= 6 for e in events)
    )
    stopped_at = max(e.step for e in events if isinstance(e, Progress))
    assert 4 < stopped_at < 8 and latest_complete_checkpoint(tmp_path / "resumed").name == f"checkpoint-{stopped_at}"
    (tmp_path / "resumed" / "checkpoints" / "checkpoint-9").mkdir()  # a torn save: no COMPLETE marker
    assert latest_complete_checkpoint(tmp_path / "resumed").name == f"checkpoint-{stopped_at}"
    resumed = []
    run_job(spec, tmp_path / "resumed", resumed.append, lambda: False, resume=True)

    after = [e for e in resumed if isinstance(e, Progress)]
    before = {e.step: e for e in straight if isinstance(e, Progress)}
    assert [e.step for e in after] == list(range(stopped_at + 1, 13))  # optimizer, scheduler, data position back
    for event in after:
        assert event.learning_rate == pytest.approx(before[event.step].learning_rate)
        assert event.loss == pytest.approx(before[event.step].loss, rel=1e-4)
    assert isinstance(resumed[-1], Finished) and not resumed[-1].stopped_early


def test_a_non_finite_loss_stops_the_job_at_that_step_and_saves_nothing_from_it(tiny_spec, tmp_path, monkeypatch):
    from training import engine
    from training.errors import UserError

    original = engine.EventCallback.on_log

    def poisoned(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and state.global_step == 3:
            logs = {**logs, "loss": float("nan")}  # what the Trainer reports when training diverges
        return original(self, args, state, control, logs=logs, **kwargs)

    monkeypatch.setattr(engine.EventCallback, "on_log", poisoned)
    spec = tiny_spec.with_overrides({"hyperparameters.max_steps": 10, "hyperparameters.save_steps": 2})
    events = []
    with pytest.raises(UserError, match="diverged.*step 3"):
        run_job(spec, tmp_path, events.append, lambda: False)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [e.step for e in progress] == [1, 2, 3] and progress[-1].loss != progress[-1].loss  # NaN on the curve
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2"] and not (tmp_path / "adapter").exists()
