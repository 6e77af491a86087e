"""Chat through llama.cpp: the job's GGUF file answers instead of transformers.

On a CPU, decoding a small model is mostly reading weights; llama.cpp reads 8-bit weights with
hand-written SIMD kernels and has no Python in the per-token loop, so it answers several times
faster than transformers in bf16/fp32 (benchmarks/chat_latency.py, docs/benchmarks.md). The files
are made once with llama.cpp's own converter (training.gguf_export) and cached in the job folder:
`gguf/<job>-q8_0.gguf` for the tuned model and `gguf/base-q8_0.gguf` for the base model it started
from (the earlier jobs' adapters merged in, for a chained job), so both sides of the chat tab answer
through the same engine. The prompt is rendered with the chat template stored in the file and
generation stops on the file's end-of-generation tokens, as any llama.cpp runtime would.

The same surface as training.chat.ChatSession: `stream`, `reply`, `last_stats`, `prompt_tokens`,
`context_window`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from training import jobdir
from training.chat import ChatEngine, Message, ReplyStats
from training.errors import UserError

DEFAULT_QUANT = "q8_0"  # answers as the trained model does (tests/test_gguf.py); q4_k_m drifts a little


def decode_threads() -> int:
    """One thread fewer than physical cores, as training.chat.decode_threads argues: a thread sharing its core
    with a busy process stalls every token at the barrier that ends each matmul."""
    import psutil

    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (psutil.cpu_count(logical=False) or os.cpu_count() or 2) - 1)


def cached_gguf(job_dir: Path, base: bool, quant: str = DEFAULT_QUANT, token: str | None = None, say=print) -> Path:
    """The job's (or its base model's) GGUF in the job folder, made on first use."""
    from training.gguf_export import export_base_gguf, export_gguf, gguf_name

    folder = Path(job_dir) / "gguf"
    path = folder / (f"base-{quant}.gguf" if base else gguf_name(job_dir, quant))
    if path.is_file():
        return path
    building = folder / f".building-{path.stem}"  # a folder of its own, so a failed build leaves no file behind
    from training.llama_cpp_tools import remove

    remove(building)
    try:
        say(f"making the {'base' if base else 'tuned'} model's GGUF ({quant}) for llama.cpp, once for this job...")
        made = (export_base_gguf if base else export_gguf)(job_dir, building, quant, token=token, say=lambda _: None)
        made.rename(path)
    finally:
        remove(building)
    return path


class LlamaCppChatSession(ChatEngine):
    engine = "llama.cpp"

    def __init__(
        self,
        job_dir: str | Path,
        token: str | None = None,
        answers: Literal["both", "tuned", "base"] = "both",
        quant: str = DEFAULT_QUANT,
        say=print,
    ):
        from training.llama_cpp_tools import ensure_runtime

        ensure_runtime(say)
        from llama_cpp import Llama

        self.job_dir = Path(job_dir)
        spec = jobdir.load_job_spec(self.job_dir)
        if spec.method.objective == "reward":
            raise UserError(
                f"{self.job_dir.name} is a reward model: it scores answers rather than writing them, so it cannot chat."
            )
        if not (self.job_dir / "adapter").is_dir() and not (self.job_dir / "model").is_dir():
            raise UserError(f"{self.job_dir} has no adapter/ or model/ folder yet. Has the job finished?")
        self.quant = quant
        self.device = "cpu"
        self.threads = decode_threads()
        context = spec.hyperparameters.context_length * 4  # room for a conversation longer than one training row

        def load(base: bool):
            path = cached_gguf(self.job_dir, base=base, quant=quant, token=token, say=say)
            return Llama(str(path), n_ctx=context, n_threads=self.threads, n_batch=512, verbose=False)

        self.model = load(base=False) if answers != "base" else None
        self.base_model = load(base=True) if answers != "tuned" else None
        self._lock = threading.Lock()
        self.last_stats: ReplyStats | None = None

    @property
    def description(self) -> str:
        return f"engine: llama.cpp {self.quant} ({self.threads} thread{'s' if self.threads > 1 else ''})"

    def _llm(self, tuned: bool):
        llm = self.model if tuned else self.base_model
        if llm is None:
            which = "base" if tuned else "tuned"
            raise UserError(f"This session loaded only the {which} model; load it with answers='both'.")
        return llm

    def _prompt_ids(self, llm, messages: list[Message]) -> list[int]:
        """The conversation through the chat template stored in the GGUF file, as llama-cpp-python renders it."""
        from jinja2 import TemplateError
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise UserError(f"{self.job_dir.name}: its GGUF file has no chat template; use --engine transformers.")

        def text(token_id: int) -> str:
            return llm._model.token_get_text(token_id) if token_id != -1 else ""

        formatter = Jinja2ChatFormatter(template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()))
        try:
            prompt = formatter(messages=messages).prompt
        except TemplateError as error:
            raise UserError(f"messages: the model's chat template refused this conversation: {error}") from None
        return llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def prompt_tokens(self, messages: list[Message], tools: list[dict] | None = None) -> int:
        if tools:
            raise UserError(self.tools_problem(messages, tools))
        return len(self._prompt_ids(self._llm(self.model is not None), messages))

    @property
    def context_window(self) -> int | None:
        llm = self.model if self.model is not None else self.base_model
        return llm.n_ctx()

    def _stream(self, messages, tuned, settings, cancel, tools) -> Iterator[str]:
        """The reply as llama.cpp generates it. `cancel` (the API server's, when a client hangs up) ends it
        at the next token. `tools` are refused (ChatEngine.tools_problem): this engine does not read tool
        calls yet."""
        if tools:
            raise UserError(self.tools_problem(messages, tools))
        import llama_cpp

        started = time.perf_counter()
        llm = self._llm(tuned)
        with self._lock:
            prompt = self._prompt_ids(llm, messages)
            if len(prompt) + settings.max_new_tokens > llm.n_ctx():
                raise UserError(
                    f"messages: the conversation takes {len(prompt)} tokens; with max_new_tokens "
                    f"{settings.max_new_tokens} it passes the {llm.n_ctx()}-token window. Start a new chat."
                )
            if settings.seed is not None:
                llm.set_seed(settings.seed)
            greedy = settings.temperature <= 0
            tokens = llm.generate(
                prompt,
                temp=0.0 if greedy else settings.temperature,
                top_p=1.0 if greedy else settings.top_p,
                top_k=0,  # no top-k: the same sampling as transformers' generate with top_k off
                min_p=0.0,
                repeat_penalty=1.0,
                reset=True,
            )
            ids: list[int] = []
            times: list[float] = []
            raw = b""
            text = ""
            ended_itself = False
            try:
                for token in tokens:
                    if cancel is not None and cancel.is_set():
                        break
                    if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                        times.append(time.perf_counter())
                        ids.append(token)
                        ended_itself = True
                        break
                    times.append(time.perf_counter())
                    ids.append(token)
                    raw += llm.detokenize([token], special=False)
                    decoded = raw.decode("utf-8", errors="ignore")
                    if len(raw.decode("utf-8", errors="replace")) != len(decoded):  # half a character: wait
                        continue
                    piece, text = decoded[len(text) :], decoded
                    if piece:
                        yield piece
                    if len(ids) >= settings.max_new_tokens:
                        break
            finally:
                tokens.close()
            if times:
                decode_s = times[-1] - times[0]
                self.last_stats = ReplyStats(
                    time_to_first_token_s=times[0] - started,
                    tokens_per_second=(len(ids) - 1) / decode_s if decode_s > 0 else 0.0,
                    new_tokens=len(ids),
                    prompt_tokens=len(prompt),
                    finish_reason="stop" if ended_itself else "length",
                )
