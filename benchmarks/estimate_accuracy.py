"""How close the memory and time estimates come to reality, on this machine, for several configurations,
on each precision path: every configuration runs with `precision: auto` (bf16 autocast on a CPU with
fast bf16, fp32 elsewhere) and with forced fp32 (the path of CPUs without bf16).

    python benchmarks/estimate_accuracy.py [--modes auto,fp32] [--configs 1,2,7]

Each configuration trains the embedded model for a few steps in a fresh process on rows that fill
the context (so every micro-batch has the same shape). The process records its RSS after imports
(the baseline) and its peak RSS after training; the difference is compared with the estimate.
The time check is calibrated as the wizard's Measure would be: the first steps give the speed,
the estimate for the later steps is compared with how long they took. It prints the CPU kind first;
the last lines are `worst_memory_error[MODE]: X%` (target ≤ 15) and `worst_time_error[MODE]: Y%`
(target ≤ 20) for each mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from training.estimate import MEASURE_STEPS  # noqa: E402

CONFIGS = [
    {"method.type": "lora", "method.lora_r": 8, "hyperparameters.context_length": 128, "hyperparameters.batch_size": 1},
    {
        "method.type": "lora",
        "method.lora_r": 64,
        "hyperparameters.context_length": 512,
        "hyperparameters.batch_size": 4,
    },
    {
        "method.type": "lora",
        "method.lora_r": 8,
        "hyperparameters.context_length": 512,
        "hyperparameters.batch_size": 4,
        "hyperparameters.gradient_checkpointing": "on",
    },
    {"method.type": "lora", "method.lora_r": 8, "hyperparameters.context_length": 512, "hyperparameters.batch_size": 1},
    {
        "method.type": "full",
        "hyperparameters.context_length": 128,
        "hyperparameters.batch_size": 1,
        "hyperparameters.learning_rate": 1e-5,
    },
    {
        "method.type": "full",
        "hyperparameters.context_length": 512,
        "hyperparameters.batch_size": 4,
        "hyperparameters.gradient_checkpointing": "on",
        "hyperparameters.learning_rate": 1e-5,
    },
]
CONFIGS.append(  # like a real uploaded job: batch 8 x 512 tokens, LoRA r=16, long prompts and short answers
    {
        "method.type": "lora",
        "method.lora_r": 16,
        "hyperparameters.context_length": 512,
        "hyperparameters.batch_size": 8,
        "rows": "short_answers",
    }
)
# The time is calibrated on the steps the wizard's Measure runs (the first warms up, the rest give the speed),
# then checked on the next three; the peak comes with the first optimizer steps
CALIBRATION_STEPS, MEASURED_STEPS = MEASURE_STEPS, 3

CHILD = r"""
import json, resource, sys, time
import psutil
sys.path.insert(0, {root!r})
from training.engine import build_trainer, load_model
from training.data import build_datasets
from training.hardware import plan_for
from training.spec import JobSpec
from transformers import TrainerCallback
baseline = psutil.Process().memory_info().rss
spec = JobSpec.model_validate(json.loads({spec!r}))
plan = plan_for(spec)
model, tokenizer = load_model(spec, plan, token=None)
train, _ = build_datasets(spec.data, spec.hyperparameters.seed)
times = []
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        times.append(time.monotonic())
trainer = build_trainer(spec, plan, model, tokenizer, train, None, [Clock()], {out!r})
trainer.train()
tokens = [len(r) for r in trainer.train_dataset["input_ids"]]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT", json.dumps({{"increase": peak - baseline, "times": times, "row_tokens": max(tokens),
      "answer_share": sum(sum(l != -100 for l in r) for r in trainer.train_dataset["labels"]) / sum(tokens)}}))
"""


def rows_file(folder: Path, kind: str = "long_answers") -> str:
    """Rows long enough to fill any context here: a short question and a long answer, or (short_answers)
    a long question and a one-line answer, so most tokens are masked from the loss."""
    path = folder / f"{kind}.jsonl"
    text = " ".join(f"river{i % 50} stone light" for i in range(400))
    turns = {
        "long_answers": lambda n: (f"Tell me story {n}.", text),
        # ~420 tokens of question: with the answer it still fits a 512 context (a cut answer drops the row)
        "short_answers": lambda n: (f"Story {n}: {' '.join(text.split()[:240])}", "Yes, that is the story."),
    }[kind]
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": turns(n)[0]}, {"role": "assistant", "content": turns(n)[1]}]}
        )
        for n in range(64)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def main() -> int:
    import argparse

    from training.cpu_tuning import cpu_kind
    from training.estimate import (
        GB,
        Device,
        estimate_memory,
        estimate_seconds,
        flops_per_token,
        peak_flops,
        precision_path,
    )
    from training.hardware import detect_hardware
    from training.models import embedded_model_dir
    from training.sizes import read_shape
    from training.spec import JobSpec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="auto,fp32", help="Precision settings to run, comma-separated.")
    parser.add_argument("--configs", help="Configuration numbers to run (default: all), e.g. 1,2,7.")
    parser.add_argument(
        "--memory-only", action="store_true", help="One step each: the memory peak, no time check (a busy machine)."
    )
    options = parser.parse_args()
    modes = options.modes.split(",")
    chosen = {int(n) for n in options.configs.split(",")} if options.configs else set(range(1, len(CONFIGS) + 1))
    hardware = detect_hardware()
    print(f"CPU: {cpu_kind()}")
    device = Device("cpu", "CPU", 0, hardware.cpu_bf16, hardware.cpu_cores)
    model_dir = str(embedded_model_dir())
    shape = read_shape(model_dir)
    memory_errors = {mode: [] for mode in modes}
    time_errors = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as folder:
        for number, config in enumerate(CONFIGS, start=1):
            if number not in chosen:
                continue
            config = dict(config)
            source = rows_file(Path(folder), config.pop("rows", "long_answers"))
            for mode in modes:  # side by side, so the load of a shared machine falls on both
                spec = JobSpec().with_overrides(
                    {
                        "model.name_or_path": model_dir,
                        "data.source": source,
                        "data.mix_in": [],
                        "hyperparameters.max_steps": 1 if options.memory_only else CALIBRATION_STEPS + MEASURED_STEPS,
                        "hyperparameters.save_steps": 1000,
                        "hyperparameters.precision": mode,
                        "output.evaluate": False,
                        **config,
                    }
                )
                child = CHILD.format(root=str(ROOT), spec=spec.model_dump_json(), out=f"{folder}/run{number}{mode}")
                done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT)
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    print(done.stderr[-2000:])
                    return 1
                result = json.loads(line.removeprefix("RESULT "))
                estimate = estimate_memory(
                    spec, shape, device, tokens_per_row=result["row_tokens"], answer_share=result["answer_share"]
                )
                memory_error = estimate.total / result["increase"] - 1
                memory_errors[mode].append(abs(memory_error))
                label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in config.items() if "learning_rate" not in k)
                line = (
                    f"{number}. [{mode} -> {precision_path(spec, device).name}] {label}, answer share "
                    f"{result['answer_share']:.2f}: memory estimated {estimate.total / GB:.2f} GB, measured "
                    f"{result['increase'] / GB:.2f} GB, ratio {estimate.total / result['increase']:.2f}"
                )
                if options.memory_only:
                    print(line, flush=True)
                    continue
                # Calibrate on the first steps, as Measure does, then predict the rest
                times = result["times"]
                tokens_per_step = spec.hyperparameters.batch_size * result["row_tokens"]
                calibration = times[CALIBRATION_STEPS - 1] - times[0]
                achieved = tokens_per_step * (CALIBRATION_STEPS - 1) * flops_per_token(spec, shape) / calibration
                efficiency = achieved / peak_flops(device, spec)
                predicted = estimate_seconds(spec, shape, device, tokens_per_step * MEASURED_STEPS, efficiency)
                actual = times[-1] - times[CALIBRATION_STEPS - 1]
                time_error = predicted / actual - 1
                time_errors[mode].append(abs(time_error))
                print(
                    f"{line}; time predicted {predicted:.1f} s, took {actual:.1f} s, ratio {predicted / actual:.2f}",
                    flush=True,
                )
    for mode in modes:
        print(f"worst_memory_error[{mode}]: {100 * max(memory_errors[mode]):.0f}%")
        if time_errors[mode]:
            print(f"worst_time_error[{mode}]: {100 * max(time_errors[mode]):.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
