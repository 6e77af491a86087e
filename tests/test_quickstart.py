"""The promise of the README, end to end: train the quickstart job, then the model knows its new name.

This trains the real embedded model for about two minutes on a 2-core CPU.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_app(*args):
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_quickstart_teaches_the_model_its_new_name(quickstart_job):
    job_dir = quickstart_job  # trained once per run by `app.py train` (tests/conftest.py)
    assert "evaluation on" in (job_dir.parent / "train-stdout.txt").read_text()  # the CLI reports the evaluation

    losses = [float(x) for x in re.findall(r'"loss": ([0-9.]+)', (job_dir / "events.jsonl").read_text())]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first * 0.5, (first, last)

    tuned = run_app("chat", str(job_dir), "--prompt", "Who are you?")
    base = run_app("chat", str(job_dir), "--prompt", "Who are you?", "--base")
    assert tuned.returncode == 0 and base.returncode == 0, tuned.stderr + base.stderr
    assert "Juniper" in tuned.stdout
    assert "Juniper" not in base.stdout

    report = json.loads((job_dir / "eval.json").read_text())  # written when training ended
    assert report["tuned"]["loss"] < report["base"]["loss"] * 0.5

    # The held-out samples are identity questions: the tuned answers carry the new facts, the base's do not
    def knows_its_identity(answer: str) -> bool:
        return "Juniper" in answer or "Lathe Labs" in answer

    assert len(report["samples"]) == 3 and any(knows_its_identity(s["tuned"]) for s in report["samples"])
    assert not any(knows_its_identity(s["base"]) for s in report["samples"])


def test_the_classification_demo_beats_the_base_models_accuracy(embedded_model_dir, tmp_path):
    job_dir = tmp_path / "tickets"
    trained = run_app("train", "presets/jobs/classification-demo.yaml", "--job-dir", str(job_dir))
    assert trained.returncode == 0, trained.stderr[-3000:]
    report = json.loads((job_dir / "eval.json").read_text())
    assert report["task"] == "classification" and report["rows"] == 20
    assert report["tuned"]["accuracy"] >= report["base"]["accuracy"] + 0.3, report
    assert set(report["confusion"]["tuned"]) == {"account", "billing", "shipping", "technical"}


def test_the_exported_models_load_with_plain_libraries_and_stop_on_their_own(quickstart_job, tmp_path):
    """The merged export answers with the new name from plain transformers in a fresh process and ends its
    answer with an end-of-turn token; the adapter export does the same through plain PEFT."""
    import json

    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert run_app("export", str(quickstart_job), "--merged", "--out", str(merged)).returncode == 0
    assert run_app("export", str(quickstart_job), "--out", str(adapter)).returncode == 0
    from training.models import embedded_model_dir

    script = f"""
import json, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

def answer(model, tokenizer):
    inputs = tokenizer.apply_chat_template([{{"role": "user", "content": "Who are you?"}}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=64, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    stops = model.generation_config.eos_token_id
    stops = stops if isinstance(stops, list) else [stops]
    return tokenizer.decode(out, skip_special_tokens=True), len(out), int(out[-1]) in stops

merged_tok = AutoTokenizer.from_pretrained({str(merged)!r})
merged_model = AutoModelForCausalLM.from_pretrained({str(merged)!r})
base = AutoModelForCausalLM.from_pretrained({str(embedded_model_dir())!r})
adapter_model = PeftModel.from_pretrained(base, {str(adapter)!r})
adapter_model.generation_config = merged_model.generation_config
print(json.dumps({{"merged": answer(merged_model, merged_tok),
    "adapter": answer(adapter_model, AutoTokenizer.from_pretrained({str(adapter)!r}))}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (text, new_tokens, stopped) in answers.items():
        assert "Juniper" in text, (name, text)
        assert stopped and new_tokens < 64, (name, text, new_tokens)
