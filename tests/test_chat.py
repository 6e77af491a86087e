"""ChatSession over a tiny job: the tuned answer uses the adapter, the base answer the base weights."""

from __future__ import annotations

import pytest
from helpers import make_adapter_job

QUESTION = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory, tiny_model_dir):
    """A finished-looking adapter job over the tiny model, with an adapter that changes answers."""
    return make_adapter_job(tmp_path_factory.mktemp("chat-job") / "tiny", tiny_model_dir)


@pytest.fixture(scope="module")
def session(tiny_job):
    from training.chat import ChatSession

    return ChatSession(tiny_job)


def generate_greedily(model, tokenizer, max_new_tokens: int) -> str:
    """What transformers' own generate() answers, to hold the session's decoding loop against."""
    import torch

    inputs = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_tuned_and_base_answers_differ_and_match_generate(session, tiny_job, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.chat import GenerationSettings

    settings = GenerationSettings(max_new_tokens=12)
    tuned = session.reply(QUESTION, tuned=True, settings=settings)
    base = session.reply(QUESTION, tuned=False, settings=settings)
    assert tuned != base

    # Both in the dtype the session chose for this machine (bf16 on a CPU with AVX-512 BF16).
    def plain():
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # The base answer comes from the untouched base weights (the random tiny model's greedy
    # answer is dull, so the tuned one below is what really exercises the decoding loop).
    assert base == generate_greedily(plain().to(session.dtype).eval(), tokenizer, 12)
    merged = PeftModel.from_pretrained(plain(), str(tiny_job / "adapter")).merge_and_unload()
    assert tuned == generate_greedily(merged.to(session.dtype).eval(), tokenizer, 12)


def test_stream_yields_pieces_and_records_stats(session):
    from training.chat import GenerationSettings

    session.last_stats = None
    pieces = list(session.stream(QUESTION, tuned=True, settings=GenerationSettings(max_new_tokens=12)))
    assert len(pieces) > 1
    stats = session.last_stats
    assert stats is not None
    assert stats.new_tokens > 1
    assert stats.time_to_first_token_s > 0
    assert stats.tokens_per_second > 0


def test_sampling_and_an_abandoned_stream_leave_the_session_usable(session):
    from training.chat import GenerationSettings

    sampled = session.reply(QUESTION, settings=GenerationSettings(max_new_tokens=8, temperature=0.8, top_p=0.9))
    assert isinstance(sampled, str) and sampled

    stream = session.stream(QUESTION, settings=GenerationSettings(max_new_tokens=12))
    next(stream)
    stream.close()  # a person pressed Stop: the lock must be free for the next question
    assert session.reply(QUESTION, settings=GenerationSettings(max_new_tokens=4))


def test_shared_base_weights_answer_like_two_copies_with_one(tiny_job, tiny_model_dir):
    """The GPU default: one copy of the base weights, the adapter switched off for base answers."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.chat import ChatSession, GenerationSettings

    shared = ChatSession(tiny_job, share_base_weights=True)
    assert shared.base_model is None
    settings = GenerationSettings(max_new_tokens=12)
    tuned = shared.reply(QUESTION, tuned=True, settings=settings)
    base = shared.reply(QUESTION, tuned=False, settings=settings)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert base == generate_greedily(plain.to(shared.dtype).eval(), tokenizer, 12)
    adapted = PeftModel.from_pretrained(plain, str(tiny_job / "adapter")).to(shared.dtype).eval()
    assert tuned == generate_greedily(adapted, tokenizer, 12) and tuned != base
    assert shared.reply(QUESTION, tuned=True, settings=settings) == tuned  # the adapter is back on after a base answer
