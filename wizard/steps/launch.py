"""Step 5 — Launch & monitor: start the job (after a last check of its files), resume one, watch it run.

The checks at Launch are the ones Next already ran; unchanged files are not read again, and the step-4
estimate is reused (both are kept by `training`, keyed on the spec and the files' size and time)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from training.errors import UserError
from training.jobs import JobManager
from wizard import monitor, runs
from wizard.form import SWEEP_CONFIRM, SpecForm, problems_markdown
from wizard.steps import preview


@dataclass
class LaunchStep:
    start: gr.Button
    queue_if_busy: gr.Checkbox
    start_anyway: gr.Checkbox
    problems: gr.Markdown
    run_view: monitor.Monitor


def build(manager: JobManager) -> LaunchStep:
    start = gr.Button("Launch", variant="primary")
    queue_if_busy = gr.Checkbox(
        True,
        label="If another job is training, queue this one",
        info="One job trains at a time. Untick to be told instead of waiting.",
    )
    start_anyway = gr.Checkbox(
        False,
        label="Launch even if the estimate says it won't fit",
        info="The estimate can be wrong; training then stops with an out-of-memory message.",
    )
    problems = gr.Markdown()
    return LaunchStep(start, queue_if_busy, start_anyway, problems, monitor.build(manager))


def start_job(manager: JobManager, form: SpecForm, secret: str, hook: str, queue: bool, anyway: bool, values) -> tuple:
    """(a message, the run view's job list): the job (or each run of a sweep) started or queued, or why not.
    `hook`: the notice webhook's URL typed in this session, which travels beside the spec like the token."""
    from training.preflight import preflight_problems

    spec, problems = form.build(values)
    secrets = {"HF_TOKEN": secret} if secret else {}
    if spec is not None and hook:  # the spec names the variable; the URL travels beside it, in memory
        try:
            spec, secrets = runs.with_webhook(spec, secrets, hook)
        except UserError as error:
            return f"⚠ {error}", gr.update()
    # files can vanish (and disks fill) between Next and Launch
    problems = problems or preflight_problems(spec, manager.jobs_dir, token=secret or None)
    if problems:
        return problems_markdown(problems), gr.update()
    warning = None if anyway else preview.fit_warning(spec, secret or None)
    if warning:
        return warning, gr.update()
    if spec.sweep is not None:  # one job per point, through the same queue
        confirmed = bool(dict(zip(form.components, values, strict=True)).get(SWEEP_CONFIRM))
        message, first = runs.launch_sweep(manager, spec, secrets or None, confirmed)
        return message, gr.update(choices=manager.list_jobs(), value=first) if first else gr.update()
    try:
        job_id = manager.start(spec, secrets=secrets or None, queue=queue)
    except UserError as error:
        return f"⚠ {error}", gr.update()
    return f"Launched **{job_id}**.", gr.update(choices=manager.list_jobs(), value=job_id)


def resume_job(manager: JobManager, secret: str, job_id: str | None) -> str:
    if not job_id:
        return "Pick a job to resume."
    try:
        manager.resume(job_id, secrets={"HF_TOKEN": secret} if secret else None)
    except (UserError, KeyError) as error:
        return f"⚠ {error}"
    return f"Resuming **{job_id}** from its last complete checkpoint."


def connect(step: LaunchStep, form: SpecForm, manager: JobManager, token: gr.State, webhook: gr.State) -> None:
    step.start.click(
        lambda secret, hook, queue, anyway, *values: start_job(manager, form, secret, hook, queue, anyway, values),
        inputs=[token, webhook, step.queue_if_busy, step.start_anyway, *form.inputs],
        outputs=[step.problems, step.run_view.job],
        api_name="launch",
    )
    step.run_view.resume.click(
        lambda secret, job_id: resume_job(manager, secret, job_id),
        inputs=[token, step.run_view.job],
        outputs=step.problems,
        api_name="resume_job",
    )
