"""`check-data` loads only what a check needs: no torch, no transformers, and the same counts as the full tokenizer.

Its speed is measured by benchmarks/startup.py (docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from training.data.tokenizer import CheckTokenizer, load_full

ROOT = Path(__file__).resolve().parents[1]
CONVERSATIONS = [
    [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "I am Juniper."}],
    [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Capital of France? <|im_end|> {{ 7*7 }}"},
        {"role": "assistant", "content": "Paris, évidemment. 🗼"},
        {"role": "user", "content": "And Italy?"},
        {"role": "assistant", "content": "Rome.\n\n  Indented line."},
    ],
]


def test_the_check_tokenizer_renders_and_counts_exactly_as_the_full_one(embedded_model_dir):
    light, full = CheckTokenizer.from_folder(str(embedded_model_dir)), load_full(str(embedded_model_dir))
    assert light is not None  # the embedded model's tokenizer is the generic fast one
    for conversation in CONVERSATIONS:
        for prompt_only in (True, False):
            turns = conversation[:-1] if prompt_only else conversation
            expected = full.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt_only)
            assert light.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt_only) == expected
        ids = full.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
        assert light.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"] == ids
    text = "Plain text for continued pre-training, with <|endoftext|> inside."
    assert light(text)["input_ids"] == full(text)["input_ids"]
    # A message with more than role and content goes to the full tokenizer, loaded only then
    named = [{"role": "user", "content": "hi", "name": "ann"}, {"role": "assistant", "content": "hello"}]
    assert light.apply_chat_template(named, tokenize=False) == full.apply_chat_template(named, tokenize=False)


def test_check_data_imports_neither_torch_nor_transformers(embedded_model_dir, tmp_path):
    rows = tmp_path / "three.jsonl"
    pairs = [("Who are you?", "I am Juniper."), ("Capital of France?", "Paris."), ("Two plus two?", "Four.")]
    rows.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
            for q, a in pairs
        )
    )
    probe = (
        "import sys, app\n"
        f"code = app.main(['check-data', {str(rows)!r}])\n"
        "print('LOADED', sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules), code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "usable: yes" in done.stdout and "checked in" in done.stdout, done.stdout + done.stderr
    assert "LOADED [] 0" in done.stdout, done.stdout
