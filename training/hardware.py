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
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(
            "hyperparameters.precision: this GPU has no bf16 (it needs an Ampere or newer). Use fp16 or auto."
        )
    return Plan(device=device, precision=precision)


def check_devices(spec: JobSpec, plan: Plan) -> None:
    """More GPUs asked for than there are is refused; on a CPU several processes share its cores."""
    import torch

    wanted = spec.hyperparameters.devices
    if plan.device == "cuda" and wanted > torch.cuda.device_count():
        found = torch.cuda.device_count()
        raise UserError(f"hyperparameters.devices: {wanted} GPUs asked for, {found} found. Set it to {found} or fewer.")


def check_method_fits_device(spec: JobSpec, plan: Plan) -> None:
    """QLoRA's compute type must be one the device runs; say which one will before launch."""
    import torch

    chosen = spec.method.qlora_compute_dtype
    if chosen == "fp16" and plan.device == "cpu":
        raise UserError("method.qlora_compute_dtype: fp16 needs a GPU. Use bf16 or fp32 (or auto) on a CPU.")
    if chosen == "bf16" and plan.device == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("method.qlora_compute_dtype: this GPU has no bf16 (Ampere or newer). Use fp16 or auto.")


def wants_gradient_checkpointing(spec: JobSpec, plan: Plan, parameter_count: int) -> bool:
    setting = spec.hyperparameters.gradient_checkpointing
    if setting != "auto":
        return setting == "on"
    return plan.device == "cuda" and parameter_count >= CHECKPOINTING_MIN_PARAMS


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_gb: float
    free_gb: float
    compute_capability: str
    bf16: bool


@dataclass(frozen=True)
class Hardware:
    gpus: tuple[Gpu, ...]
    cpu_cores: int
    ram_gb: float
    cpu_bf16: bool

    def describe(self) -> str:
        """Plain-language lines for the GPU preview."""
        if self.gpus:
            lines = [
                f"GPU {g.index}: {g.name}, {g.free_gb:.1f} of {g.total_gb:.1f} GB free, "
                f"compute capability {g.compute_capability}, bf16 {'yes' if g.bf16 else 'no'}"
                for g in self.gpus
            ]
        else:
            lines = ["No GPU found: training runs on the CPU (fine for the embedded model; slow for big ones)."]
        lines.append(
            f"CPU: {self.cpu_cores} cores, {self.ram_gb:.0f} GB RAM, "
            f"fast bf16 {'yes (AVX-512 BF16 / AMX)' if self.cpu_bf16 else 'no (training uses fp32)'}"
        )
        return "\n".join(lines)


def detect_hardware() -> Hardware:
    """Every CUDA GPU with its memory, or just the CPU. Needs neither a GPU nor nvidia-smi."""
    import os

    import psutil
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                Gpu(
                    index=index,
                    name=props.name,
                    total_gb=total / 2**30,
                    free_gb=free / 2**30,
                    compute_capability=f"{props.major}.{props.minor}",
                    bf16=props.major >= 8,  # Ampere and newer run bf16 natively
                )
            )
    return Hardware(
        gpus=tuple(gpus),
        cpu_cores=os.cpu_count() or 1,
        ram_gb=psutil.virtual_memory().total / 2**30,
        cpu_bf16=cpu_has_fast_bf16(),
    )
