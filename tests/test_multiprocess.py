"""A job over two processes (accelerate launch, gloo on this CPU) behaves like a one-process job:
one set of events, one adapter, and stop and resume work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import wait_for

from training.jobs import JobManager

pytestmark = pytest.mark.slow


def progress_steps(job_dir: Path) -> list[int]:
    lines = (job_dir / "events.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["type"] == "progress"]


def test_two_processes_train_one_job_and_stop_and_resume_like_one(tiny_spec, tmp_path):
    spec = tiny_spec.with_overrides(
        {
            "hyperparameters.devices": 2,
            "hyperparameters.max_steps": 40,
            "hyperparameters.batch_size": 2,
            "data.validation_split": 0.0,  # every row a training row, so the epoch below counts them all
        }
    )
    manager = JobManager(tmp_path)
    job_id = manager.start(spec)
    job_dir = tmp_path / job_id
    assert wait_for(lambda: manager.snapshot(job_id).step >= 2, timeout=300)
    manager.stop(job_id)
    stopped = manager.wait(job_id, timeout=120)
    assert stopped.state == "stopped", (stopped.message, (job_dir / "worker.log").read_text()[-2000:])
    assert any("2 processes" in line for line in stopped.logs)
    steps = progress_steps(job_dir)
    assert steps == list(range(1, len(steps) + 1))  # one writer: each step logged once

    manager.resume(job_id)
    done = manager.wait(job_id, timeout=300)
    assert done.state == "completed" and done.step == 40
    assert (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    curve = [step for step, _ in done.train_loss]
    assert curve == list(range(1, 41))
    # Data parallel: each step takes 2 rows on each of 2 processes, so an epoch is rows/4 steps (one process: rows/2)
    rows = sum(s["rows_kept"] for s in json.loads((job_dir / "data.json").read_text())["sources"])
    assert done.epoch == pytest.approx(40 / math.ceil(rows / 4), rel=0.01)


def log_messages(job_dir: Path) -> list[str]:
    lines = (job_dir / "events.jsonl").read_text().splitlines()
    return [r["message"] for r in map(json.loads, lines) if r["type"] == "log"]


def test_fsdp_full_fine_tune_shards_stops_resumes_and_saves_the_model_once(tiny_spec, tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    spec = tiny_spec.with_overrides(
        {
            "method.type": "full",
            "hyperparameters.devices": 2,
            "hyperparameters.distributed": "fsdp",
            "hyperparameters.max_steps": 30,
            "hyperparameters.batch_size": 2,
        }
    )
    manager = JobManager(tmp_path)
    job_id = manager.start(spec)
    job_dir = tmp_path / job_id
    assert wait_for(lambda: manager.snapshot(job_id).step >= 2, timeout=300)
    manager.stop(job_id)
    stopped = manager.wait(job_id, timeout=120)
    assert stopped.state == "stopped", (stopped.message, (job_dir / "worker.log").read_text()[-3000:])
    assert any("2 processes, weights sharded with FSDP" in line for line in stopped.logs)
    saved = sorted(job_dir.glob("checkpoints/checkpoint-*/COMPLETE"))
    assert len(saved) == 1
    checkpoint = saved[0].parent
    # Only an FSDP run writes accelerate's FSDP model file (plain DDP, which accelerate silently falls back
    # to on a CPU, would not): the sharding really happened
    assert (checkpoint / "pytorch_model_fsdp.bin").is_file()
    stopped_at = int(checkpoint.name.split("-")[1])
    assert progress_steps(job_dir) == list(range(1, stopped_at + 1))

    manager.resume(job_id)
    done = manager.wait(job_id, timeout=300)
    assert done.state == "completed" and done.step == 30, (done.message, (job_dir / "worker.log").read_text()[-3000:])
    assert f"resuming from checkpoint-{stopped_at}" in log_messages(job_dir)
    assert progress_steps(job_dir) == list(range(1, 31))  # one writer, and the resumed run went on from the checkpoint

    # The final weights: written once (one file set, by rank 0), whole tensors in the standard layout
    assert sorted(p.name for p in (job_dir / "model").glob("*.safetensors")) == ["model.safetensors"]
    trained = AutoModelForCausalLM.from_pretrained(job_dir / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for (name, new), (_, old) in zip(trained.named_parameters(), base.named_parameters(), strict=True):
        assert new.shape == old.shape, name  # gathered, not one rank's shard
    changed = [
        name
        for (name, new), (_, old) in zip(trained.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(new, old)
    ]
    assert "model.layers.0.mlp.down_proj.weight" in changed and "model.embed_tokens.weight" in changed
    # The gathered state dict holds the tied head as its own copy of the embeddings; it must stay identical
    saved = load_file(job_dir / "model" / "model.safetensors")
    assert torch.equal(
        saved.get("lm_head.weight", saved["model.embed_tokens.weight"]), saved["model.embed_tokens.weight"]
    )


def test_fsdp_lora_writes_one_loadable_adapter(tiny_spec, tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec = tiny_spec.with_overrides(
        {
            "hyperparameters.devices": 2,
            "hyperparameters.distributed": "fsdp",
            "hyperparameters.max_steps": 3,
            "hyperparameters.batch_size": 2,
            "hyperparameters.learning_rate": 1e-2,
            "method.lora_r": 4,
        }
    )
    manager = JobManager(tmp_path)
    job_id = manager.start(spec)
    job_dir = tmp_path / job_id
    done = manager.wait(job_id, timeout=300)
    assert done.state == "completed" and done.step == 3, (done.message, (job_dir / "worker.log").read_text()[-3000:])
    assert any("weights sharded with FSDP" in line for line in done.logs)
    assert progress_steps(job_dir) == [1, 2, 3]
    assert not (job_dir / "model").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_weights = {name: p.clone() for name, p in base.named_parameters()}
    tuned = PeftModel.from_pretrained(base, job_dir / "adapter")
    lora_b = [p for name, p in tuned.named_parameters() if "lora_B" in name]
    assert len(lora_b) == 2 * 7  # 2 layers × 7 projections, each a whole (gathered) matrix of rank 4
    assert all(p.shape[1] == 4 for p in lora_b)
    assert any(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at zero: the adapter learned something
    for name, p in tuned.base_model.model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base_weights[name.replace(".base_layer", "")]), name  # the base stays frozen
