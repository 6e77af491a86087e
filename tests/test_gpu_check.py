"""The GPU check (benchmarks/gpu_check.py) cannot rot between GPU runs: its CPU smoke runs every part's code
path here, and the shipped model configs are the published architectures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# Published parameter counts (billions) of the models whose config.json the check ships
PUBLISHED_SIZES = {
    "smollm2-135m": 0.135,
    "qwen2.5-0.5b": 0.494,
    "qwen2.5-1.5b": 1.54,
    "qwen2.5-7b": 7.62,
    "llama-3.2-1b": 1.24,
    "llama-3.2-3b": 3.21,
    "llama-3.1-8b": 8.03,
}


def test_shipped_configs_are_the_published_architectures():
    from gpu_runs import CONFIG_DIR, model_config

    from training.sizes import ModelShape

    assert sorted(path.stem for path in CONFIG_DIR.glob("*.json")) == sorted(PUBLISHED_SIZES)
    for name, billions in PUBLISHED_SIZES.items():
        parameters = ModelShape.from_config(model_config(name)).parameters()
        assert parameters / 1e9 == pytest.approx(billions, rel=0.01), name  # biases and rounding stay under 1%


def test_flop_count_follows_the_written_formula():
    from gpu_runs import train_flops

    from training.sizes import ModelShape

    shape = ModelShape(
        vocab=100, hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, head_dim=4, tied_embeddings=True
    )
    stats = {"attention_length": 10.0, "answer_share": 0.5}
    body = 2 * (8 * 8 + 8 * 4 + 8 * 4 + 8 * 8 + 3 * 8 * 16)  # q, k, v, o and the three MLP projections, 2 layers
    attention = 6 * 2 * 8 * 10.0 * 1000  # 6 · L · d_q · (Σn²/Σn) per token
    full = train_flops(shape, "full", 1000, stats)
    assert full == pytest.approx(6 * body * 1000 + 6 * 800 * 500 + attention)
    lora = train_flops(shape, "lora", 1000, stats, lora_parameters=50)
    assert lora == pytest.approx(4 * body * 1000 + 4 * 800 * 500 + attention + 6 * 50 * 1000)


@pytest.mark.trains
def test_cpu_smoke_runs_every_part_and_writes_the_results(tmp_path):
    out = tmp_path / "gpu_check.json"
    # A generous budget: the smoke measures nothing here, it proves the code path (a shared CPU can be slow)
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--cpu-smoke", "--budget", "1500", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    parts = results["parts"]
    assert results["environment"]["smoke"] is True

    speed = parts["speed"]
    assert speed["status"] == "ok"
    variants = {run["variant"]: run for run in speed["runs"]}
    assert {"plain TRL", "ours", "ours, random batches", "ours, fp32", "ours, eager attention"} <= set(variants)
    assert all(run["status"] == "ok" for run in speed["runs"]), speed["runs"]
    assert all(run["tokens_per_s"] > 0 and 0 < run["mfu"] < 1 for run in speed["runs"])
    # The same rows train every variant: one epoch of them, so the same real tokens
    assert len({run["tokens"] for run in speed["runs"]}) == 1
    grouped, random = variants["ours"]["tokens_per_s"], variants["ours, random batches"]
    assert random["ours_over_this"] == pytest.approx(grouped / random["tokens_per_s"], rel=0.01)
    assert random["verdict"] in ("our default helped", "ours slower", "same")

    memory = parts["memory"]
    assert memory["status"] == "ok"
    runs = memory["runs"]
    assert len(runs) >= 5 and all(run["status"] == "ok" for run in runs), runs
    assert {("full" in run["config"], "gc=on" in run["config"]) for run in runs} == {
        (False, False),
        (False, True),
        (True, False),
        (True, True),
    }
    for run in runs:
        assert run["estimate_gb"] > 0 and run["held_gb"] > 0
        # the GB figures are rounded to 4 places, which is coarse for the smoke's tiny models
        assert 1 + run["memory_error"] == pytest.approx(run["estimate_gb"] / run["held_gb"], rel=0.05)
        assert run["step_s_actual"] > 0 and run["step_s_after_measure"] > 0 and run["step_s_before_measure"] > 0
    assert abs(memory["worst_memory_error"]) == max(abs(run["memory_error"]) for run in runs)

    qlora = parts["qlora"]  # bitsandbytes trains 4-bit on this CPU, so the QLoRA path runs too
    assert qlora["status"] == "ok", qlora
    assert qlora["loss_is_finite"] and "qlora" in qlora["config"]
    assert parts["multi"]["status"].startswith("skipped: 0 GPUs visible")

    summary = results["summary"]
    assert summary["speedup_ours_over_plain"] > 0 and "worst_memory_error" in summary
    assert "summary:" in done.stdout and "[memory + time]" in done.stdout
