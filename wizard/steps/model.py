"""Step 1 — Model & token: the job name, the model (catalog, Hub id or local folder) and the token."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from training import jobdir
from training.errors import UserError
from training.presets import model_catalog
from training.redact import register_secret
from training.spec import describe_field
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
    form.field("name")
    choices = [(entry.label, entry.id) for entry in model_catalog()]
    model = form.field(
        "model.name_or_path",
        component=gr.Dropdown(
            choices=choices,
            value=form.base.model.name_or_path,
            allow_custom_value=True,
            label=describe_field("model.name_or_path").label,
        ),
    )
    model_info = gr.Markdown(describe_model(form.base.model.name_or_path))
    with gr.Accordion("Model revision", open=bool(form.base.model.revision)):
        form.field("model.revision")
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


def check_access(model_id: str, typed_token: str, saved_token: str) -> tuple[str, str, str]:
    """(the verdict, an emptied token box, the token for the session's server-side state)."""
    from training.hub import check_access as check

    secret = (typed_token or saved_token or "").strip()
    register_secret(secret)  # masked in every log and message from now on, whatever its shape
    result = check(model_id, secret or None)
    # The token moves into server-side state and the box is emptied, so it is not sent again
    return ("✅ " if result.ok else "⚠ ") + result.message, "", secret


def keep_token(typed: str, saved: str) -> str:
    register_secret(typed)
    return (typed or "").strip() or saved


def load_saved_spec(form: SpecForm, path: str | None) -> list:
    """Every input filled from a spec file, and a note on what was loaded (or why not)."""
    from training.spec import load_spec

    unchanged = [gr.update() for _ in form.inputs]
    if not path:
        return [*unchanged, ""]
    try:
        spec = load_spec(path)
    except UserError as error:
        return [*unchanged, f"⚠ {error}"]
    return [*form.values_for(spec), f"✅ Loaded **{spec.name}**: every step is filled in.{form.left_out_note(spec)}"]


def connect(step: ModelStep, form: SpecForm, token: gr.State) -> None:
    """`token`: the session's server-side state, which a checked or typed token moves into."""
    step.check.click(
        check_access,
        inputs=[step.model, step.token, token],
        outputs=[step.access, step.token, token],
        api_name="check_access",
    )
    step.token.change(keep_token, inputs=[step.token, token], outputs=token, api_visibility="private")
    # Picking a catalog model applies its suggested settings (e.g. QLoRA and a longer context for 7B)
    suggested = suggested_paths()
    # .input, not .change: a loaded spec sets the model too, and must keep its own settings
    step.model.input(
        lambda model_id: suggested_values(model_id, suggested),
        inputs=step.model,
        outputs=[form.components[p] for p in suggested],
        api_visibility="private",
    )
    step.spec_file.upload(
        lambda path: load_saved_spec(form, path),
        inputs=step.spec_file,
        outputs=[*form.inputs, step.spec_loaded],
        api_name="load_spec",
    )
