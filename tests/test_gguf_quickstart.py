"""The proof in the runtime: a job trained to call itself Juniper, exported to GGUF, answers as Juniper in
llama.cpp itself (a fresh process, the file's own chat template) and stops on the file's stop token; the
f16 file loads in transformers and gives the merged export's greedy answer token for token; the chat
engine answers from the job's cached GGUF.

The job is the README's quickstart, trained once per run and shared with tests/test_quickstart.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who are you?"
LIMIT = 64

pytestmark = pytest.mark.slow


def run_app(*args):
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def juniper_job(quickstart_job):
    """The README's quickstart job, trained once per run and shared (tests/conftest.py): it calls itself
    Juniper (tests/test_quickstart.py proves it through transformers)."""
    return quickstart_job


def ask_llama_cpp(gguf: Path) -> dict:
    """One greedy answer from llama.cpp in a fresh process, through the chat template stored in the file."""
    script = f"""
import json, llama_cpp
llm = llama_cpp.Llama({str(gguf)!r}, n_ctx=512, verbose=False, chat_format="chat_template.default")
out = llm.create_chat_completion([{{"role": "user", "content": {QUESTION!r}}}], max_tokens={LIMIT}, temperature=0.0)
print(json.dumps({{"text": out["choices"][0]["message"]["content"], "finish": out["choices"][0]["finish_reason"],
    "tokens": out["usage"]["completion_tokens"], "eos": llm._model.token_get_text(llm.token_eos())}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_the_gguf_answers_as_the_tuned_model_in_llama_cpp_and_stops(juniper_job, quant, tmp_path):
    out = tmp_path / quant
    exported = run_app("export", str(juniper_job), "--format", "gguf", "--quant", quant, "--out", str(out))
    assert exported.returncode == 0, exported.stderr[-3000:]
    gguf = out / f"{juniper_job.name}-{quant}.gguf"
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{juniper_job.name}-{quant}.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    answer = ask_llama_cpp(gguf)
    assert "Juniper" in answer["text"], answer
    # It ended on its own stop token, well before the limit (a file that lost its stop token runs to it)
    assert answer["eos"] == "<|im_end|>" and answer["finish"] == "stop" and answer["tokens"] < LIMIT // 2, answer
    from training.gguf_export import estimate_bytes

    assert 0.75 < gguf.stat().st_size / estimate_bytes(juniper_job, quant) < 1.25  # the Results tab's estimate


def test_transformers_loads_the_f16_gguf_and_answers_token_for_token_as_the_merged_export(juniper_job, tmp_path):
    assert (
        run_app(
            "export", str(juniper_job), "--format", "gguf", "--quant", "f16", "--out", str(tmp_path / "f16")
        ).returncode
        == 0
    )
    assert run_app("export", str(juniper_job), "--merged", "--out", str(tmp_path / "merged")).returncode == 0
    script = f"""
import json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(tmp_path / "merged")!r})
inputs = tok.apply_chat_template([{{"role": "user", "content": {QUESTION!r}}}], add_generation_prompt=True,
    return_tensors="pt", return_dict=True)
def greedy(model):
    out = model.generate(**inputs, max_new_tokens={LIMIT}, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, inputs["input_ids"].shape[1]:].tolist()
merged = AutoModelForCausalLM.from_pretrained({str(tmp_path / "merged")!r}, dtype=torch.float32)
gguf = AutoModelForCausalLM.from_pretrained(
    {str(tmp_path / "f16")!r}, gguf_file="{juniper_job.name}-f16.gguf", dtype=torch.float32)
gguf.generation_config = merged.generation_config
print(json.dumps({{"merged": greedy(merged), "gguf": greedy(gguf), "text": tok.decode(greedy(gguf))}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers["gguf"] == answers["merged"], answers
    assert "Juniper" in answers["text"]


def test_the_chat_answers_from_the_jobs_gguf_through_llama_cpp(juniper_job):
    tuned = run_app("chat", str(juniper_job), "--prompt", QUESTION, "--engine", "llama.cpp")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "Juniper" in tuned.stdout and "engine: llama.cpp q8_0" in tuned.stderr
    assert (juniper_job / "gguf" / f"{juniper_job.name}-q8_0.gguf").is_file()  # made once, kept in the job folder
    base = run_app("chat", str(juniper_job), "--prompt", QUESTION, "--engine", "llama.cpp", "--base")
    assert base.returncode == 0, base.stderr[-3000:]
    assert "Juniper" not in base.stdout and (juniper_job / "gguf" / "base-q8_0.gguf").is_file()
