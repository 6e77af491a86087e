"""How big a job's files will be, from the model's config alone (no weights are read).

Used before launch to check the disk: checkpoints hold the trainable weights and AdamW's two
moment tensors, each in the trainable weights' dtype, so a checkpoint is ~3x the trainable
bytes. Measured on the embedded model (135M): a full fine-tune checkpoint was 1.62 GB (12 B per
parameter in fp32), a QLoRA one 33 MB (bf16 adapters, 4.9M parameters); the weight part of both
is within 3% of this estimate, and the tokenizer allowance is generous.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from training.errors import UserError
from training.spec import JobSpec, target_module_names

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
TOKENIZER_AND_METADATA_BYTES = 20 * 2**20
DISK_MARGIN = 1.2  # logs, TensorBoard files, and estimates being estimates


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a decoder-only transformer that decide its parameter count."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        config = config.get("text_config", config)  # multimodal configs nest the language model's
        hidden, heads = config["hidden_size"], config["num_attention_heads"]
        return cls(
            vocab=config["vocab_size"],
            hidden=hidden,
            intermediate=config["intermediate_size"],
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or hidden // heads,
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(inputs, outputs) of each linear layer in one block."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def layer_parameters(self) -> int:
        """One decoder block: its linear layers and two norms."""
        return sum(n_in * n_out for n_in, n_out in self.linear_shapes().values()) + 2 * self.hidden

    def embedding_parameters(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    def parameters(self) -> int:
        return self.embedding_parameters() + self.layers * self.layer_parameters() + self.hidden

    def lora_parameters(self, rank: int, targets: str) -> int:
        names = target_module_names(targets)
        if names == "all-linear":
            names = ATTENTION + MLP
        shapes = self.linear_shapes()
        return self.layers * sum(rank * sum(shapes[name]) for name in names if name in shapes)


def read_shape(model_reference: str) -> ModelShape | None:
    """The shape from a local folder's config.json; None when there is none here (a Hub id not yet fetched)."""
    config = Path(model_reference) / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_reference, "config.json")
        config = Path(cached) if isinstance(cached, str) else None
    if config is None:
        return None
    try:
        return ModelShape.from_config(json.loads(config.read_text()))
    except (KeyError, TypeError, ValueError):
        return None  # an architecture we cannot read: no estimate rather than a wrong one


def disk_needed(spec: JobSpec, shape: ModelShape, device: str) -> int:
    """Bytes the job's folder will hold at its peak: kept checkpoints, one being written, and the final output."""
    total = shape.parameters()
    if spec.method.type == "full":
        trainable, trainable_bytes = total, 2 if device == "cuda" else 4  # weights in the training dtype
    else:
        trainable = shape.lora_parameters(spec.method.lora_r, spec.method.target_modules)
        trainable_bytes = 2 if spec.method.type == "qlora" else 4  # TRL keeps QLoRA adapters in bf16
    checkpoint = 3 * trainable * trainable_bytes + TOKENIZER_AND_METADATA_BYTES
    if spec.hyperparameters.distributed == "fsdp":
        # accelerate also writes its own FSDP copy of the trainable weights into each checkpoint (for resume);
        # with tied embeddings it holds the frozen head too (measured on the tiny model in tests/test_multiprocess.py)
        checkpoint += trainable * trainable_bytes + (shape.vocab * shape.hidden * 4 if shape.tied_embeddings else 0)
    final = trainable * trainable_bytes + TOKENIZER_AND_METADATA_BYTES
    if spec.output.merge_adapter:
        final += total * (2 if device == "cuda" else 4)
    return round(((spec.output.save_total_limit + 1) * checkpoint + final) * DISK_MARGIN)


def check_disk(spec: JobSpec, model_reference: str, jobs_dir: Path, device: str) -> None:
    """Refuse a job whose checkpoints would not fit on the jobs folder's disk, with the numbers and the fixes."""
    shape = read_shape(model_reference)
    if shape is None:
        return  # size unknown until the model's config is fetched; the worker's save would fail plainly
    folder = Path(jobs_dir).resolve()
    while not folder.exists():
        folder = folder.parent
    free, needed = shutil.disk_usage(folder).free, disk_needed(spec, shape, device)
    if needed > free:
        raise UserError(
            f"output.save_total_limit: this job needs about {needed / 2**30:.1f} GB of disk for its checkpoints "
            f"and final model, but {folder} has {free / 2**30:.1f} GB free. Keep fewer checkpoints "
            "(output.save_total_limit), use LoRA instead of full fine-tuning, or free some space."
        )
