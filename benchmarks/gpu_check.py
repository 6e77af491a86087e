"""GPU truth in one command: how fast Lathe trains on this GPU, and how close its estimates come.

    python benchmarks/gpu_check.py                 # on a GPU machine: ≤ 8 minutes, no network
    python benchmarks/gpu_check.py --cpu-smoke     # the same code path on two small configs, on a CPU
    bash benchmarks/gpu_check.sh                   # on the GPU machine: install the carried wheels, then run

Models are built from the published config.json files in benchmarks/gpu_configs/ with random weights
(speed and memory do not depend on the weights' values); data are random token rows of chosen lengths.
Parts, each guarded so that one failure is reported and the rest still run:

1. speed   - LoRA on Llama-3.2-1B, ~2,048 real tokens per micro-batch: our engine's defaults vs the plain TRL
             recipe, tokens/s and MFU (FLOP count in gpu_runs.train_flops), then each of our defaults turned
             off one at a time, to see which helped.
2. memory  - training/estimate.py's peak memory vs the measured peak (allocator's allocated and reserved,
             plus the CUDA context) for LoRA and full, checkpointing on and off, several lengths, one 8B.
3. time    - for the same runs, the estimated s/step before Measure (the efficiency prior) and after it
             (the speed of the first steps, as the wizard's Measure takes it) vs the steps that followed.
4. qlora   - a QLoRA job through the engine's own loader (bitsandbytes 4-bit), when bitsandbytes imports.
5. multi   - a 2-process DDP and an FSDP job through the JobManager, when more than one GPU is visible.

A time budget (default 470 s) skips what would not fit, saying why. The table goes to stdout and every
number to a JSON file (--out), rewritten after each part so an interrupted run still leaves its results.
docs/gpu-check.md explains each number and the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

STARTED = time.monotonic()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BUNDLED_TOKENIZER = ROOT / ".gpu-bundle" / "tokenizer"  # what `make gpu-bundle` carries to a GPU machine
GB = 2**30
TARGETS = {"speedup": 1.5, "mfu_lora_1b": 0.35, "memory_error": 0.15, "estimate_flag": 0.20}


@dataclass(frozen=True)
class MemoryRun:
    model: str
    method: str  # lora, full
    checkpointing: str  # on, off
    context: int
    batch: int


# Ordered by what they teach: the 1B grid first, the 8B LoRA early (a 7B/8B is the catalog's common case)
MEMORY_RUNS = [
    MemoryRun("llama-3.2-1b", "lora", "off", 1024, 4),
    MemoryRun("llama-3.2-1b", "lora", "on", 4096, 2),
    MemoryRun("llama-3.1-8b", "lora", "on", 2048, 2),
    MemoryRun("llama-3.2-1b", "full", "off", 1024, 2),
    MemoryRun("llama-3.2-1b", "full", "on", 4096, 2),
    MemoryRun("qwen2.5-0.5b", "lora", "off", 2048, 4),
    MemoryRun("qwen2.5-1.5b", "lora", "off", 4096, 1),
    MemoryRun("llama-3.2-3b", "lora", "on", 4096, 2),
]
SMOKE_MODELS = ("smollm2-135m", "qwen2.5-0.5b")  # the two smallest configs, cut to SMOKE_LAYERS layers
SMOKE_VOCAB = 2048  # and to this vocabulary: the LM head was most of a smoke step's time


@dataclass
class Settings:
    device: str
    smoke: bool
    peak_flops: float
    device_name: str
    tokenizer: object
    work: Path
    context_bytes: int = 0  # the CUDA context and library handles, outside the allocator's counts
    speed_model: str = "llama-3.2-1b"
    speed_batch: int = 4
    speed_lengths: tuple[int, int] = (128, 896)  # mean 512: ~2,048 real tokens per micro-batch of 4
    speed_steps: int = 30
    # memory runs: step 1 warms up, steps 2-4 are Measure's (as measure_speed: a 4-step run, speed from step 2),
    # steps 5-8 are the job whose time is predicted
    warmup: int = 1
    measure: int = 3
    predict: int = 4
    layers: int | None = None  # the smoke cuts every model to a few layers
    multi_on_cpu: bool = False

    def config(self, name: str) -> dict:
        """The model's config.json as built here: the smoke cuts layers and vocabulary (see gpu_runs.model_config)."""
        from benchmarks.gpu_runs import model_config

        return model_config(name, self.layers, SMOKE_VOCAB if self.smoke else None)

    def vocab(self, name: str) -> int:
        """Token ids of the synthetic rows stay inside both the model's and the tokenizer's vocabulary."""
        return min(self.config(name)["vocab_size"], len(self.tokenizer))

    def model_for(self, name: str) -> str:
        """The smoke stands the two smallest configs in for every model (Llama-like -> SmolLM2, Qwen -> Qwen)."""
        if not self.smoke:
            return name
        return SMOKE_MODELS[1] if name.startswith("qwen") else SMOKE_MODELS[0]


class OutOfTime(Exception):
    """The global time budget ran out in the middle of a part."""


class Budget:
    def __init__(self, seconds: float):
        self.deadline = STARTED + seconds
        signal.signal(signal.SIGALRM, self._expired)
        signal.alarm(max(1, int(self.deadline - time.monotonic())))

    @staticmethod
    def _expired(signum, frame):
        raise OutOfTime("the time budget ran out")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def refuses(self, needs: float) -> str | None:
        """Why something needing `needs` seconds is skipped, or None when it fits."""
        if self.left() < needs:
            return f"skipped: time budget ({self.left():.0f} s left, needs ~{needs:.0f} s)"
        return None


@dataclass
class Report:
    out: Path
    environment: dict
    parts: dict = field(default_factory=dict)

    def save(self) -> None:
        data = {"environment": self.environment, "elapsed_s": round(time.monotonic() - STARTED, 1), "parts": self.parts}
        data["summary"] = summary(self.parts)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(data, indent=1, default=str))


# ---------------------------------------------------------------- one measured run


def spec_for(settings: Settings, model: str, method: str, context: int, batch: int, steps: int, **more):
    from training.spec import JobSpec

    overrides = {
        "name": "gpu-check",
        "model.name_or_path": str(Path(tempfile.gettempdir()) / model),  # for the record; the model is built here
        "method.type": method,
        "hyperparameters.context_length": context,
        "hyperparameters.batch_size": batch,
        "hyperparameters.max_steps": steps,
        "hyperparameters.save_steps": 100_000,  # no checkpoint writes inside the timed steps
        "hyperparameters.learning_rate": 1e-5 if method == "full" else 2e-4,
        "output.evaluate": False,
    }
    return JobSpec().with_overrides(overrides | more)


def estimate_device(settings: Settings):
    import psutil

    from training.estimate import Device
    from training.hardware import cpu_has_fast_bf16

    if settings.device == "cuda":
        import torch

        return Device("cuda", settings.device_name, torch.cuda.mem_get_info()[1] / GB, True)
    return Device("cpu", "CPU", psutil.virtual_memory().available / GB, cpu_has_fast_bf16(), os.cpu_count() or 1)


def measured_run(settings: Settings, spec, model_name: str, rows, *, plain=False, attention=None, override=None):
    """Build the model (as the engine's load_model would: the compute dtype on a GPU, fp32 on a CPU), train it
    through our engine (or the plain recipe) and return the RunResult with the peak memory filled in."""
    import torch

    from benchmarks.gpu_runs import MemoryMeter, build_model, free_memory, train_ours, train_plain
    from training.engine import DTYPES, to_lora_config
    from training.hardware import plan_for

    config = settings.config(model_name)
    plan = plan_for(spec)
    if plain:  # from_pretrained's default dtype ("auto": the checkpoint's bf16) on a GPU; the CPU recipe is fp32
        dtype = torch.bfloat16 if settings.device == "cuda" else torch.float32
    else:
        dtype = DTYPES[plan.precision] if settings.device == "cuda" else torch.float32
    work = Path(tempfile.mkdtemp(dir=settings.work))
    with MemoryMeter(settings.device) as meter:
        model = build_model(config, dtype, settings.device, attention)
        if plain:
            hp = spec.hyperparameters
            result = train_plain(
                model, settings.tokenizer, rows, work, hp.max_steps, hp.batch_size, hp.context_length,
                to_lora_config(spec), settings.device,
            )  # fmt: skip
        else:
            result = train_ours(spec, model, settings.tokenizer, rows, work, override)
        del model
    free_memory(settings.device)
    result.allocated, result.reserved = meter.allocated, meter.reserved
    if meter.leftover:
        result.notes.append(f"{meter.leftover / GB:.2f} GB of an earlier run was still allocated (taken off)")
    return result


def mfu(settings: Settings, spec, model_name: str, tokens: float, seconds: float, stats: dict) -> float:
    from benchmarks.gpu_runs import train_flops

    shape = shape_of(settings, model_name)
    lora = shape.lora_parameters(spec.method.lora_r, spec.method.target_modules)
    return train_flops(shape, spec.method.type, tokens, stats, lora) / seconds / settings.peak_flops


# ---------------------------------------------------------------- part 1: speed


def part_speed(settings: Settings, budget: Budget, results: dict) -> None:
    """Ours vs plain TRL on the same rows (one epoch each), then each default of ours flipped, one at a time."""
    import importlib.util

    import trl.trainer.utils as trl_utils

    from benchmarks.gpu_runs import row_statistics, synthetic_rows

    name = settings.model_for(settings.speed_model)
    steps, batch = settings.speed_steps, settings.speed_batch
    shortest, longest = settings.speed_lengths
    rows = synthetic_rows(steps * batch, shortest, longest, settings.vocab(name), seed=1)
    stats = row_statistics(rows)
    context = 1 << (longest - 1).bit_length()  # no row is cut
    base = spec_for(settings, name, "lora", context, batch, steps)
    plan_checkpointing = resolved_checkpointing(settings, base, name)
    variants = [
        ("plain TRL", {"plain": True}),
        ("ours", {}),
        (
            f"ours, checkpointing {'off' if plan_checkpointing else 'on'}",
            {"spec": {"hyperparameters.gradient_checkpointing": "off" if plan_checkpointing else "on"}},
        ),
        ("ours, random batches", {"spec": {"hyperparameters.group_by_length": False}}),
        ("ours, fp32", {"spec": {"hyperparameters.precision": "fp32"}}),
        ("ours, eager attention", {"attention": "eager"}),
        ("ours, LM head on every position", {"head": "every"}),
    ]
    if importlib.util.find_spec("liger_kernel"):
        variants.append(("ours + Liger kernels", {"override": lambda args: _with(args, use_liger_kernel=True)}))
    results.update({"model": name, "batch": batch, "row_lengths": [shortest, longest], "steps": steps, "runs": []})
    results["rows"] = {key: round(value, 3) for key, value in stats.items()}
    results["liger"] = "measured" if importlib.util.find_spec("liger_kernel") else "not installed: not measured"
    if settings.device == "cuda":  # kernels, cuBLAS heuristics and the allocator warm up once, untimed
        try:
            measured_run(settings, base.with_overrides({"hyperparameters.max_steps": 3}), name, rows)
        except Exception as error:  # noqa: BLE001 - the variants below say what fails; plain TRL may still run
            results["warmup"] = f"failed: {type(error).__name__}: {error}"[:300]
    for label, variant in variants:
        if reason := budget.refuses(6 if settings.smoke else 25):
            results["runs"].append({"variant": label, "status": reason})
            continue
        spec = base.with_overrides(variant.get("spec", {}))
        patched_head = trl_utils._use_triton
        if variant.get("head") == "every":
            trl_utils._use_triton = every_position  # the full-width head, as TRL does off Triton devices
        try:
            run = measured_run(
                settings, spec, name, rows, plain=variant.get("plain", False), attention=variant.get("attention"),
                override=variant.get("override"),
            )  # fmt: skip
        except OutOfTime:
            raise
        except Exception as error:  # noqa: BLE001 - one variant failing must not hide the others
            results["runs"].append({"variant": label, "status": f"failed: {type(error).__name__}: {error}"[:300]})
            continue
        finally:
            trl_utils._use_triton = patched_head
        tokens, seconds = run.tokens(0, steps), run.seconds(0, steps)
        results["runs"].append(
            {
                "variant": label,
                "status": "ok",
                "tokens": tokens,
                "seconds": round(seconds, 3),
                "tokens_per_s": round(tokens / seconds, 1),
                "mfu": round(mfu(settings, spec, name, tokens, seconds, stats), 4),
                "peak_reserved_gb": round(run.reserved / GB, 2),
                "last_loss": run.losses[-1] if run.losses else None,
            }
        )
    by_name = {r["variant"]: r for r in results["runs"] if r["status"] == "ok"}
    if "ours" in by_name and "plain TRL" in by_name:
        results["speedup"] = round(by_name["ours"]["tokens_per_s"] / by_name["plain TRL"]["tokens_per_s"], 3)
    if "ours" in by_name:
        for run in results["runs"]:
            if run["status"] == "ok" and run["variant"].startswith("ours") and run["variant"] != "ours":
                ratio = by_name["ours"]["tokens_per_s"] / run["tokens_per_s"]
                run["ours_over_this"] = round(ratio, 3)
                run["verdict"] = "our default helped" if ratio > 1.03 else "ours slower" if ratio < 0.97 else "same"


def every_position(device) -> bool:
    """For TRL's fused LM head: never compact to the scored positions (marked so our engine keeps it as is)."""
    return False


every_position.lathe_patched = True


def _with(args, **changes):
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def resolved_checkpointing(settings: Settings, spec, name: str) -> bool:
    """What our `auto` gradient checkpointing chooses for this model here (the engine's own rule)."""
    from training.hardware import plan_for, wants_gradient_checkpointing

    return wants_gradient_checkpointing(spec, plan_for(spec), shape_of(settings, name).parameters())


def shape_of(settings: Settings, name: str):
    """The shape of the model as built here (the smoke's has fewer layers)."""
    from training.sizes import ModelShape

    return ModelShape.from_config(settings.config(name))


# ---------------------------------------------------------------- parts 2-4: memory and time estimates


def estimate_row(settings: Settings, spec, model_name: str, run, rows, label: str) -> dict:
    """One configuration: estimated vs measured peak memory, and the time estimate before and after Measure."""
    from benchmarks.gpu_runs import row_statistics
    from training.estimate import estimate_memory, estimate_seconds

    shape, device, stats = shape_of(settings, model_name), estimate_device(settings), row_statistics(rows)
    estimate = estimate_memory(spec, shape, device, tokens_per_row=stats["longest"], answer_share=stats["answer_share"])
    # What the job held on the device at its peak: the allocator's reserve plus the CUDA context (the
    # estimate's overhead term covers both); on the CPU smoke, the RSS increase
    held = run.reserved + settings.context_bytes
    w, m, p = settings.warmup, settings.warmup + settings.measure, settings.warmup + settings.measure + settings.predict
    actual = run.seconds(m, p)
    before = estimate_seconds(spec, shape, device, run.tokens(m, p))  # the efficiency prior
    after = run.tokens(m, p) / run.rate(w, m)  # Measure: the speed of the steps after the first, as measure_speed
    return {
        "config": label,
        "status": "ok",
        "estimate_gb": round(estimate.total / GB, 4),
        "estimate_terms_gb": {k: round(v / GB, 3) for k, v in vars(estimate).items()},
        "allocated_gb": round(run.allocated / GB, 4),
        "reserved_gb": round(run.reserved / GB, 4),
        "held_gb": round(held / GB, 4),
        "memory_error": round(estimate.total / held - 1, 4),
        "error_vs_allocated": round((estimate.total - estimate.overhead) / max(run.allocated, 1) - 1, 4),
        "step_s_actual": round(actual / settings.predict, 4),
        "step_s_before_measure": round(before / settings.predict, 4),
        "step_s_after_measure": round(after / settings.predict, 4),
        "time_error_before": round(before / actual - 1, 4),
        "time_error_after": round(after / actual - 1, 4),
        "mfu": round(mfu(settings, spec, model_name, run.tokens(w, p), run.seconds(w, p), stats), 4),
        "last_loss": run.losses[-1] if run.losses else None,
        "notes": run.notes,
    }


def part_memory(settings: Settings, budget: Budget, results: dict) -> None:
    """Parts 2-4: each configuration trains warmup + measure + predict steps on rows that fill the context."""
    from benchmarks.gpu_runs import synthetic_rows

    rows_out, seen = results.setdefault("runs", []), set()
    steps = settings.warmup + settings.measure + settings.predict
    for run in MEMORY_RUNS:
        name = settings.model_for(run.model)
        context = min(run.context, 64 if run.context <= 2048 else 128) if settings.smoke else run.context
        batch = min(run.batch, 2) if settings.smoke else run.batch
        label = f"{run.model} {run.method} gc={run.checkpointing} {run.context}x{run.batch}"
        if settings.smoke and (name, run.method, run.checkpointing) in seen:
            continue  # the smoke maps several configurations onto one; its code path is the same
        seen.add((name, run.method, run.checkpointing))
        if settings.smoke:
            label += f" (smoke: {name}, {settings.layers} layers, {context}x{batch})"
        needs = 5 if settings.smoke else (45 if "8b" in run.model or "3b" in run.model else 25)
        if reason := budget.refuses(needs):
            rows_out.append({"config": label, "status": reason})
            continue
        spec = spec_for(
            settings,
            name,
            run.method,
            context,
            batch,
            steps,
            **{"hyperparameters.gradient_checkpointing": run.checkpointing},
        )
        rows = synthetic_rows(steps * batch, context, context, settings.vocab(name), seed=2)  # one shape throughout
        rows_out.append(guarded(label, memory_row, settings, spec, name, rows, label))
        results.update(worst_errors(rows_out))


def memory_row(settings: Settings, spec, name: str, rows, label: str) -> dict:
    return estimate_row(settings, spec, name, measured_run(settings, spec, name, rows), rows, label)


def guarded(label: str, work, *args) -> dict:
    """`work(*args)`: one configuration's result, or its failure (out of memory included) as a row of the table."""
    import torch

    try:
        return work(*args)
    except OutOfTime:
        raise
    except torch.cuda.OutOfMemoryError as error:
        return {"config": label, "status": f"out of memory: {str(error).splitlines()[0][:200]}"}
    except Exception as error:  # noqa: BLE001 - reported; the other configurations still run
        traceback.print_exc()
        return {"config": label, "status": f"failed: {type(error).__name__}: {error}"[:300]}
    finally:
        from benchmarks.gpu_runs import free_memory

        free_memory("cuda" if torch.cuda.is_available() else "cpu")


def worst_errors(rows: list[dict]) -> dict:
    done = [r for r in rows if r["status"] == "ok"]
    if not done:
        return {}
    worst = lambda key: max((r[key] for r in done), key=abs)  # noqa: E731 - the signed error farthest from 0
    return {
        "worst_memory_error": worst("memory_error"),
        "worst_time_error_before": worst("time_error_before"),
        "worst_time_error_after": worst("time_error_after"),
    }


# ---------------------------------------------------------------- part 5: QLoRA


def saved_model(settings: Settings, name: str, whole_vocabulary: bool = False) -> Path:
    """A random-weight model written as a normal model folder (with the tokenizer), for the engine's own loader.
    `whole_vocabulary`: keep the published vocabulary even in the smoke (for jobs on real tokenized text)."""
    import torch

    from benchmarks.gpu_runs import build_model, free_memory, model_config

    config = model_config(name, settings.layers) if whole_vocabulary else settings.config(name)
    folder = settings.work / f"model-{name}-{config['vocab_size']}"
    if not (folder / "config.json").is_file():
        model = build_model(config, torch.bfloat16, settings.device)
        model.save_pretrained(folder)
        settings.tokenizer.save_pretrained(folder)
        del model
        free_memory(settings.device)
    return folder


def part_qlora(settings: Settings, budget: Budget, results: dict) -> None:
    """A QLoRA job as Lathe runs it: engine.load_model (bitsandbytes NF4) then build_trainer; memory and time
    against the estimate, and the loss must stay a number."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure means no QLoRA here, said plainly
        results["status"] = f"skipped: bitsandbytes does not import here ({type(error).__name__}: {error})"[:300]
        return
    from benchmarks.gpu_runs import MemoryMeter, free_memory, synthetic_rows, train_ours
    from training.engine import load_model
    from training.hardware import plan_for

    name = settings.model_for("llama-3.2-1b")
    context, batch = (64, 2) if settings.smoke else (2048, 2)
    steps = settings.warmup + settings.measure + settings.predict
    folder = saved_model(settings, name)
    spec = spec_for(settings, name, "qlora", context, batch, steps).with_overrides({"model.name_or_path": str(folder)})
    rows = synthetic_rows(steps * batch, context, context, settings.vocab(name), seed=3)
    label = f"{name} qlora gc=auto {context}x{batch}"

    def run():
        with MemoryMeter(settings.device) as meter:
            model, tokenizer = load_model(spec, plan_for(spec), None)
            result = train_ours(spec, model, tokenizer, rows, Path(tempfile.mkdtemp(dir=settings.work)))
            del model
        free_memory(settings.device)
        result.allocated, result.reserved = meter.allocated, meter.reserved
        row = estimate_row(settings, spec, name, result, rows, label)
        row["loss_is_finite"] = all(loss == loss and abs(loss) != float("inf") for loss in result.losses)
        return row

    results.update(guarded(label, run))


# ---------------------------------------------------------------- part 6: several GPUs


def part_multi(settings: Settings, budget: Budget, results: dict) -> None:
    """A 2-process DDP LoRA job and an FSDP full fine-tune through the JobManager (accelerate launch), as the
    wizard runs them; their states, steps and speed."""
    import torch

    from training.jobs import JobManager

    gpus = torch.cuda.device_count() if settings.device == "cuda" else 0
    if gpus < 2 and not settings.multi_on_cpu:
        results["status"] = f"skipped: {gpus} GPU{'s' if gpus != 1 else ''} visible; needs 2 or more"
        return
    name = settings.model_for("llama-3.2-1b")
    folder = saved_model(settings, name, whole_vocabulary=True)  # the demo data are real text
    manager, jobs = JobManager(settings.work / "jobs"), results.setdefault("jobs", {})
    for mode, method in (("ddp", "lora"), ("fsdp", "full")):
        if reason := budget.refuses(20 if settings.smoke else 60):
            jobs[mode] = {"status": reason}
            continue
        spec = spec_for(settings, name, method, 256, 2, 6).with_overrides(
            {"model.name_or_path": str(folder), "hyperparameters.devices": 2, "hyperparameters.distributed": mode}
        )
        job_id = manager.start(spec)
        snapshot = manager.wait(job_id, timeout=max(budget.left() - 5, 10))
        if snapshot.state not in ("completed", "failed", "stopped"):
            manager.stop(job_id)
            snapshot = manager.wait(job_id, timeout=30)
        jobs[mode] = {
            "status": "ok" if snapshot.state == "completed" else f"{snapshot.state}: {snapshot.message}"[:300],
            "method": method,
            "steps": snapshot.step,
            "tokens_per_s": snapshot.tokens_per_second,
            "sharded": any("sharded with FSDP" in line for line in snapshot.logs),
        }
        if snapshot.state != "completed":  # the worker's own words, to fix it without another GPU run
            log = Path(snapshot.job_dir) / "worker.log"
            jobs[mode]["worker_log_tail"] = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
    failed = [mode for mode, job in jobs.items() if job["status"] != "ok"]
    results["status"] = "ok" if not failed else f"failed: {', '.join(failed)}"


# ---------------------------------------------------------------- table, summary, main


def summary(parts: dict) -> dict:
    """The headline numbers and whether each target was met."""
    out: dict = {}
    speed = parts.get("speed", {})
    runs = {r["variant"]: r for r in speed.get("runs", []) if r.get("status") == "ok"}
    if "speedup" in speed:
        out["speedup_ours_over_plain"] = speed["speedup"]
        out["speedup_target_met"] = speed["speedup"] >= TARGETS["speedup"]
    for key in ("ours", "plain TRL"):
        if key in runs:
            out[f"mfu_{key.split()[0]}"] = runs[key]["mfu"]
    if "mfu_ours" in out:
        out["mfu_target_met"] = out["mfu_ours"] >= TARGETS["mfu_lora_1b"]
    memory = parts.get("memory", {})
    for key in ("worst_memory_error", "worst_time_error_before", "worst_time_error_after"):
        if key in memory:
            out[key] = memory[key]
    if "worst_memory_error" in memory:
        out["memory_target_met"] = abs(memory["worst_memory_error"]) <= TARGETS["memory_error"]
    qlora = parts.get("qlora", {})
    out["qlora"] = qlora.get("status") if qlora.get("status") != "ok" else (
        f"ok, memory error {qlora['memory_error']:+.0%}, loss finite {qlora['loss_is_finite']}"
    )  # fmt: skip
    out["multi"] = parts.get("multi", {}).get("status")
    return {key: value for key, value in out.items() if value is not None}  # parts not run say nothing


def table(report: Report) -> str:
    env, parts = report.environment, report.parts
    lines = [f"GPU check on {env['device_name']} ({env['device']}), peak {env['peak_tflops']:g} TFLOP/s for MFU"]
    speed = parts.get("speed", {"status": "not run"})
    lines.append(f"\n[speed] {speed.get('status', '')}  {speed.get('model', '')} LoRA, batch {speed.get('batch')}, "
                 f"rows {speed.get('row_lengths')} tokens, {speed.get('steps')} steps")  # fmt: skip
    lines.append(f"  {'variant':36} {'tokens/s':>10} {'MFU':>7} {'peak GB':>8}  ours/this")
    for run in speed.get("runs", []):
        if run.get("status") != "ok":
            lines.append(f"  {run['variant']:36} {run['status']}")
            continue
        ratio = f"{run['ours_over_this']:.2f} ({run['verdict']})" if "ours_over_this" in run else ""
        numbers = f"{run['tokens_per_s']:10.0f} {run['mfu']:7.1%} {run['peak_reserved_gb']:8.2f}"
        lines.append(f"  {run['variant']:36} {numbers}  {ratio}")
    memory = parts.get("memory", {"status": "not run"})
    lines.append(f"\n[memory + time] {memory['status']}")
    lines.append(
        f"  {'configuration':44} {'est GB':>7} {'held GB':>8} {'alloc GB':>8} {'error':>7}"
        f" {'s/step':>7} {'prior':>7} {'measured':>8}"
    )
    for row in memory.get("runs", []) + ([parts["qlora"]] if parts.get("qlora", {}).get("config") else []):
        if row.get("status") != "ok":
            lines.append(f"  {row.get('config', 'qlora'):44} {row['status']}")
            continue
        lines.append(
            f"  {row['config'][:44]:44} {row['estimate_gb']:7.2f} {row['held_gb']:8.2f} {row['allocated_gb']:8.2f}"
            f" {row['memory_error']:+7.1%} {row['step_s_actual']:7.3f} {row['time_error_before']:+7.0%}"
            f" {row['time_error_after']:+8.0%}"
        )
    for name in ("qlora", "multi"):
        part = parts.get(name, {})
        lines.append(f"\n[{name}] {part.get('status', 'not run')}")
        for mode, job in part.get("jobs", {}).items():
            lines.append(f"  {mode}: {job}")
    lines.append("\nsummary:")
    lines += [f"  {key}: {value}" for key, value in summary(parts).items()]
    return "\n".join(lines)


def environment(settings: Settings) -> dict:
    import importlib.metadata as metadata

    import torch

    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "liger-kernel"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "device": settings.device,
        "device_name": settings.device_name,
        "gpus": torch.cuda.device_count() if settings.device == "cuda" else 0,
        "cuda": torch.version.cuda,
        "peak_tflops": settings.peak_flops / 1e12,
        "context_gb": round(settings.context_bytes / GB, 3),
        "smoke": settings.smoke,
        "python": sys.version.split()[0],
        "versions": versions,
    }


def quiet_libraries() -> None:
    """Progress bars and deprecation chatter would push the table out of a short output tail."""
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def make_settings(options) -> Settings:
    import torch
    from transformers import AutoTokenizer

    quiet_libraries()
    from benchmarks.gpu_runs import SMOKE_LAYERS
    from training.estimate import GPU_PEAK_TFLOPS, Device, peak_flops

    device = "cpu" if options.cpu_smoke or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not options.cpu_smoke:
        sys.exit("No CUDA GPU is visible. On a CPU, run the smoke: python benchmarks/gpu_check.py --cpu-smoke")
    tokenizer_dir = options.tokenizer or (BUNDLED_TOKENIZER if BUNDLED_TOKENIZER.is_dir() else None)
    if tokenizer_dir is None:
        from training.models import embedded_model_dir

        tokenizer_dir = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    work = Path(tempfile.mkdtemp(prefix="lathe-gpu-check-"))
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = (options.peak_tflops or next((tf for key, tf in GPU_PEAK_TFLOPS.items() if key in name), 0)) * 1e12
        if not peak:
            sys.exit(f"No peak bf16 FLOP/s known for {name}: pass --peak-tflops N (the vendor's dense bf16 figure).")
        settings = Settings(device, False, peak, name, tokenizer, work)
        warm = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
        (warm @ warm).sum().item()  # loads cuBLAS, so that its handles count as context
        free, total = torch.cuda.mem_get_info()
        settings.context_bytes = total - free - torch.cuda.memory_reserved()
        return settings
    from training.hardware import cpu_has_fast_bf16

    cpu = Device("cpu", "CPU", 0, cpu_has_fast_bf16(), os.cpu_count() or 1)
    from training.spec import JobSpec

    peak = (options.peak_tflops * 1e12) if options.peak_tflops else peak_flops(cpu, JobSpec())
    settings = Settings("cpu", True, peak, "CPU (smoke)", tokenizer, work, layers=SMOKE_LAYERS)
    settings.speed_batch, settings.speed_lengths, settings.speed_steps = 2, (16, 48), 2
    settings.warmup, settings.measure, settings.predict = 1, 1, 1
    settings.multi_on_cpu = options.multi_on_cpu
    return settings


PARTS = {"speed": part_speed, "memory": part_memory, "qlora": part_qlora, "multi": part_multi}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="Run every part small, on the CPU.")
    parser.add_argument("--budget", type=float, default=None, help="Seconds for the whole run (470 GPU, 170 smoke).")
    parser.add_argument("--peak-tflops", type=float, default=None, help="The device's dense bf16 peak, for MFU.")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON results file (default: $OUT or . /gpu_check.json)."
    )
    parser.add_argument("--tokenizer", type=Path, default=None, help="Tokenizer folder (default: the embedded one).")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"Comma list of parts to run: {','.join(PARTS)}.")
    parser.add_argument(
        "--multi-on-cpu", action="store_true", help="Smoke: run the 2-process part over 2 CPU processes."
    )
    options = parser.parse_args(argv)
    unknown = set(options.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    budget = Budget(options.budget or (170 if options.cpu_smoke else 470))
    settings = make_settings(options)
    out = options.out or Path(os.environ.get("OUT") or ".") / "gpu_check.json"
    report = Report(out, environment(settings))
    for name, part in PARTS.items():
        if name not in options.parts.split(","):
            continue
        if reason := budget.refuses(5):
            report.parts[name] = {"status": reason}
            continue
        started = time.monotonic()
        print(f"--- {name} ({budget.left():.0f} s left)", flush=True)
        result: dict = {}  # a part fills it as it goes, so what it measured before a failure is kept
        try:
            part(settings, budget, result)
            result.setdefault("status", "ok")
        except OutOfTime as error:
            result["status"] = f"stopped: {error}"
        except Exception as error:  # noqa: BLE001 - one part failing is reported; the others still run
            traceback.print_exc()
            result["status"] = f"failed: {type(error).__name__}: {error}"[:300]
        result["seconds"] = round(time.monotonic() - started, 1)
        report.parts[name] = result
        report.save()
    signal.alarm(0)
    report.save()
    print(table(report))
    print(f"results: {out} ({time.monotonic() - STARTED:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
