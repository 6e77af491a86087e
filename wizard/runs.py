"""The Runs tab: compare jobs side by side, open a sweep as one comparison, start a new run from one.

Everything comes from the job folders (training/compare.py), so jobs made by the CLI, still running,
stopped or failed compare like the rest. "Start a new run from this one" fills the wizard with the
job's spec through the same `SpecForm.values_for` path as loading a saved spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from training import jobdir
from training.compare import BEST, best_run, curve_points, load_run, to_markdown
from training.errors import UserError
from training.jobs import JobManager
from training.redact import register_secret
from training.sweep import CONFIRM_ABOVE, expand, start_sweep, stop_sweep, sweeps
from training.web_paths import resolve_job_name
from wizard.form import SpecForm

AXES = {"step": "Optimizer step", "tokens": "Tokens seen"}


@dataclass
class RunsTab:
    jobs: gr.Dropdown
    sweep: gr.Dropdown
    compare: gr.Button
    axis: gr.Radio
    train_plot: gr.LinePlot
    eval_plot: gr.LinePlot
    table: gr.Markdown
    start_from: gr.Dropdown
    start: gr.Button
    stop_sweep: gr.Button
    message: gr.Markdown


def build() -> RunsTab:
    gr.Markdown("### Compare runs\nPick two or more jobs, or a sweep; the best value in each row is marked ★.")
    with gr.Row():
        jobs = gr.Dropdown(label="Jobs to compare", choices=[], multiselect=True, allow_custom_value=True, scale=3)
        sweep = gr.Dropdown(label="Or open a sweep", choices=[], allow_custom_value=True, scale=2)
    with gr.Row():
        compare = gr.Button("Compare", variant="primary")
        axis = gr.Radio(list(AXES), value="step", label="Curves by", info="Optimizer steps or tokens seen.")
    with gr.Row():
        train_plot = gr.LinePlot(x="step", y="loss", color="run", title="Training loss", height=280)
        eval_plot = gr.LinePlot(x="step", y="loss", color="run", title="Validation loss", height=280)
    table = gr.Markdown()
    with gr.Row():
        start_from = gr.Dropdown(
            label="Start a new run from", choices=[], allow_custom_value=True, info="Fills the wizard with its spec."
        )
        start = gr.Button("Start a new run from this one")
        stop = gr.Button("Stop the whole sweep", variant="stop")
    message = gr.Markdown()
    return RunsTab(jobs, sweep, compare, axis, train_plot, eval_plot, table, start_from, start, stop, message)


def _known(manager: JobManager, job_ids: list[str] | None) -> list[Path]:
    """Folders of jobs in this app's jobs folder only: a typed name or path is refused (the web UI is no shell)."""
    known = set(manager.list_jobs())
    picked = [j for j in (job_ids or []) if j in known]
    if len(picked) < 2:
        raise UserError("Pick at least two jobs (or a sweep) to compare.")
    return [manager.jobs_dir / j for j in picked]


def frames(runs, axis: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    points = pd.DataFrame(curve_points(runs), columns=["run", "metric", "step", "tokens", "loss"])
    split = [
        points[points.metric == m][["run", "step", "tokens", "loss"]] for m in ("training loss", "validation loss")
    ]
    return tuple(frame.astype({"step": "float64", "tokens": "float64", "loss": "float64"}) for frame in split)


def compare(manager: JobManager, job_ids: list[str] | None, axis: str = "step") -> list:
    """[training plot, validation plot, table, start-from choices] for the jobs picked."""
    try:
        runs = [load_run(path) for path in _known(manager, job_ids)]
    except UserError as error:
        return [None, None, f"⚠ {error}", gr.update()]
    axis = axis if axis in AXES else "step"
    train, validation = frames(runs, axis)
    best = best_run(runs)
    by = "validation loss" if best and best.best_eval_loss is not None else "training loss"
    note = f"\n\n{BEST} best run by {by}: **{best.name}**" if best else ""
    names = [r.name for r in runs]
    return [
        gr.LinePlot(value=train, x=axis, x_title=AXES[axis]),
        gr.LinePlot(value=validation, x=axis, x_title=AXES[axis]),
        to_markdown(runs) + note,
        gr.update(choices=names, value=best.name if best else names[0]),
    ]


def open_sweep(manager: JobManager, sweep_id: str | None, axis: str = "step") -> list:
    members = sweeps(manager.jobs_dir).get(sweep_id or "")
    if not members:
        return [gr.update(), None, None, "Pick a sweep.", gr.update()]
    job_ids = [p.name for p in members]
    picked = gr.update(choices=manager.list_jobs(), value=job_ids)
    if len(job_ids) < 2:  # a one-point sweep: nothing to compare it with, but show it anyway
        run = load_run(members[0])
        return [picked, None, None, f"{run.name}: {run.state} (a sweep of one run)", gr.update()]
    return [picked, *compare(manager, job_ids, axis)]


def start_from(manager: JobManager, form: SpecForm, job_id: str | None) -> list:
    """The form's values for the job's spec (as when loading a saved spec), then the wizard's first step."""
    unchanged = [gr.update() for _ in form.inputs]
    if not job_id or job_id not in manager.list_jobs():
        return [*unchanged, gr.update(), gr.update(), "Pick a job to start from."]
    try:
        spec = jobdir.load_job_spec(resolve_job_name(manager.jobs_dir, job_id))
    except UserError as error:
        return [*unchanged, gr.update(), gr.update(), f"⚠ {error}"]
    note = form.left_out_note(spec)
    message = f"✅ The wizard holds **{job_id}**'s settings: change what you want to try, then launch.{note}"
    return [*form.values_for(spec), gr.Walkthrough(selected=1), gr.Tabs(selected="fine-tune"), message]


def stop_whole_sweep(manager: JobManager, sweep_id: str | None, who: str) -> str:
    if not sweep_id:
        return "Pick a sweep to stop."
    try:
        stopped = stop_sweep(manager, sweep_id, requested_by=who)
    except UserError as error:
        return f"⚠ {error}"
    return f"Stopping {len(stopped)} run(s) of **{sweep_id}**." if stopped else "Every run of this sweep has ended."


def launch_sweep(manager: JobManager, spec, secrets: dict | None, confirmed: bool) -> tuple[str, str | None]:
    """Queue a sweep's jobs from the wizard; (message, first job id). More than CONFIRM_ABOVE runs ask first."""
    count = len(expand(spec))
    if count > CONFIRM_ABOVE and not confirmed:
        return (
            f"⚠ This sweep is **{count} runs**, more than {CONFIRM_ABOVE}. Tick 'Yes, queue more than "
            f"{CONFIRM_ABOVE} runs' in step 3 (Try several values) and launch again, or try fewer values.",
            None,
        )
    sweep_id, job_ids = start_sweep(manager, spec, secrets)
    return f"Queued sweep **{sweep_id}**: {count} runs, one after another. Compare them in the **Runs** tab.", job_ids[
        0
    ]


NOTIFY_VARIABLE = "LATHE_NOTIFY_URL"  # the name a wizard-typed webhook goes by (in memory, never the environment)


def webhook_field() -> gr.Textbox:
    return gr.Textbox(
        label="Webhook URL for notices (optional)",
        type="password",
        info="A Slack, Discord or ntfy URL, posted to when the job completes, fails or is stopped (and when a "
        "sweep finishes). Kept in this server's memory for your session only: never in the spec or a job file.",
    )


def keep_webhook(url: str | None) -> str:
    url = (url or "").strip()
    register_secret(url)  # masked in every log and message from now on
    return url


def with_webhook(spec, secrets: dict[str, str], url: str):
    """The spec naming the webhook's variable, and the secrets carrying its URL (the JobManager keeps it in
    memory only). A URL that is not http(s) is refused as a spec problem would be."""
    if not url.startswith(("https://", "http://")):
        raise UserError("Webhook URL: start it with https:// (or http:// for a server on your network).")
    variable = spec.output.notify or NOTIFY_VARIABLE
    return spec.with_overrides({"output.notify": variable}), {**secrets, variable: url}


def linked_job(manager: JobManager, request: gr.Request | None) -> str | None:
    """The job a link names (`?job=NAME`, as webhook notices send), if it is one of this app's jobs."""
    params = getattr(request, "query_params", None) or {}
    job_id = params.get("job") if hasattr(params, "get") else None
    return job_id if job_id and job_id in manager.list_jobs() else None


def connect(tab: RunsTab, manager: JobManager, form: SpecForm, walkthrough, tabs, tab_button) -> None:
    compare_outputs = [tab.train_plot, tab.eval_plot, tab.table, tab.start_from]
    tab.compare.click(
        lambda job_ids, axis: compare(manager, job_ids, axis),
        inputs=[tab.jobs, tab.axis],
        outputs=compare_outputs,
        api_name="compare_runs",
    )
    tab.axis.change(
        lambda job_ids, axis: compare(manager, job_ids, axis),
        inputs=[tab.jobs, tab.axis],
        outputs=compare_outputs,
        api_visibility="private",
    )
    tab.sweep.input(
        lambda sweep_id, axis: open_sweep(manager, sweep_id, axis),
        inputs=[tab.sweep, tab.axis],
        outputs=[tab.jobs, *compare_outputs],
        api_name="open_sweep",
    )
    tab.start.click(
        lambda job_id: start_from(manager, form, job_id),
        inputs=tab.start_from,
        outputs=[*form.inputs, walkthrough, tabs, tab.message],
        api_name="start_from_run",
    )

    def stop(sweep_id, request: gr.Request):
        who = f"from the Runs tab by {request.username}" if request and request.username else "from the Runs tab"
        return stop_whole_sweep(manager, sweep_id, who)

    tab.stop_sweep.click(stop, inputs=tab.sweep, outputs=tab.message, api_name="stop_sweep")

    def refresh(picked):
        names = manager.list_jobs()
        keep = [j for j in (picked or []) if j in names]
        return gr.update(choices=names, value=keep), gr.update(choices=list(sweeps(manager.jobs_dir)))

    tab_button.select(refresh, inputs=tab.jobs, outputs=[tab.jobs, tab.sweep], api_name="list_runs")
