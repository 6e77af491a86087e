"""Talk to a finished job: the fine-tuned model, and the base model beside it.

For adapter jobs one copy of the base weights serves both answers: the tuned answer runs with
the adapter on, the base answer inside `disable_adapter()`. That halves memory versus loading
the base model twice.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from training.errors import UserError
from training.models import resolve_model
from training.spec import load_spec

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy: the same question always gets the same answer
    top_p: float = 1.0

    def to_kwargs(self) -> dict:
        if self.temperature <= 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }


class ChatSession:
    def __init__(self, job_dir: str | Path, token: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.job_dir = Path(job_dir)
        spec = load_spec(self.job_dir / "spec.yaml")
        adapter_dir, model_dir = self.job_dir / "adapter", self.job_dir / "model"
        base_ref = resolve_model(spec.model.name_or_path)
        common = {"revision": spec.model.revision, "token": token or False, "dtype": torch.float32}
        if adapter_dir.is_dir():
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(base_ref, **common)
            self.model = PeftModel.from_pretrained(base, str(adapter_dir))
            self.tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
            self.base_model = None
        elif model_dir.is_dir():
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            self.base_model = AutoModelForCausalLM.from_pretrained(base_ref, **common)
        else:
            raise UserError(f"{self.job_dir} has no adapter/ or model/ folder yet. Has the job finished?")
        self.model.eval()
        self._lock = threading.Lock()  # one generation at a time: the models are shared

    @contextlib.contextmanager
    def _model_for(self, tuned: bool):
        if tuned:
            yield self.model
        elif self.base_model is not None:
            yield self.base_model
        else:
            with self.model.disable_adapter():
                yield self.model

    def _inputs(self, messages: list[Message]):
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    def reply(self, messages: list[Message], tuned: bool = True, settings: GenerationSettings | None = None) -> str:
        return "".join(self.stream(messages, tuned=tuned, settings=settings))

    def stream(
        self, messages: list[Message], tuned: bool = True, settings: GenerationSettings | None = None
    ) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated."""
        import torch
        from transformers import TextIteratorStreamer

        settings = settings or GenerationSettings()
        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        with self._lock, self._model_for(tuned) as model:
            errors: list[BaseException] = []

            def generate():
                try:
                    with torch.inference_mode():
                        model.generate(
                            **inputs,
                            streamer=streamer,
                            pad_token_id=self.tokenizer.pad_token_id,
                            **settings.to_kwargs(),
                        )
                except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                    errors.append(error)
                    streamer.end()

            thread = threading.Thread(target=generate, daemon=True)
            thread.start()
            yield from streamer
            thread.join()
            if errors:
                raise errors[0]
