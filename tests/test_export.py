"""Export: the adapter loads with plain PEFT, the merged model with plain transformers in a fresh
process, both carry a model card, and the merged model's generation config stops at the end of a turn."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
from helpers import make_adapter_job

from training.errors import UserError

PROMPT = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model_dir):
    return make_adapter_job(tmp_path_factory.mktemp("export") / "tiny-job", tiny_model_dir)


def tuned_logits(job, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    inputs = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(job / "adapter"))
    with torch.no_grad():
        return model(**inputs).logits, inputs["input_ids"]


def test_adapter_export_loads_with_plain_peft_and_has_a_card(job, tiny_model_dir, tmp_path):
    import torch
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.export import export_adapter

    out = export_adapter(job, tmp_path / "adapter-out")
    expected, input_ids = tuned_logits(job, tiny_model_dir)
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out))
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=input_ids).logits, expected, atol=1e-5)
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == str(tiny_model_dir)
    assert card.data.library_name == "peft" and "lathe" in card.data.tags
    assert "PeftModel.from_pretrained" in card.text and (out / "lathe-spec.yaml").is_file()


def test_merged_export_loads_alone_in_a_fresh_process(job, tiny_model_dir, tmp_path):
    import torch

    from training.export import export_merged, zip_folder

    out = export_merged(job, tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    expected, input_ids = tuned_logits(job, tiny_model_dir)
    script = (
        "import json, sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
        f"tok = AutoTokenizer.from_pretrained({str(out)!r})\n"
        f"ids = torch.tensor({input_ids.tolist()})\n"
        "print(json.dumps({'logits': model(input_ids=ids).logits[0, -1].tolist(),"
        " 'eos': model.generation_config.eos_token_id, 'template': bool(tok.chat_template)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert torch.allclose(torch.tensor(fresh["logits"]), expected[0, -1], atol=1e-4)
    assert fresh["template"]
    with zipfile.ZipFile(zip_folder(out, tmp_path / "merged.zip")) as archive:
        assert {"model.safetensors", "config.json", "README.md", "generation_config.json"} <= set(archive.namelist())


def test_merged_export_stops_at_the_chat_templates_end_of_turn(tmp_path, tiny_model_dir):
    """A base whose generation config stops only on <|endoftext|> would run past every answer; the
    export adds the token the chat template ends an assistant turn with (<|im_end|> in ChatML)."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    from training.export import export_merged

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    GenerationConfig(eos_token_id=end_of_text).save_pretrained(base)
    out = export_merged(make_adapter_job(tmp_path / "job", base), tmp_path / "merged")
    saved = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
    assert saved == [end_of_text, tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_export_refuses_what_it_cannot_do(job, tmp_path, tiny_model_dir):
    from training.export import export_adapter

    with pytest.raises(UserError, match="not a job folder"):
        export_adapter(tmp_path, tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(UserError, match="--out: .* is not empty"):
        export_adapter(job, busy)
    chained = make_adapter_job(
        tmp_path / "chained", tiny_model_dir, {"model.start_from_job": str(job), "method.objective": "dpo"}
    )
    with pytest.raises(UserError, match="Export with --merged"):
        export_adapter(chained, tmp_path / "out2")


def test_cli_export_without_a_traceback(job, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ok = subprocess.run(
        [sys.executable, "app.py", "export", str(job), "--out", str(tmp_path / "cli"), "--zip"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "cli" / "adapter_model.safetensors").is_file() and (tmp_path / "cli.zip").is_file()
    bad = subprocess.run(
        [sys.executable, "app.py", "export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "not a job folder" in bad.stderr and "Traceback" not in bad.stderr
