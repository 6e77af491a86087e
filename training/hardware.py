"""What this machine is good at, and the training settings that follow from it.

`auto` settings in the spec are resolved here, once, so the engine and the job record agree on
what actually ran (the resolved plan is written to the job's log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.errors import UserError
from training.spec import JobSpec

# Gradient checkpointing trades ~30% more compute for far less activation memory. Below this
# size a model's activations fit comfortably, so `auto` keeps it off and trains faster.
CHECKPOINTING_MIN_PARAMS = 1_000_000_000


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls run ~4x faster than fp32 on such CPUs."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class Plan:
    device: str  # "cuda" or "cpu"
    precision: str  # "bf16", "fp16" or "fp32"

    def describe(self) -> str:
        return f"device={self.device} precision={self.precision}"


def plan_for(spec: JobSpec) -> Plan:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = spec.hyperparameters.precision
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and device == "cpu":
        raise UserError("hyperparameters.precision: fp16 needs a GPU. Use bf16 or fp32 (or auto) on a CPU.")
    return Plan(device=device, precision=precision)


def wants_gradient_checkpointing(spec: JobSpec, plan: Plan, parameter_count: int) -> bool:
    setting = spec.hyperparameters.gradient_checkpointing
    if setting != "auto":
        return setting == "on"
    return plan.device == "cuda" and parameter_count >= CHECKPOINTING_MIN_PARAMS
