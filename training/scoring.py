"""Use a finished reward model: score an answer to a prompt (higher = more like the preferred answers).

The text is laid out exactly as RewardTrainer saw it during training: the prompt and the answer
through the model's own chat template, read by the sequence-classification head.
"""

from __future__ import annotations

from pathlib import Path

from training import jobdir
from training.errors import UserError
from training.models import merge_adapters, starting_point


class RewardScorer:
    def __init__(self, job_dir: str | Path, token: str | None = None):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        job_dir = Path(job_dir)
        spec = jobdir.load_job_spec(job_dir, hint="Give a finished reward job's folder.")
        if spec.method.objective != "reward":
            raise UserError(f"{job_dir.name} is a {spec.method.objective} job, not a reward model: use chat instead.")
        adapter_dir, model_dir = job_dir / jobdir.ADAPTER, job_dir / jobdir.MODEL
        hub = {"revision": spec.model.revision, "token": token or False}
        if model_dir.is_dir():  # a full fine-tune, or a merged copy
            self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        elif adapter_dir.is_dir():
            reference, earlier = starting_point(spec)
            base = AutoModelForSequenceClassification.from_pretrained(
                reference, num_labels=1, dtype=torch.float32, **hub
            )
            self.model = PeftModel.from_pretrained(merge_adapters(base, earlier), str(adapter_dir)).merge_and_unload()
            self.tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
        else:
            raise UserError(f"{job_dir} has no adapter/ or model/ folder yet. Has the job finished?")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()

    def score(self, prompt: str, answer: str) -> float:
        import torch

        conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        inputs = self.tokenizer.apply_chat_template(conversation, return_dict=True, return_tensors="pt")
        with torch.inference_mode():
            return float(self.model(**inputs).logits[0, 0])

    def score_many(self, prompts: list[str], answers: list[str], batch_size: int = 8) -> list[float]:
        """Scores of many (prompt, answer) pairs, a few at a time (a GRPO step scores every answer it wrote)."""
        import torch

        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": a}], tokenize=False
            )
            for p, a in zip(prompts, answers, strict=True)
        ]
        scores = []
        for start in range(0, len(texts), batch_size):
            inputs = self.tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                padding_side="right",
                add_special_tokens=False,
            )
            with torch.inference_mode():
                scores += [float(v) for v in self.model(**inputs).logits[:, 0]]
        return scores
