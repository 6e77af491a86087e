"""Each library patch (training/patches.py) is still needed with the pinned versions, and does what it says.

When an upgrade fixes a cause, the test that names it fails: delete that patch (and this test) then.
Fast: no training, no model downloads."""

import inspect

import pytest
import torch


def test_trl_still_scores_masked_positions_on_the_cpu():
    """score_only_labelled_positions: TRL 1.16 compacts to labelled positions only on Triton devices.

    `loss_type="chunked_nll"` is only a deprecated alias of "nll" and goes through the same fused head, so it
    does not skip the masked positions either (tests/test_engine.py measures that the patch keeps the loss)."""
    from trl.kernels.chunked_logprob import _use_triton
    from trl.trainer.sft_config import SFTConfig

    assert not _use_triton(torch.device("cpu"))
    assert "deprecated alias" in inspect.getsource(SFTConfig)


def test_transformers_still_builds_the_train_sampler_without_a_generator():
    """reproducible_length_grouping: the eval sampler is seeded; the train one is not (transformers 5.23)."""
    from transformers import Trainer

    train = inspect.getsource(Trainer._get_train_sampler)
    call = train[train.index("LengthGroupedSampler(") :]
    call = call[: call.index(")\n")]
    assert "generator" not in call
    assert "generator" in inspect.getsource(Trainer._get_eval_sampler)


def test_accelerate_still_ignores_fsdp_on_a_multi_process_cpu_run():
    """honour_fsdp_on_cpu: accelerate 1.15 turns an FSDP plugin into FSDP only for GPU-like devices."""
    from accelerate.state import AcceleratorState

    source = inspect.getsource(AcceleratorState.__init__)
    before = source[: source.index("self.distributed_type = DistributedType.FSDP")]
    devices = before[before.rindex("elif self.distributed_type in [") :]
    assert "MULTI_GPU" in devices and "MULTI_CPU" not in devices


def test_bitsandbytes_repacks_4bit_weights_for_inference_and_the_patch_undoes_it():
    """unpack_4bit_inference_layout: bitsandbytes 0.50 repacks on an eval forward and keeps that layout
    when training starts; the patch restores the real weights (bit for bit the ones quantised)."""
    bnb = pytest.importorskip("bitsandbytes")
    from training.patches import unpack_4bit_inference_layout

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(torch.randn(64, 64), requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")  # quantises
    x = torch.randn(2, 64, dtype=torch.bfloat16)
    quantised = layer.weight.data.clone()
    if not getattr(layer, "support_avx512bf16_for_cpu", False):
        pytest.skip("this CPU has no AVX-512 BF16: bitsandbytes does not repack here, the patch has nothing to do")
    layer.eval()
    with torch.no_grad():
        layer(x)
    layer.train()
    assert layer.weight.quant_state.packing_format_for_cpu  # still packed as training begins: the cause
    model = torch.nn.Sequential(layer)
    assert unpack_4bit_inference_layout(model) == 1
    assert not layer.weight.quant_state.packing_format_for_cpu
    assert torch.equal(layer.weight.data, quantised)  # the very weights that were quantised, not a repacked copy
