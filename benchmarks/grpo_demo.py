"""Does the GRPO demo's reward rise, and how fast does a step go? The bundled preset, run for N steps.

Runs presets/jobs/grpo-demo.yaml (the embedded model, the arithmetic prompts, match + format + length
rewards) through the engine and prints the mean reward of every step, the first and last quarter's
means side by side with their ratio, each reward function's first and last mean, and steps per second.

    python benchmarks/grpo_demo.py                 # 30 steps, the preset as shipped
    python benchmarks/grpo_demo.py --steps 12      # shorter
    python benchmarks/grpo_demo.py --model DIR     # another (e.g. tiny) model, to try the script

The last line is `first_vs_last: A -> B (xR), steps_per_second: S`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default=None, help="a model folder instead of the embedded model")
    args = parser.parse_args()

    from training.engine import run_job
    from training.events import Progress
    from training.spec import load_spec

    overrides = {"hyperparameters.max_steps": args.steps, "hyperparameters.save_steps": 100000}
    overrides["output.evaluate"] = False
    if args.model:
        overrides["model.name_or_path"] = args.model
    spec = load_spec(ROOT / "presets" / "jobs" / "grpo-demo.yaml").with_overrides(overrides)
    progress: list[Progress] = []
    started = None

    def emit(event) -> None:
        nonlocal started
        if getattr(event, "phase", None) == "training":
            started = time.monotonic()
        if isinstance(event, Progress):
            progress.append(event)
            by_function = ", ".join(f"{k} {v:.2f}" for k, v in (event.rewards_by_function or {}).items())
            print(f"step {event.step:3d}  reward {event.reward_mean:.3f}  ({by_function})", flush=True)

    with tempfile.TemporaryDirectory(prefix="lathe-grpo-bench-") as job_dir:
        (Path(job_dir) / "spec.yaml").write_text(spec.to_yaml())
        run_job(spec, Path(job_dir), emit, lambda: False)
    seconds = time.monotonic() - (started or time.monotonic())
    quarter = max(1, len(progress) // 4)
    first = sum(p.reward_mean for p in progress[:quarter]) / quarter
    last = sum(p.reward_mean for p in progress[-quarter:]) / quarter
    for name in progress[0].rewards_by_function or {}:
        head = sum(p.rewards_by_function[name] for p in progress[:quarter]) / quarter
        tail = sum(p.rewards_by_function[name] for p in progress[-quarter:]) / quarter
        print(f"{name}: first {quarter} steps {head:.3f} -> last {quarter} steps {tail:.3f}")
    ratio = f"x{last / first:.2f}" if first else "from 0"
    print(f"first_vs_last: {first:.3f} -> {last:.3f} ({ratio}), steps_per_second: {len(progress) / seconds:.4f}")


if __name__ == "__main__":
    main()
