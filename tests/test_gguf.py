"""GGUF export: llama.cpp's converter writes the merged weights, the chat template and the end-of-turn stop
token; llama.cpp itself (llama-cpp-python) reads the file and computes what transformers computes; the bad
cases fail in one line. The trained-job proof (answers as Juniper and stops, in a fresh process) is in
tests/test_gguf_quickstart.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_adapter_job

from training.errors import UserError

pytestmark = pytest.mark.trains  # trains a small model in a worker or in-process: left out of test-fast

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model_dir):
    return make_adapter_job(tmp_path_factory.mktemp("gguf") / "tiny-job", tiny_model_dir)


def logits_in_llama_cpp(gguf: Path, input_ids: list[int]):
    """The last position's logits as llama.cpp computes them from the file, in a fresh process."""
    script = (
        "import json, sys, llama_cpp\n"
        "llm = llama_cpp.Llama(sys.argv[1], n_ctx=256, logits_all=True, verbose=False)\n"
        "llm.eval(json.loads(sys.argv[2]))\n"
        "print(json.dumps(llm.scores[llm.n_tokens - 1].tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(gguf), json.dumps(input_ids)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def transformers_logits(model_dir: Path, input_ids: list[int]):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(model_dir)(input_ids=torch.tensor([input_ids])).logits[0, -1]


def prompt_ids(tiny_model_dir) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=True)["input_ids"]


def assert_same_logits(llama_cpp_logits, expected, tolerance: float):
    import torch

    got = torch.tensor(llama_cpp_logits)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < tolerance * expected.abs().max(), (got - expected).abs().max()


def test_the_catalogs_architectures_are_ones_llama_cpps_converter_handles():
    from training.llama_cpp_tools import supported_architectures

    catalog = {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "Gemma2ForCausalLM"}  # SmolLM2 is Llama
    assert catalog <= supported_architectures()


def test_the_gguf_holds_the_tuned_weights_the_chat_template_and_the_end_of_turn_stop(job, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from training.export import export_merged
    from training.gguf_export import estimate_bytes, export_gguf, read_gguf_metadata

    gguf = export_gguf(job, tmp_path / "out", "f16")
    assert gguf.name == "tiny-job-f16.gguf" and not list((tmp_path / "out").glob(".gguf-*"))  # staging removed
    meta = read_gguf_metadata(gguf)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert meta["chat_template"] == tokenizer.chat_template
    assert meta["eos_token"] == "<|im_end|>"  # the token that ends an assistant turn in ChatML
    ids = prompt_ids(tiny_model_dir)
    merged = transformers_logits(export_merged(job, tmp_path / "merged"), ids)
    assert_same_logits(logits_in_llama_cpp(gguf, ids), merged, 0.01)
    base = transformers_logits(tiny_model_dir, ids)
    assert (merged - base).abs().max() > 0.2 * base.abs().max()  # so the match above is the adapter's, not the base's
    modelfile = (tmp_path / "out" / "Modelfile").read_text()
    assert "FROM ./tiny-job-f16.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile  # ChatML template for Ollama
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile  # the template's default, trained with
    assert (tmp_path / "out" / "README.md").is_file()
    estimate = estimate_bytes(job, "f16")
    assert 0.5 < gguf.stat().st_size / estimate < 1.5, (gguf.stat().st_size, estimate)


def test_q4_k_m_comes_from_llama_cpps_quantizer_and_still_loads(job, tiny_model_dir, tmp_path):
    from training.gguf_export import export_gguf, read_gguf_metadata

    gguf = export_gguf(job, tmp_path / "out", "q4_k_m")
    assert read_gguf_metadata(gguf)["file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    ids = prompt_ids(tiny_model_dir)
    assert len(logits_in_llama_cpp(gguf, ids)) == len(transformers_logits(tiny_model_dir, ids))


def test_full_fine_tunes_and_chained_jobs_export_too(job, tiny_model_dir, tmp_path):
    from training.gguf_export import export_gguf
    from training.spec import JobSpec

    full = tmp_path / "full-job"
    shutil.copytree(tiny_model_dir, full / "model")
    overrides = {"name": "full-job", "model.name_or_path": str(tiny_model_dir), "method.type": "full"}
    spec = JobSpec().with_overrides(overrides)
    (full / "spec.yaml").write_text(spec.to_yaml())
    ids = prompt_ids(tiny_model_dir)
    assert_same_logits(
        logits_in_llama_cpp(export_gguf(full, tmp_path / "full-out", "f16"), ids),
        transformers_logits(full / "model", ids),
        0.01,
    )
    chained = make_adapter_job(
        tmp_path / "chained", tiny_model_dir, {"model.start_from_job": str(job), "method.objective": "dpo"}, seed=2
    )
    from training.export import export_merged

    expected = transformers_logits(export_merged(chained, tmp_path / "chained-merged"), ids)  # both adapters in
    assert_same_logits(logits_in_llama_cpp(export_gguf(chained, tmp_path / "chained-out", "f16"), ids), expected, 0.01)


def test_what_cannot_become_a_gguf_fails_in_one_line(job, tiny_model_dir, tmp_path, monkeypatch):
    from training import gguf_export
    from training.gguf_export import export_gguf

    reward = make_adapter_job(tmp_path / "reward", tiny_model_dir, {"method.objective": "reward"})
    with pytest.raises(UserError, match="reward model: it scores answers") as refused:
        export_gguf(reward, tmp_path / "r")
    assert "\n" not in str(refused.value)

    strange = tmp_path / "strange-model"
    shutil.copytree(tiny_model_dir, strange)
    config = json.loads((strange / "config.json").read_text())
    (strange / "config.json").write_text(json.dumps({**config, "architectures": ["MadeUpForCausalLM"]}))
    with pytest.raises(UserError, match="cannot handle the MadeUpForCausalLM architecture"):
        export_gguf(make_adapter_job(tmp_path / "strange", strange), tmp_path / "s")

    with pytest.raises(UserError, match="--quant: 'q3' is not one of"):
        export_gguf(job, tmp_path / "q", "q3")

    monkeypatch.setattr(gguf_export, "free_bytes", lambda folder: 10 * 2**20)
    with pytest.raises(UserError, match=r"--out: the GGUF export needs about .* GB free on .* but it has 0\.0 GB"):
        export_gguf(job, tmp_path / "full-disk")
    assert not (tmp_path / "full-disk").exists()  # refused before anything was written
    for failed in ("r", "s", "q"):
        assert not (tmp_path / failed).exists()


def test_cli_exports_gguf_and_refuses_in_one_line(job, tiny_model_dir, tmp_path):
    ok = subprocess.run(
        [sys.executable, "app.py", "export", str(job), "--format", "gguf", "--quant", "q8_0", "--out", tmp_path / "o"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "o" / "tiny-job-q8_0.gguf").is_file() and (tmp_path / "o" / "Modelfile").is_file()
    assert "ollama create tiny-job -f Modelfile" in ok.stdout
    reward = make_adapter_job(tmp_path / "reward", tiny_model_dir, {"method.objective": "reward"})
    bad = subprocess.run(
        [sys.executable, "app.py", "export", str(reward), "--format", "gguf", "--out", str(tmp_path / "x")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "reward model" in bad.stderr


def test_the_chat_engine_is_chosen_and_the_llama_cpp_session_answers_like_transformers(job, tiny_model_dir, tmp_path):
    from training.chat import ChatSession, GenerationSettings, choose_engine, open_session

    assert choose_engine(job, engine="transformers") == "transformers"
    assert choose_engine(job, device="cuda", engine="auto") == "transformers"  # on a GPU transformers is the fast one
    assert choose_engine(job, device="cpu", engine="auto") == "llama.cpp"  # installed here, and Llama converts
    with pytest.raises(UserError, match="--engine: 'vllm' is not one of"):
        choose_engine(job, engine="vllm")
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    session = open_session(copy, engine="llama.cpp", say=lambda _: None)
    assert session.description.startswith("engine: llama.cpp q8_0")
    assert (copy / "gguf" / "job-q8_0.gguf").is_file() and (copy / "gguf" / "base-q8_0.gguf").is_file()  # cached
    settings = GenerationSettings(max_new_tokens=12)
    transformers = ChatSession(copy, device="cpu")
    for tuned in (True, False):
        # Greedy on random tiny weights, whose next-token scores are nearly tied: after the first token, 8-bit
        # weights (or another thread count) may pick a different one, so only the first word must agree.
        # tests/test_gguf_quickstart.py compares a trained model's answers in full.
        fast = session.reply(PROMPT, tuned=tuned, settings=settings)
        assert session.last_stats.new_tokens == 12 and session.last_stats.finish_reason == "length"
        assert session.last_stats.prompt_tokens == transformers.prompt_tokens(PROMPT)
        reference = transformers.reply(PROMPT, tuned=tuned, settings=settings)
        assert fast.split()[:1] == reference.split()[:1], (tuned, fast, reference)


def test_the_results_tab_offers_the_gguf_with_its_size_first(job, tmp_path):
    import zipfile

    from training.jobs import JobManager
    from wizard.results import export_gguf_zip, gguf_size_markdown

    shutil.copytree(job, tmp_path / "jobs" / "tiny-job")
    manager = JobManager(tmp_path / "jobs")
    assert "will be about **" in gguf_size_markdown(manager, "tiny-job", "q8_0")
    small, large = (gguf_size_markdown(manager, "tiny-job", quant) for quant in ("q8_0", "f16"))
    assert small != large
    path = export_gguf_zip(manager, "tiny-job", "q8_0", "")
    with zipfile.ZipFile(path) as archive:
        assert {"tiny-job-q8_0.gguf", "Modelfile", "README.md"} <= set(archive.namelist())
    assert [p.name for p in Path(path).parent.iterdir()] == ["tiny-job-q8_0-gguf.zip"]  # the zip is the one copy
    import gradio as gr

    with pytest.raises(gr.Error, match="Pick a finished job"):
        export_gguf_zip(manager, "../elsewhere", "q8_0", "")
