"""House rules: gradio only in wizard/, and wizard/ never imports the training stack directly."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRADIO = re.compile(r"^\s*(import gradio|from gradio)", re.M)
HEAVY = re.compile(r"^\s*(import|from) (torch|transformers|trl|peft|bitsandbytes|datasets)\b", re.M)


def python_files(folder: str):
    return list((ROOT / folder).rglob("*.py"))


def test_gradio_is_imported_only_in_wizard():
    offenders = [
        p for folder in ("training", "benchmarks") for p in python_files(folder) if GRADIO.search(p.read_text())
    ]
    offenders += [ROOT / "app.py"] if GRADIO.search((ROOT / "app.py").read_text()) else []
    assert not offenders


def test_wizard_does_not_import_the_training_stack():
    assert python_files("wizard")
    assert not [p for p in python_files("wizard") if HEAVY.search(p.read_text())]


def test_importing_the_spec_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, training.spec, training.jobs, training.events; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
