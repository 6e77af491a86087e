"""Sizes from the config alone match the real model, and a disk too small is caught before launch."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest

from training.engine import run_job
from training.preflight import preflight_problems
from training.sizes import ModelShape, disk_needed, read_shape
from training.spec import JobSpec

Usage = namedtuple("Usage", "total used free")


def test_parameter_counts_from_the_config_match_the_real_model_and_peft(embedded_model_dir):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from training.engine import to_lora_config

    shape = read_shape(str(embedded_model_dir))
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
    assert shape.parameters() == model.num_parameters()
    for targets in ("all-linear", "attention", "q_proj,v_proj"):
        spec = JobSpec().with_overrides({"method.lora_r": 8, "method.target_modules": targets})
        peft_model = get_peft_model(model, to_lora_config(spec))
        trainable, _ = peft_model.get_nb_trainable_parameters()
        assert shape.lora_parameters(8, targets) == trainable, targets
        model = peft_model.unload()


def test_a_config_we_cannot_read_gives_no_estimate_rather_than_a_wrong_one(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery"}))
    assert read_shape(str(tmp_path)) is None
    assert read_shape("org/not-downloaded") is None  # a Hub id whose config is not cached here


def test_the_checkpoint_estimate_matches_a_real_full_fine_tune(tiny_spec, tiny_model_dir, tmp_path):
    spec = tiny_spec.with_overrides({"method.type": "full", "hyperparameters.max_steps": 1})
    run_job(spec, tmp_path, lambda event: None, lambda: False)
    checkpoint = tmp_path / "checkpoints" / "checkpoint-1"
    weights_and_optimizer = sum((checkpoint / name).stat().st_size for name in ("model.safetensors", "optimizer.pt"))
    shape = read_shape(str(tiny_model_dir))
    assert weights_and_optimizer == pytest.approx(3 * 4 * shape.parameters(), rel=0.03)
    assert disk_needed(spec, shape, "cpu") > 2 * weights_and_optimizer  # two kept checkpoints' worth, at least


def test_a_disk_too_small_for_the_checkpoints_is_refused_before_launch(tiny_spec, tmp_path, monkeypatch):
    full = tiny_spec.with_overrides({"method.type": "full"})
    assert not [p for p in preflight_problems(full, tmp_path) if p[0] == "output.save_total_limit"]
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    problems = dict(preflight_problems(full, tmp_path / "jobs" / "not-yet-made"))
    message = problems["output.save_total_limit"]
    assert "GB of disk" in message and "0.0 GB free" in message and "use LoRA" in message


def test_qlora_compute_type_the_device_lacks_is_refused_with_what_will_run(tiny_spec):
    import torch

    if torch.cuda.is_available():
        pytest.skip("fp16 compute is fine on a GPU")
    spec = tiny_spec.with_overrides({"method.type": "qlora", "method.qlora_compute_dtype": "fp16"})
    problems = dict(preflight_problems(spec))
    assert "fp16 needs a GPU. Use bf16 or fp32" in problems["method.qlora_compute_dtype"]
    assert not preflight_problems(spec.with_overrides({"method.qlora_compute_dtype": "auto"}))


def test_model_shape_reads_nested_and_untied_configs():
    config = {
        "text_config": {
            "vocab_size": 100,
            "hidden_size": 8,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        }
    }
    shape = ModelShape.from_config(config)
    assert (shape.kv_heads, shape.head_dim, shape.tied_embeddings) == (2, 4, False)
    per_block = 4 * 8 * 8 + 3 * 8 * 16 + 2 * 8
    assert shape.parameters() == 2 * 100 * 8 + 2 * per_block + 8
