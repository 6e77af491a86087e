"""Talk to a finished job: the fine-tuned model, and the base model beside it.

Decoding one token of a small model is mostly reading every weight once, so what makes chat fast
is fewer bytes and less work per token (`benchmarks/chat_latency.py` measures it, see
docs/benchmarks.md):
- For adapter jobs the adapter is merged into its own copy of the base weights, and the base
  answer comes from a second, untouched copy. An unmerged adapter adds two small matmuls and
  PEFT's Python dispatch to each of the ~200 adapted layers for every token (~20% of the decode
  time here); merging and unmerging around each base answer would round the base weights a
  little further off every time.
- Weights in bf16 where this CPU computes it faster than fp32 (half the bytes of fp32, so the two
  copies take the memory one fp32 copy took), as a one-time probe measured (training/cpu_tuning.py).
- All CPU cores while nothing else trains, one fewer while a job does (see `decode_threads`).
A warm-up answer on load was tried and dropped: the first answer was no slower than later ones.
"""

from __future__ import annotations

import abc
import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training import jobdir
from training.errors import UserError
from training.models import merge_adapters, starting_point

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy: the same question always gets the same answer
    top_p: float = 1.0
    seed: int | None = None  # sampling only: the same seed draws the same answer again

    def to_kwargs(self) -> dict:
        if self.temperature <= 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }


@dataclass(frozen=True)
class ReplyStats:
    """How fast one finished reply came.

    time_to_first_token_s runs from the `stream()` call (chat template and tokenising included)
    to the moment the first new token was chosen. tokens_per_second is the decode rate: the tokens
    after the first divided by the time after the first, so the prompt's prefill, which the first
    token pays for, does not dilute it (0.0 for a one-token reply).
    """

    time_to_first_token_s: float
    tokens_per_second: float
    new_tokens: int
    prompt_tokens: int = 0  # the conversation after the chat template, in the tokenizer's tokens
    finish_reason: str = "stop"  # "stop": the model ended its answer (EOS); "length": max_new_tokens ran out


def inference_dtype(device: str):
    """On a GPU bf16 where it runs natively, else fp16. On a CPU the faster of bf16 and fp32 as measured on
    this CPU kind (training/cpu_tuning.py): bf16 halves the bytes read per token, but CPUs without native
    bf16 emulate it slowly."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    from training.cpu_tuning import chat_dtype

    return chat_dtype()


def decode_threads() -> int:
    """Threads for one reply on a CPU: all cores when nothing else trains, one fewer while a job does
    (training/cpu_tuning.py says why)."""
    from training.cpu_tuning import decode_threads as choose

    return choose()


def _torch_threads(count: int | None):
    from training.cpu_tuning import threads

    return threads(count)


class _TokenStreamer:
    """Hands each new token id, with the time it was chosen, to the thread reading the reply.

    transformers' TextIteratorStreamer holds text back until a word ends, which delays the first
    piece a person sees by a token or more; this one passes on every token and the reader decodes."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self._prompt_skipped = False

    def put(self, value) -> None:
        if not self._prompt_skipped:  # generate() puts the prompt's ids first
            self._prompt_skipped = True
            return
        self.queue.put((time.perf_counter(), value.reshape(-1).tolist()))

    def end(self) -> None:
        self.queue.put(None)


class ChatEngine(abc.ABC):
    """What the chat tab, the CLI and the API server ask of an engine (this one, or llama.cpp's in
    training/chat_llamacpp.py): `stream()` yields a reply's pieces; `reply()` is the whole of it."""

    engine = ""

    def stream(
        self,
        messages: list[Message],
        tuned: bool = True,
        settings: GenerationSettings | None = None,
        cancel: threading.Event | None = None,
        tools: list[dict] | None = None,
    ) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated; `last_stats` is set when it ends.

        `tuned`: the tuned model answers, else the base model. Setting `cancel` (from any thread) ends
        generation at the next token, as if the reply had ended. `tools`: function schemas shown to the
        model through its chat template, for an engine that takes them (`tools_problem` says why one does
        not); `parse_last_reply` then reads any calls out of the reply."""
        return self._stream(messages, tuned, settings or GenerationSettings(), cancel, tools)

    @abc.abstractmethod
    def _stream(self, messages, tuned, settings, cancel, tools) -> Iterator[str]:
        """The engine's own stream(), as a generator (nothing runs before the first piece is asked for);
        the arguments are stream()'s, with `settings` filled in."""

    @abc.abstractmethod
    def prompt_tokens(self, messages: list[Message], tools: list[dict] | None = None) -> int:
        """How many tokens the conversation (and the tools' schemas) take in this engine's prompt."""

    def reply(self, messages: list[Message], tuned: bool = True, settings: GenerationSettings | None = None) -> str:
        return "".join(self.stream(messages, tuned=tuned, settings=settings))

    def tools_problem(self, messages: list[Message], tools: list[dict]) -> str | None:
        """Why this engine cannot answer with tool calls (None when it can)."""
        return f"the {self.engine} chat engine does not take tools yet. Serve the job with --engine transformers"

    def parse_last_reply(self, messages: list[Message], tools: list[dict]) -> dict:
        """The last reply as content and tool calls (training/tool_calls.py), for an engine that takes tools."""
        raise UserError(self.tools_problem(messages, tools))


class ChatSession(ChatEngine):
    def __init__(
        self,
        job_dir: str | Path,
        token: str | None = None,
        device: str | None = None,
        share_base_weights: bool | None = None,
        answers: Literal["both", "tuned", "base"] = "both",
    ):
        """`share_base_weights`: one copy of the base weights with the adapter on top (base answers run
        with the adapter switched off) instead of two copies. None = on a GPU only, where memory is
        scarce and a second 7B copy would not fit beside a training job; on a CPU two bf16 copies are
        faster (no LoRA dispatch per token) and cost what one fp32 copy did.

        `answers`: "tuned" or "base" loads only the model that will answer (the API server serves one),
        so a large model does not sit in memory twice for nothing."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.job_dir = Path(job_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = inference_dtype(self.device)
        self.threads = decode_threads() if self.device == "cpu" else None  # chosen again for each reply
        spec = jobdir.load_job_spec(self.job_dir)
        adapter_dir, model_dir = self.job_dir / jobdir.ADAPTER, self.job_dir / jobdir.MODEL
        if spec.method.objective == "reward":
            raise UserError(
                f"{self.job_dir.name} is a reward model: it scores answers rather than writing them, so it cannot chat."
            )
        base_ref, earlier_adapters = starting_point(spec)

        hub = {"revision": spec.model.revision, "token": token or False}

        def load(ref, **kwargs):  # fp32 first and cast afterwards, so the adapter merges at full precision
            model = AutoModelForCausalLM.from_pretrained(ref, dtype=torch.float32, **kwargs)
            # A job built on an earlier one (DPO after SFT) starts from that job's merged weights
            return merge_adapters(model, earlier_adapters) if ref == base_ref else model

        share = self.device != "cpu" if share_base_weights is None else share_base_weights
        share = share and answers == "both"  # sharing saves a copy only when both answer
        weights_dir = adapter_dir if adapter_dir.is_dir() else model_dir
        if not weights_dir.is_dir():
            raise UserError(f"{self.job_dir} has no adapter/ or model/ folder yet. Has the job finished?")
        self.tokenizer = AutoTokenizer.from_pretrained(str(weights_dir))  # the job's chat template
        self.model = None  # the tuned model; None when only the base answers
        self.base_model = None  # None: base answers come from self.model with its adapter disabled
        self._adapter_shared = share and adapter_dir.is_dir()
        if answers != "base":
            if adapter_dir.is_dir():
                from peft import PeftModel

                tuned = PeftModel.from_pretrained(load(base_ref, **hub), str(adapter_dir))
                tuned = tuned if self._adapter_shared else tuned.merge_and_unload()
            else:
                tuned = load(str(model_dir))
            self.model = tuned.to(self.device, self.dtype).eval()
        if answers != "tuned" and not self._adapter_shared:
            self.base_model = load(base_ref, **hub).to(self.device, self.dtype).eval()  # never sees the adapter
        self._lock = threading.Lock()  # one generation at a time: the models are shared
        self.last_stats: ReplyStats | None = None  # set when a stream() finishes
        self.last_raw_reply = ""  # the last reply as generated, special tokens kept (tool calls are read from it)

    engine = "transformers"

    @property
    def description(self) -> str:
        return f"engine: transformers {str(self.dtype).removeprefix('torch.')} on {self.device}"

    @contextlib.contextmanager
    def model_for(self, tuned: bool):
        """The model that answers as the tuned (or the base) model, for a forward pass of one's own."""
        if tuned or self.base_model is not None:
            yield self.model if tuned else self.base_model
            return
        with self.model.disable_adapter():
            yield self.model

    def _inputs(self, messages: list[Message], tools: list[dict] | None = None):
        from jinja2 import TemplateError

        try:
            inputs = self.tokenizer.apply_chat_template(
                messages, tools=tools or None, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        except TemplateError as error:  # e.g. a template that allows no system message, or strict turn order
            raise UserError(f"messages: the model's chat template refused this conversation: {error}") from None
        return inputs.to(self.device)

    def prompt_tokens(self, messages: list[Message], tools: list[dict] | None = None) -> int:
        """How many tokens the conversation (and the tools' schemas) take once the chat template is applied."""
        return int(self._inputs(messages, tools)["input_ids"].shape[1])

    def tools_problem(self, messages: list[Message], tools: list[dict]) -> str | None:
        from training.tool_calls import tools_problem

        return tools_problem(self.tokenizer, messages, tools)

    def parse_last_reply(self, messages: list[Message], tools: list[dict]) -> dict:
        from training.tool_calls import parse_reply

        prompt = self.tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        return parse_reply(self.tokenizer, prompt, self.last_raw_reply, tools)

    @property
    def context_window(self) -> int | None:
        """The most tokens (prompt + answer) the model was built to read, when its config says."""
        model = self.model if self.model is not None else self.base_model
        return getattr(model.config, "max_position_embeddings", None)

    def _stop_ids(self, model) -> set[int]:
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        return set(eos) | ({self.tokenizer.eos_token_id} - {None})

    def _stream(self, messages, tuned, settings, cancel, tools) -> Iterator[str]:
        """generate() in a second thread, its tokens decoded here; `last_raw_reply` keeps the reply's raw
        text, special tokens and all, for `parse_last_reply` to read tool calls from."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        started = time.perf_counter()
        if tuned and self.model is None:
            raise UserError("This session loaded only the base model; load it with answers='tuned' or 'both'.")
        if not tuned and self.base_model is None and not self._adapter_shared:
            raise UserError("This session loaded only the tuned model; load it with answers='base' or 'both'.")
        model = self.model if tuned or self.base_model is None else self.base_model
        adapter_off = not tuned and self.base_model is None
        inputs = self._inputs(messages, tools)  # here, so a conversation the template refuses is reported at once
        if self.device == "cpu":
            self.threads = decode_threads()  # a training job may have started or ended since the last reply
        streamer, abandoned, errors = _TokenStreamer(), threading.Event(), []

        class StopWhenAbandoned(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                stop = abandoned.is_set() or (cancel is not None and cancel.is_set())
                return torch.full((input_ids.shape[0],), stop, device=input_ids.device)

        def generate():
            try:
                with (
                    torch.inference_mode(),
                    _torch_threads(self.threads),
                    model.disable_adapter() if adapter_off else contextlib.nullcontext(),
                ):
                    if settings.seed is not None and settings.temperature > 0:
                        torch.manual_seed(settings.seed)  # under the lock: no other answer draws meanwhile
                    model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([StopWhenAbandoned()]),
                        pad_token_id=self.tokenizer.pad_token_id,
                        **settings.to_kwargs(),
                    )
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(error)
                streamer.end()

        with self._lock:
            # generate() streams only from a second thread; the reader decodes in this one.
            thread = threading.Thread(target=generate, daemon=True)
            thread.start()
            ids: list[int] = []
            times: list[float] = []
            text = ""
            try:
                while (item := streamer.queue.get()) is not None:
                    times.append(item[0])
                    ids.extend(item[1])
                    # Decode the whole reply each time: a character can span tokens, and decoding
                    # tokens one by one would break it (and drop leading spaces for some tokenizers).
                    decoded = self.tokenizer.decode(ids, skip_special_tokens=True)
                    if decoded.endswith("\ufffd"):  # half a character so far: wait for the rest
                        continue
                    piece, text = decoded[len(text) :], decoded
                    if piece:
                        yield piece
            finally:
                abandoned.set()  # if the reader stopped early (Stop pressed), stop before freeing the lock
                # An abandoned generator can be finalised by the garbage collector in any thread, including
                # the generating one, which cannot join itself; it stops at the next token all the same.
                if threading.current_thread() is not thread:
                    thread.join()
            if errors:
                raise errors[0]
            self.last_raw_reply = self.tokenizer.decode(ids, skip_special_tokens=False)
            if times:  # still under the lock, so the stats are this reply's and no other's
                decode_s = times[-1] - times[0]
                ended_itself = ids[-1] in self._stop_ids(model)
                self.last_stats = ReplyStats(
                    time_to_first_token_s=times[0] - started,
                    tokens_per_second=(len(ids) - 1) / decode_s if decode_s > 0 else 0.0,
                    new_tokens=len(ids),
                    prompt_tokens=int(inputs["input_ids"].shape[1]),
                    finish_reason="length" if not ended_itself and len(ids) >= settings.max_new_tokens else "stop",
                )


ENGINES = ("auto", "transformers", "llama.cpp")


def choose_engine(job_dir: str | Path, device: str | None = None, engine: str | None = None) -> str:
    """Which engine answers: `engine`, else env LATHE_CHAT_ENGINE, else "auto".

    auto picks llama.cpp on a CPU where it is installed and its converter handles the model (the job's q8_0
    GGUF decodes several times faster there than transformers, see docs/benchmarks.md); transformers on a
    GPU, for an architecture llama.cpp cannot convert, or where llama.cpp is not installed."""
    engine = engine or os.environ.get("LATHE_CHAT_ENGINE") or "auto"
    if engine not in ENGINES:
        raise UserError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}.")
    if engine != "auto":
        return engine
    import torch

    from training.gguf_export import check_exportable
    from training.llama_cpp_tools import converter_installed, runtime_installed

    if (device or ("cuda" if torch.cuda.is_available() else "cpu")) != "cpu":
        return "transformers"
    if not (runtime_installed() and converter_installed()):
        return "transformers"
    try:
        check_exportable(Path(job_dir), "q8_0")
    except UserError:
        return "transformers"
    return "llama.cpp"


def open_session(
    job_dir: str | Path,
    token: str | None = None,
    device: str | None = None,
    answers: Literal["both", "tuned", "base"] = "both",
    engine: str | None = None,
    say=print,
):
    """A chat session on the engine `choose_engine` picks; both kinds answer through the same methods."""
    if choose_engine(job_dir, device, engine) == "llama.cpp":
        from training.chat_llamacpp import LlamaCppChatSession

        return LlamaCppChatSession(job_dir, token=token, answers=answers, say=say)
    return ChatSession(job_dir, token=token, device=device, answers=answers)
