"""How fast the chat answers: time to first token and decode tokens/s of the tuned model.

Asks eight different questions (greedy, up to 64 new tokens) through `ChatSession.stream`, and
the same questions through the path chat used before (the adapter unmerged on fp32 weights,
transformers' TextIteratorStreamer, no warm-up), alternating the two so that the noise of a shared
machine falls on both. Definitions are those of `training.chat.ReplyStats`; for the old path the
time to first token is when its first text piece reached the reader, which is what a person saw.

    python benchmarks/chat_latency.py            # trains the quickstart job first (~2 min)
    python benchmarks/chat_latency.py JOB_DIR    # measures an existing job
    python benchmarks/chat_latency.py JOB_DIR --dtype fp32   # the path of CPUs without fast bf16

It prints the CPU kind and the settings chosen for it (weight dtype, threads) first.

The last line is `ttft_s: X tokens_per_s: Y`, the medians for ChatSession.

Where llama.cpp (llama-cpp-python) is installed, the same questions also go to the llama.cpp engine
(training.chat_llamacpp, the job's q8_0 GGUF, made once in the job folder) in the same run, and a
`llama.cpp vs ChatSession` line gives the ratios and whether the greedy answers are the same text.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = [
    "Who are you?",
    "Explain how a rainbow forms.",
    "Give me three tips for sleeping better.",
    "Describe the city of Paris in a few sentences.",
    "Why is the sky blue?",
    "Write a short poem about autumn leaves.",
    "How do I boil an egg?",
    "What are the benefits of regular exercise?",
]
MAX_NEW_TOKENS = 64


def old_path(job_dir: Path):
    """The chat before this benchmark existed: fp32 base, adapter unmerged, TextIteratorStreamer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from training.models import resolve_model
    from training.spec import load_spec

    spec = load_spec(job_dir / "spec.yaml")
    base = AutoModelForCausalLM.from_pretrained(resolve_model(spec.model.name_or_path), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(job_dir / "adapter")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(job_dir / "adapter"))

    class TimedStreamer(TextIteratorStreamer):
        def put(self, value):
            self.token_times.append(time.perf_counter())
            super().put(value)

    def ask(question: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TimedStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        streamer.token_times = []

        def generate():
            with torch.inference_mode():
                model.generate(
                    **inputs,
                    streamer=streamer,
                    pad_token_id=tokenizer.pad_token_id,
                    max_new_tokens=MAX_NEW_TOKENS,
                    do_sample=False,
                )

        thread = threading.Thread(target=generate)
        thread.start()
        first_piece, text = None, ""
        for piece in streamer:
            text += piece
            if first_piece is None and piece:
                first_piece = time.perf_counter()
        thread.join()
        times = streamer.token_times[1:]  # the first put() is the prompt
        return first_piece - started, (len(times) - 1) / (times[-1] - times[0]), len(times), text

    return ask


def llama_cpp_session(job_dir: Path):
    """The llama.cpp engine on the job's q8_0 GGUF (made now if the job folder has none), or None if not installed."""
    from training.llama_cpp_tools import runtime_installed

    if not runtime_installed():
        print("llama.cpp (llama-cpp-python) is not installed: `make dev` builds it. Measuring transformers only.")
        return None
    from training.chat_llamacpp import LlamaCppChatSession

    loaded = time.perf_counter()
    session = LlamaCppChatSession(job_dir, answers="tuned")
    print(f"LlamaCppChatSession ({session.description}), loaded in {time.perf_counter() - loaded:.1f} s")
    return session


def main() -> None:
    from benchmarks.identity_probe import train_quickstart
    from training.chat import ChatSession, GenerationSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_dir", nargs="?", help="A finished adapter job; default: train the quickstart job now.")
    parser.add_argument("--no-old", action="store_true", help="Skip the old path (saves ~half the run).")
    parser.add_argument("--no-llama-cpp", action="store_true", help="Skip the llama.cpp engine.")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], help="Force the chat weights' dtype (LATHE_CHAT_DTYPE).")
    options = parser.parse_args()
    if options.dtype:
        import os

        os.environ["LATHE_CHAT_DTYPE"] = options.dtype
    from training.cpu_tuning import chat_dtype_name, cpu_kind, machine_busy

    dtype, why = chat_dtype_name()
    print(f"CPU: {cpu_kind()}; chat weights {dtype} ({why}); other work running: {machine_busy()}")
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        job_dir = Path(options.job_dir) if options.job_dir else train_quickstart(Path(tmp))
        loaded = time.perf_counter()
        session = ChatSession(job_dir, device="cpu")
        print(f"ChatSession on {session.device} in {session.dtype}, loaded in {time.perf_counter() - loaded:.1f} s")
        print(f"decode threads chosen: {session.threads} (chosen again for each reply)")
        old_ask = None if options.no_old else old_path(job_dir)
        fast = None if options.no_llama_cpp else llama_cpp_session(job_dir)
        new, old, gguf, same = [], [], [], []
        for question in PROMPTS:
            answer = session.reply([{"role": "user", "content": question}], tuned=True, settings=settings)
            stats = session.last_stats
            new.append((stats.time_to_first_token_s, stats.tokens_per_second))
            line = (
                f"{question[:44]:44s} new: ttft {stats.time_to_first_token_s:5.3f} s "
                f"{stats.tokens_per_second:5.1f} tok/s ({stats.new_tokens:2d} tokens)"
            )
            if old_ask:
                ttft, rate, count, old_answer = old_ask(question)
                old.append((ttft, rate))
                same.append(old_answer.strip() == answer.strip())
                line += f"   old: ttft {ttft:5.3f} s {rate:5.1f} tok/s ({count:2d} tokens)"
            if fast is not None:
                fast_answer = fast.reply([{"role": "user", "content": question}], tuned=True, settings=settings)
                fast_stats = fast.last_stats
                gguf.append((fast_stats.time_to_first_token_s, fast_stats.tokens_per_second))
                same.append(fast_answer == answer)
                line += (
                    f"   llama.cpp: ttft {fast_stats.time_to_first_token_s:5.3f} s "
                    f"{fast_stats.tokens_per_second:5.1f} tok/s ({fast_stats.new_tokens:2d} tokens"
                    f"{', same text' if same[-1] else ', other text'})"
                )
            print(line, f"-> {answer.strip()[:50]!r}" if question == PROMPTS[0] else "")
            if fast is not None and question == PROMPTS[0]:
                print(f"{'':44s} llama.cpp -> {fast_answer.strip()[:50]!r}")
    ttft, rate = (statistics.median(column) for column in zip(*new, strict=True))
    if old:
        old_ttft, old_rate = (statistics.median(column) for column in zip(*old, strict=True))
        print(f"old path medians: ttft_s: {old_ttft:.3f} tokens_per_s: {old_rate:.1f}")
        print(f"speedup: time to first token {old_ttft / ttft:.2f}x, tokens/s {rate / old_rate:.2f}x")
        print(f"greedy answers identical to the old path: {sum(same)} of {len(same)}")
    if gguf:
        fast_ttft, fast_rate = (statistics.median(column) for column in zip(*gguf, strict=True))
        print(f"llama.cpp medians ({fast.description}): ttft_s: {fast_ttft:.3f} tokens_per_s: {fast_rate:.1f}")
        print(
            f"llama.cpp vs ChatSession: time to first token {ttft / fast_ttft:.2f}x faster, "
            f"tokens/s {fast_rate / rate:.2f}x; same greedy answer on {sum(same)} of {len(same)} questions"
        )
    print(f"ttft_s: {ttft:.3f} tokens_per_s: {rate:.1f}")


if __name__ == "__main__":
    main()
