"""Our engine's defaults vs the plain TRL recipe of the tutorials, side by side in one process.

Both train the embedded SmolLM2-135M-Instruct with the same LoRA config, the same data (the
quickstart job's rows), the same learning rate, schedule, batch size and epochs. The plain recipe
is `SFTTrainer` with library defaults otherwise: fp32 (a CPU user must turn TRL's bf16 default
off), gradient checkpointing on (TRL's default), random batches padded to their longest row.
Ours is `training.engine.run_job` with the spec's `auto` defaults for this hardware.

Measured: non-padding tokens trained per second of `trainer.train()` wall time (ours includes
its per-epoch checkpoint saves), and the mean training loss of the last epoch.

    python benchmarks/train_throughput.py [--epochs 2]

The last line is `speedup: X.XX` (ours / plain).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import build_datasets  # noqa: E402
from training.engine import run_job, to_lora_config  # noqa: E402
from training.events import Finished, Progress  # noqa: E402
from training.models import resolve_model  # noqa: E402
from training.presets import example_jobs  # noqa: E402


def last_epoch_mean(losses: list[tuple[float, float]], epochs: float) -> float:
    """Mean logged loss over the last epoch; `losses` holds (epoch, loss) pairs."""
    tail = [loss for epoch, loss in losses if epoch > epochs - 1 + 1e-9]
    return statistics.fmean(tail)


def run_plain(spec, model_dir: str, work: Path) -> dict:
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    # The plain recipe must run on unpatched TRL: our engine patches it when run_job starts.
    assert not getattr(trl_utils._use_triton, "lathe_patched", False), "run the plain recipe first"
    hp = spec.hyperparameters
    train, _ = build_datasets(spec.data, hp.seed)
    losses: list[tuple[float, float]] = []
    tokens = {"seen": 0}

    class Meter(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append((float(logs["epoch"]), float(logs["loss"])))
                tokens["seen"] = int(logs.get("num_tokens", tokens["seen"]))

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = SFTConfig(
        output_dir=str(work / "plain"),
        bf16=False,  # TRL defaults to bf16 and refuses a CPU without it; the tutorials' CPU recipe is fp32
        use_cpu=True,
        learning_rate=hp.learning_rate,
        num_train_epochs=hp.epochs,
        per_device_train_batch_size=hp.batch_size,
        warmup_steps=hp.warmup_ratio,
        lr_scheduler_type=hp.scheduler,
        max_length=hp.context_length,
        seed=hp.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=to_lora_config(spec),
        callbacks=[Meter()],
    )
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    return {"tokens": tokens["seen"], "seconds": seconds, "loss": last_epoch_mean(losses, hp.epochs)}


def run_ours(spec, work: Path) -> dict:
    events = []
    run_job(spec, work / "ours", events.append, lambda: False)
    progress = [e for e in events if isinstance(e, Progress)]
    finished = next(e for e in events if isinstance(e, Finished))
    losses = [(e.epoch, e.loss) for e in progress]
    return {
        "tokens": progress[-1].tokens_seen,
        "seconds": finished.train_seconds,
        "loss": last_epoch_mean(losses, spec.hyperparameters.epochs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=2.0)
    options = parser.parse_args()

    spec = example_jobs()["quickstart"].with_overrides({"hyperparameters.epochs": options.epochs})
    model_dir = resolve_model(spec.model.name_or_path)
    with tempfile.TemporaryDirectory() as tmp:
        plain = run_plain(spec, model_dir, Path(tmp))
        ours = run_ours(spec, Path(tmp))
    for name, result in (("plain TRL", plain), ("lathe", ours)):
        rate = result["tokens"] / result["seconds"]
        print(
            f"{name:10} {result['tokens']:7d} tokens in {result['seconds']:6.1f} s = {rate:6.1f} tok/s, "
            f"last-epoch train loss {result['loss']:.4f}"
        )
    no_worse = ours["loss"] <= plain["loss"] * 1.05  # within 5%: run-to-run noise of a 2-epoch run
    print(f"loss ours/plain: {ours['loss'] / plain['loss']:.3f} ({'no worse' if no_worse else 'WORSE'})")
    speedup = (ours["tokens"] / ours["seconds"]) / (plain["tokens"] / plain["seconds"])
    print(f"speedup: {speedup:.2f}")


if __name__ == "__main__":
    main()
