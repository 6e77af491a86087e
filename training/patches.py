"""Workarounds for the pinned libraries, each with its cause, its proof and when it can go.

Every patch is applied on the way into a trainer (`engine.build_trainer`), is idempotent, and changes
only what its docstring names. tests/test_patches.py checks, for each one, that the pinned library still
behaves the way that makes the patch necessary: when an upgrade fixes the cause, that test fails and
says which patch to delete.

- score_only_labelled_positions  TRL 1.16: the fused LM head scores masked positions on the CPU
- reproducible_length_grouping   transformers 5.23: the length-grouped train sampler has no seeded generator
- unpack_4bit_inference_layout   bitsandbytes 0.50: an eval forward repacks 4-bit weights, training then learns worse
- honour_fsdp_on_cpu             accelerate 1.15: an FSDP plugin is ignored on a multi-process CPU run
"""

from __future__ import annotations

import torch
import trl.trainer.utils as trl_utils
from transformers.trainer_pt_utils import LengthGroupedSampler


def score_only_labelled_positions() -> None:
    """Make TRL's fused LM head skip prompt and padding positions on the CPU too.

    TRL (1.16, `add_fused_lm_head`) projects only positions with a label through the 49k-wide LM
    head on Triton devices, but every position elsewhere, so that Neuron compiles one shape. On
    the CPU that spends most of the head's work (and an fp32 matmul in its backward) on prompt
    and padding tokens whose loss is masked anyway; it was a third of each step here. The loss
    is identical (tests/test_engine.py checks). Remove once TRL compacts on every device.
    """
    original = trl_utils._use_triton
    if getattr(original, "lathe_patched", False):
        return

    def compact_on_cpu(device) -> bool:
        return device.type == "cpu" or original(device)

    compact_on_cpu.lathe_patched = True
    trl_utils._use_triton = compact_on_cpu


def reproducible_length_grouping(trainer, seed: int) -> None:
    """Make length-grouped batches come in the same order after a resume.

    transformers (5.23) builds the training LengthGroupedSampler without a generator, so each
    epoch's order comes from the global RNG at the moment the epoch starts, which a resumed run
    does not reproduce: after a resume in the second epoch the losses differed by up to 28% from
    the uninterrupted run (tests/test_kill_resume.py). The Trainer calls `set_epoch` on the
    sampler at every epoch start, resumed or not; we give the sampler one that seeds its own
    generator with (seed, epoch). Remove once transformers seeds it.
    """
    make_sampler = trainer._get_train_sampler

    def seeded_sampler(*args, **kwargs):
        sampler = make_sampler(*args, **kwargs)
        if isinstance(sampler, LengthGroupedSampler):

            def set_epoch(epoch: int) -> None:
                sampler.generator = torch.Generator().manual_seed(seed + epoch)

            sampler.set_epoch = set_epoch
            set_epoch(0)
        return sampler

    trainer._get_train_sampler = seeded_sampler


def unpack_4bit_inference_layout(model) -> int:
    """Undo bitsandbytes' CPU inference repacking of 4-bit weights, so training sees the real weights.

    On CPUs with AVX-512 BF16, a no-grad forward in eval mode (any `generate`) rewrites each
    Linear4bit weight into a packed layout for fast inference; training on top of that layout runs
    but learns much worse (measured: loss 3.38 -> 2.00 instead of -> 1.31 over 6 steps). Our
    engine loads a fresh model per job, but anything that generates
    before training (a baseline sample, a calibration run) would hit this, so the layout is
    checked here, on the way into every trainer. Returns how many layers were unpacked.
    """
    unpacked = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            # The same call bitsandbytes makes itself before moving or saving such a weight
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
            module.quant_state = weight.quant_state
            unpacked += 1
    return unpacked


def honour_fsdp_on_cpu() -> None:
    """Make accelerate shard with FSDP on a multi-process CPU run too.

    accelerate (1.15) applies an FSDP plugin only on GPU-like devices: on the CPU it keeps
    DistributedType.MULTI_CPU, and the Trainer then silently trains plain DDP (measured: the model
    came out DistributedDataParallel-wrapped). torch's FSDP2 itself runs on the CPU over gloo, so
    after accelerate has set itself up we switch its state to FSDP the way it does on GPUs. This
    is how the two-process tests exercise the real sharding, saving and resume code here.
    Remove once accelerate treats MULTI_CPU + fsdp_plugin as FSDP.
    """
    import accelerate.state as state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__
    if getattr(original, "lathe_patched", False):
        return

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            # AcceleratorState copies PartialState's fields each time it is constructed: set it there too
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    init.lathe_patched = True
    state.AcceleratorState.__init__ = init
