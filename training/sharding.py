"""FSDP: shard a job's weights, gradients and optimizer states across its processes.

The Trainer does the sharding itself (transformers' `fsdp` / `fsdp_config` arguments become an
accelerate FullyShardedDataParallelPlugin); this module only chooses the settings:

- FSDP2 (`fully_shard`, torch's current FSDP; transformers 5 defaults to it),
- full sharding, re-sharded after each layer's forward,
- one FSDP unit per decoder layer, the model's own "do not split" class (LlamaDecoderLayer, ...),
- FULL_STATE_DICT, so `save_model` gathers the weights into rank 0 and writes them in the standard
  layout (model/ or adapter/), and Trainer checkpoints hold whole tensors that any world size resumes.
"""

from __future__ import annotations

from training.errors import UserError


def layer_classes(model) -> list[str]:
    """The class names to wrap one by one: the model's decoder layer (transformers lists it as `_no_split_modules`)."""
    names = list(getattr(model, "_no_split_modules", None) or [])
    if not names:
        raise UserError(
            f"hyperparameters.distributed: {type(model).__name__} does not name its decoder layer, so fsdp "
            "cannot shard it layer by layer. Set hyperparameters.distributed to ddp."
        )
    return names


def fsdp_arguments(layers: list[str], checkpointing: bool) -> dict:
    """The Trainer arguments that turn FSDP on. With FSDP, activation checkpointing is FSDP's own
    (transformers refuses both at once: the Trainer's kind adds an all-gather per layer in the backward)."""
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "reshard_after_forward": True,  # full shard: parameters are gathered per layer, then freed
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": layers,
            "state_dict_type": "FULL_STATE_DICT",
            "activation_checkpointing": checkpointing,
        },
        "gradient_checkpointing": False,
    }
