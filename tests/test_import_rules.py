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


def test_only_the_job_folder_module_spells_a_job_files_name():
    """Every reader asks training.jobdir where a job's files are, so a name changes in one place."""
    import ast

    from training import jobdir

    def spells(text: str, name: str) -> bool:  # lathe-spec.yaml (an export's copy) is another file
        return re.search(rf"(?<![\w-]){re.escape(name)}", text) is not None

    names = {jobdir.SPEC, jobdir.STATUS, jobdir.EVENTS, jobdir.WORKER_LOG, jobdir.DATA_SUMMARY, jobdir.EVALUATION}
    names |= {jobdir.PREPARED_DATA, jobdir.ENVIRONMENT, jobdir.REPRODUCE}
    exact = {jobdir.STOP, jobdir.CHECKPOINTS, jobdir.MODEL_CARD}  # short words: only a literal that is just the name
    offenders = []
    for path in [ROOT / "app.py", *python_files("training"), *python_files("wizard")]:
        if path.name == "jobdir.py" and path.parent.name == "training":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            literal = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            if literal and (node.value in exact or any(spells(node.value, name) for name in names)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders
