"""Step 1 — Model & token: the job name, the model (catalog, Hub id or local folder) and the token."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from training import jobdir
from training.presets import model_catalog
from wizard.form import SpecForm

PATHS = ["name", "model.name_or_path", "model.revision", "model.start_from_job"]


@dataclass
class ModelStep:
    spec_file: gr.File
    spec_loaded: gr.Markdown
    model: gr.Dropdown
    model_info: gr.Markdown
    token: gr.Textbox
    check: gr.Button
    access: gr.Markdown


def describe_model(model_id: str) -> str:
    for entry in model_catalog():
        if entry.id == model_id:
            gated = "gated: accept its licence on the Hub and enter a token" if entry.gated else "not gated"
            return f"{entry.params_b:g} B parameters · licence {entry.licence} · {gated}"
    return "A Hugging Face model id (org/name) or a folder on this machine."


def suggested_paths() -> list[str]:
    """Every field some catalog model suggests a value for."""
    return sorted({path for entry in model_catalog() for path in entry.defaults})


def suggested_values(model_id: str, paths: list[str]) -> list:
    """The catalog's suggestions for `paths` when `model_id` is picked (no change for other ids)."""
    entry = next((e for e in model_catalog() if e.id == model_id), None)
    return [gr.update(value=entry.defaults[p]) if entry and p in entry.defaults else gr.update() for p in paths]


def build(form: SpecForm) -> ModelStep:
    gr.Markdown("### 1 · Model & token\nPick the model to fine-tune. The embedded model works offline.")
    with gr.Accordion(f"Start from a saved spec ({jobdir.SPEC})", open=False):
        spec_file = gr.File(label=jobdir.SPEC, file_types=[".yaml", ".yml"], type="filepath")
        spec_loaded = gr.Markdown("Every step is filled from the file; the GPU preview offers it for download.")
    form.field("name", label="Job name")
    choices = [(entry.label, entry.id) for entry in model_catalog()]
    model = form.field(
        "model.name_or_path",
        component=gr.Dropdown(
            choices=choices, value=form.base.model.name_or_path, allow_custom_value=True, label="Model"
        ),
        label="Model",
    )
    model_info = gr.Markdown(describe_model(form.base.model.name_or_path))
    with gr.Accordion("Model revision", open=bool(form.base.model.revision)):
        form.field("model.revision", label="Revision (branch, tag or commit)")
    model.change(describe_model, inputs=model, outputs=model_info, api_visibility="private")
    with gr.Accordion("Build on a finished job (e.g. DPO after SFT)", open=bool(form.base.model.start_from_job)):
        form.field("model.start_from_job", placeholder="jobs/my-first-job-…")
    token = gr.Textbox(
        label="Hugging Face token",
        type="password",
        info="Needed for gated or private models. Kept in this browser session's server memory only; never saved.",
    )
    with gr.Row():
        check = gr.Button("Check access", variant="secondary")
    access = gr.Markdown()
    return ModelStep(spec_file, spec_loaded, model, model_info, token, check, access)
