"""Step 2 — Dataset & task: source, format and task of the rows, the check report, a faithful preview."""

from __future__ import annotations

import contextlib
import hashlib
import html
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from training.data import demo_names
from training.data.read import SUFFIXES
from training.errors import UserError
from wizard.data_report import report_html
from wizard.form import (
    DEMO_NAME,
    FIELD_MAP,
    HUB_DATASET,
    MIX_GENERAL,
    SOURCE_DEMO,
    SOURCE_HUB,
    SOURCE_KIND,
    SOURCE_UPLOAD,
    UPLOADED_PATH,
    SpecForm,
    field_map_text,
)

PATHS = [
    "data.task",
    "method.objective",
    SOURCE_KIND,
    DEMO_NAME,
    HUB_DATASET,
    "data.hub_config",
    "data.hub_split",
    "data.hub_revision",
    "data.format",
    FIELD_MAP,
    "data.assistant_name",
    "data.assistant_maker",
    MIX_GENERAL,
    "data.validation_split",
    "data.validation_source",
    "data.max_rows",
    "data.train_on",
    "data.system_prompt",
]
PREVIEW_ROWS = 3
ALLOWED_TYPES = ", ".join(SUFFIXES[:-1]) + " or " + SUFFIXES[-1]


@dataclass
class DataStep:
    upload: gr.File
    upload_note: gr.Markdown
    uploaded_path: gr.Textbox
    preview_button: gr.Button
    preview: gr.HTML


def keep_upload(temporary_path: str | None, uploads_dir: Path) -> str:
    """Copy an upload under a name made from its content: the person's file name is never used as a path."""
    if not temporary_path:
        return ""
    data = Path(temporary_path).read_bytes()
    uploads_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(temporary_path).suffix.lower()
    target = uploads_dir / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not target.exists():
        shutil.copyfile(temporary_path, target)
    return str(target)


def take_upload(file_data: dict | None, uploads_dir: Path):
    """(File, uploaded path, source kind, note) after an upload: a data file is kept; anything else is deleted.

    gradio's /upload stores a file of any type, and `file_types` only filters the browser's file picker,
    so the type is checked here, on the server, before the file is read."""
    if not file_data:
        return gr.update(), "", gr.update(), ""
    uploaded = Path(file_data["path"])  # gradio has checked that it lies in its upload folder
    suffix = uploaded.suffix.lower()  # gradio names the stored file after the person's file
    if suffix not in SUFFIXES:
        discard_upload(uploaded)
        shown = html.escape(suffix or "file without an extension")
        return None, "", gr.update(), f"⚠ A {shown} file is not a data file Lathe reads. Upload {ALLOWED_TYPES}."
    return gr.update(), keep_upload(str(uploaded), uploads_dir), SOURCE_UPLOAD, ""


def discard_upload(uploaded: Path) -> None:
    """Delete a refused upload and the per-upload folder gradio made for it, never anything outside its folder."""
    from gradio.utils import get_upload_folder, is_in_or_equal

    root = Path(get_upload_folder())
    if uploaded.parent.resolve() == root.resolve() or not is_in_or_equal(uploaded, root):
        return
    uploaded.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: another upload of the same content is still there
        uploaded.parent.rmdir()


def mix_in_by_default(kind: str, demo: str) -> bool:
    return kind == SOURCE_DEMO and demo == "identity"


def render_preview(form: SpecForm, values, token: str | None = None) -> str:
    from training.data.check import check_data  # imports transformers: only when asked

    spec, problems = form.build(values)
    if spec is None:
        return "<p>" + html.escape("; ".join(message for _, message in problems)) + "</p>"
    try:
        return report_html(check_data(spec, token=token, preview_rows=PREVIEW_ROWS))
    except UserError as error:
        return f"<p>{html.escape(str(error))}</p>"


def build(form: SpecForm, uploads_dir: Path) -> DataStep:
    gr.Markdown("### 2 · Dataset & task")
    with gr.Row():
        form.field("data.task")
        form.field("method.objective")
    base_source = form.base.data.source
    is_demo, is_hub = base_source.startswith("demo:"), base_source.startswith("hub:")
    kind = form.extra(
        SOURCE_KIND,
        gr.Radio(
            [SOURCE_DEMO, SOURCE_UPLOAD, SOURCE_HUB],
            label="Data source",
            value=SOURCE_DEMO if is_demo else SOURCE_HUB if is_hub else SOURCE_UPLOAD,
        ),
    )
    demos = demo_names()
    demo = form.extra(
        DEMO_NAME,
        gr.Dropdown(
            demos,
            label="Demo dataset",
            value=base_source.removeprefix("demo:") if is_demo else demos[0],
            info="identity teaches the model a new name and maker; general is everyday Q&A; "
            "preferences pairs a direct answer with an evasive one (for DPO and reward models); "
            "kto marks single answers good or bad (for KTO); "
            "arithmetic is word problems with a numeric answer (for GRPO); "
            "support-tickets sorts messages into four labels (classification).",
        ),
    )
    upload = gr.File(
        label="Your data: JSONL, JSON, CSV, TSV, Parquet or plain text", file_types=list(SUFFIXES), type="filepath"
    )
    upload_note = gr.Markdown()
    uploaded_path = form.extra(UPLOADED_PATH, gr.Textbox(visible=False, value="" if is_demo or is_hub else base_source))
    with gr.Accordion("Hugging Face dataset", open=is_hub), gr.Row():
        form.extra(
            HUB_DATASET,
            gr.Textbox(
                value=base_source.removeprefix("hub:") if is_hub else "",
                label="Dataset id",
                placeholder="org/name",
                info="Loaded with your token from step 1 (gated and private datasets need one).",
            ),
        )
        form.field("data.hub_config")
        form.field("data.hub_split")
        form.field("data.hub_revision")
    with gr.Row():
        form.field("data.format")
        form.extra(
            FIELD_MAP,
            gr.Textbox(
                value=field_map_text(form.base.data.field_map),
                label="Column mapping (optional)",
                info="When your columns have other names: role=column, e.g. text=review, label=sentiment.",
            ),
        )
    with gr.Row():
        form.field("data.assistant_name")
        form.field("data.assistant_maker")
    mix_general = form.extra(
        MIX_GENERAL,
        gr.Checkbox(
            label="Mix in everyday questions (demo:general)",
            value="demo:general" in form.base.data.mix_in,
            info="Keeps the model's general knowledge while it learns your data.",
        ),
    )
    with gr.Row():
        form.field("data.train_on")
        form.field("data.system_prompt")
    with gr.Row():
        form.field("data.validation_split", slider=True, step=0.05)
        form.field("data.validation_source")
        form.field("data.max_rows")
    # Everyday questions are mixed into the identity demo (it would otherwise forget them); a person's own
    # file or another demo gets nothing added unless they tick the box
    for changed in (kind, demo):
        changed.change(mix_in_by_default, inputs=[kind, demo], outputs=mix_general, api_visibility="private")
    upload.upload(
        lambda file_data: take_upload(file_data, uploads_dir),
        inputs=upload,
        outputs=[upload, uploaded_path, kind, upload_note],
        preprocess=False,  # take_upload checks the type itself, so it can delete a refused file
        api_visibility="private",
    )
    preview_button = gr.Button("Check the data and show how the model sees it")
    preview = gr.HTML()
    return DataStep(
        upload=upload,
        upload_note=upload_note,
        uploaded_path=uploaded_path,
        preview_button=preview_button,
        preview=preview,
    )


def connect(step: DataStep, form: SpecForm, token: gr.State) -> None:
    step.preview_button.click(
        lambda secret, *values: render_preview(form, values, token=secret or None),
        inputs=[token, *form.inputs],
        outputs=step.preview,
        api_name="preview_data",
    )
