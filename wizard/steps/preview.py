"""Step 4 — GPU preview: the hardware found, the job's size, and the exact spec that will run."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from training import jobdir
from training.errors import UserError
from wizard.form import SpecForm, problems_markdown

SPEC_DOWNLOADS = Path(tempfile.mkdtemp(prefix="lathe-specs-"))


@dataclass
class PreviewStep:
    hardware: gr.Markdown
    summary: gr.Markdown
    estimate: gr.Markdown
    measure: gr.Button
    price: gr.Number
    spec_yaml: gr.Code
    download: gr.DownloadButton


def estimate_markdown(spec, token: str | None, speed: float | None = None, price: float | None = None) -> str:
    from training.estimate import preview_job  # reads the model config and tokenizes the data

    try:
        previews = preview_job(spec, token, measured_tokens_per_second=speed)
    except UserError as error:
        return f"⚠ {error}"
    text = "\n\n".join("```\n" + "\n".join(p.lines(price or None)) + "\n```" for p in previews)
    return f"{sweep_note(spec, previews)}\n\n{text}" if spec.sweep is not None and previews else text


def sweep_note(spec, previews) -> str:
    """A sweep runs its jobs one after another: the time (and cost) of one, times the number of runs."""
    from training.sweep import CONFIRM_ABOVE, expand

    runs = len(expand(spec))
    each = previews[0].seconds
    note = (
        f"**Sweep: {runs} runs**, one after another: about {runs} × {each / 60:.1f} min = "
        f"**{runs * each / 60:.1f} min** in all on {previews[0].device.name} (the estimate below is for one run)."
    )
    if runs > CONFIRM_ABOVE:
        note += f" That is more than {CONFIRM_ABOVE} runs: Launch asks you to confirm first."
    return note


def fit_warning(spec, token: str | None) -> str | None:
    """A message when the estimate says the job won't fit on any device here; None when it may go ahead."""
    from training.estimate import WONT_FIT, preview_job

    try:
        previews = preview_job(spec, token)
    except UserError:
        return None  # no estimate (e.g. an unknown architecture): nothing to warn about
    if not previews or any(p.verdict != WONT_FIT for p in previews):
        return None
    first = previews[0]
    fixes = "; ".join(label for label, _, _ in first.suggestions[:3])
    return (
        f"⚠ Estimated not to fit: about {first.memory.total / 2**30:.1f} GB needed, "
        f"{first.device.memory_gb:.1f} GB free on {first.device.name}."
        + (f" Try: {fixes}." if fixes else "")
        + " Change the settings, or tick 'Launch even if the estimate says it won't fit'."
    )


def preview(form: SpecForm, values, token: str | None = None) -> tuple[str, str, str, str, str | None]:
    """(hardware, summary, estimate, spec YAML, path of the YAML to download) for the values entered."""
    from training.data.preview import summarize  # tokenizes the data: imported when first needed
    from training.hardware import detect_hardware

    spec, problems = form.build(values)
    hardware = "\n".join(f"- {line}" for line in detect_hardware().describe().splitlines())
    if spec is None:
        return hardware, problems_markdown(problems), "", "", None
    try:
        summary = summarize(spec).describe()
    except UserError as error:
        summary = f"⚠ {error}"
    path = SPEC_DOWNLOADS / f"{spec.name}.yaml"
    path.write_text(spec.to_yaml())  # the spec never holds the token, so it is safe to hand out
    return hardware, summary, estimate_markdown(spec, token), spec.to_yaml(), str(path)


def build() -> PreviewStep:
    gr.Markdown("### 4 · GPU preview")
    hardware = gr.Markdown(label="Hardware")
    summary = gr.Markdown()
    gr.Markdown("**Will it fit, and how long will it take?** (from the model's config and your data)")
    estimate = gr.Markdown()
    with gr.Row():
        measure = gr.Button("Measure: time a few real steps of this job here", size="sm")
        price = gr.Number(None, label="Price per hour (optional)", info="Your machine's hourly price, for the cost.")
    spec_yaml = gr.Code(
        language="yaml", label=f"The job spec that will run (python app.py train {jobdir.SPEC})", interactive=False
    )
    download = gr.DownloadButton(f"Download {jobdir.SPEC}", value=None)
    return PreviewStep(
        hardware=hardware,
        summary=summary,
        estimate=estimate,
        measure=measure,
        price=price,
        spec_yaml=spec_yaml,
        download=download,
    )


def priced(form: SpecForm, values, token: str | None, price: float | None) -> str:
    """The estimate again, with the cost at the hourly price entered."""
    spec, problems = form.build(values)
    return problems_markdown(problems) if spec is None else estimate_markdown(spec, token, price=price)


def measured(manager, form: SpecForm, values, token: str | None, price: float | None = None) -> str:
    """The estimate again, with the time from a short real run (in a worker, like any job)."""
    from training.estimate import measure_speed

    spec, problems = form.build(values)
    if spec is None:
        return problems_markdown(problems)
    try:
        return estimate_markdown(spec, token, speed=measure_speed(manager, spec, token), price=price)
    except UserError as error:
        return f"⚠ {error}"


def connect(step: PreviewStep, form: SpecForm, manager, token: gr.State, shown_by: gr.Button) -> None:
    """`shown_by`: the button that moves on to this step (the preview is drawn as it opens)."""
    shown_by.click(
        lambda secret, *values: preview(form, values, token=secret or None),
        inputs=[token, *form.inputs],
        outputs=[step.hardware, step.summary, step.estimate, step.spec_yaml, step.download],
        api_name="gpu_preview",
    )
    step.price.change(
        lambda secret, price, *values: priced(form, values, secret or None, price),
        inputs=[token, step.price, *form.inputs],
        outputs=step.estimate,
        api_name="price_estimate",
    )
    step.measure.click(
        lambda secret, price, *values: measured(manager, form, values, secret or None, price),
        inputs=[token, step.price, *form.inputs],
        outputs=step.estimate,
        api_name="measure_speed",
    )
