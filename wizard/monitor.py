"""The live run view: a timer polls the JobManager's snapshot of the selected job.

Nothing about a job lives in the browser: closing the tab changes nothing for training, and a
reloaded page picks the running (or newest) job again and redraws its whole curve from the snapshot.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from training import jobdir
from training.errors import UserError
from training.jobs import JobManager, JobSnapshot
from wizard.plain import as_text

POLL_SECONDS = 1.0
LOG_LINES = 30


@dataclass
class Monitor:
    job: gr.Dropdown
    status: gr.Markdown
    progress: gr.HTML
    loss_plot: gr.LinePlot
    eval_plot: gr.LinePlot
    lr_plot: gr.LinePlot
    preference_plot: gr.LinePlot
    reward_plot: gr.LinePlot
    spread_plot: gr.LinePlot
    length_plot: gr.LinePlot
    samples: gr.HTML
    logs: gr.Textbox
    stop: gr.Button
    resume: gr.Button
    timer: gr.Timer
    confirm: gr.Group

    @property
    def view(self) -> list:
        return [
            self.status,
            self.progress,
            self.loss_plot,
            self.eval_plot,
            self.lr_plot,
            self.preference_plot,
            self.reward_plot,
            self.spread_plot,
            self.length_plot,
            self.samples,
            self.logs,
        ]


def status_markdown(snapshot: JobSnapshot) -> str:
    text = f"**{snapshot.job_id}** — {snapshot.state}"
    if snapshot.phase and snapshot.state == jobdir.RUNNING:
        text += f" ({snapshot.phase.replace('_', ' ')})"
    if snapshot.stop_requested and snapshot.state == jobdir.RUNNING:
        text += " — stopping after this step…"
    if snapshot.state in (jobdir.FAILED, jobdir.INTERRUPTED):
        text += f"\n\n⚠ {as_text(snapshot.message)} {as_text(snapshot.hint)}"  # text from errors: inert
    if snapshot.output_dir and snapshot.reward_accuracy:
        text += f"\n\nSaved to `{snapshot.output_dir}`. A reward model scores answers: `python app.py score`."
    elif snapshot.output_dir:
        text += f"\n\nSaved to `{snapshot.output_dir}`. Open the **Chat** tab to talk to it."
    return text


def progress_html(snapshot: JobSnapshot) -> str:
    if not snapshot.total_steps:
        return "<p>Waiting for the first step…</p>" if snapshot.state in jobdir.ACTIVE_STATES else ""
    speed = f" · {snapshot.tokens_per_second:.0f} tokens/s" if snapshot.tokens_per_second else ""
    return (
        f"<progress value='{snapshot.step}' max='{snapshot.total_steps}' style='width:100%'></progress>"
        f"<p>step {snapshot.step} of {snapshot.total_steps} · epoch {snapshot.epoch:.2f} · "
        f"time left {snapshot.time_left}{speed}</p>"
    )


def loss_frame(snapshot: JobSnapshot) -> pd.DataFrame:
    return typed(pd.DataFrame(list(snapshot.train_loss), columns=["step", "loss"]))


def eval_frame(snapshot: JobSnapshot) -> pd.DataFrame:
    return typed(pd.DataFrame(list(snapshot.eval_loss), columns=["step", "validation_loss"]))


def lr_frame(snapshot: JobSnapshot) -> pd.DataFrame:
    return typed(pd.DataFrame(list(snapshot.learning_rate), columns=["step", "learning_rate"]))


def preference_frame(snapshot: JobSnapshot) -> pd.DataFrame:
    """Reward margin and accuracy in one long frame (one line each), for DPO and reward jobs."""
    rows = [(step, value, "reward margin") for step, value in snapshot.reward_margin]
    rows += [(step, value, "accuracy (better answer scored higher)") for step, value in snapshot.reward_accuracy]
    return pd.DataFrame(rows, columns=["step", "value", "metric"]).astype({"step": "float64", "value": "float64"})


def preference_plot(snapshot: JobSnapshot):
    # Shown only for preference objectives; SFT jobs have no such curves
    return gr.LinePlot(value=preference_frame(snapshot), visible=bool(snapshot.reward_margin))


def reward_frame(snapshot: JobSnapshot) -> pd.DataFrame:
    """GRPO: the weighted total reward and each reward function's mean, one line each."""
    rows = [(step, value, "total (weighted)") for step, value in snapshot.reward_mean]
    rows += [(step, value, name) for step, name, value in snapshot.rewards_by_function]
    return pd.DataFrame(rows, columns=["step", "value", "reward"]).astype({"step": "float64", "value": "float64"})


def spread_frame(snapshot: JobSnapshot) -> pd.DataFrame:
    rows = [(step, value, "reward spread (std)") for step, value in snapshot.reward_std]
    rows += [(step, value, "KL from the start") for step, value in snapshot.kl]
    return pd.DataFrame(rows, columns=["step", "value", "metric"]).astype({"step": "float64", "value": "float64"})


def length_frame(snapshot: JobSnapshot) -> pd.DataFrame:
    return typed(pd.DataFrame(list(snapshot.completion_length), columns=["step", "answer_tokens"]))


def samples_html(snapshot: JobSnapshot) -> str:
    """The latest scored answers (best, middle, worst of the step), so a person sees what is rewarded."""
    if not snapshot.samples:
        return ""
    rows = []
    for sample in snapshot.samples:
        rewards = ", ".join(
            f"{html.escape(name)} {value:.2f}" for name, value in sample["rewards"].items() if value is not None
        )
        rows.append(
            f"<tr><td>{html.escape(sample['prompt'][:200])}</td><td><pre style='white-space:pre-wrap'>"
            f"{html.escape(sample['completion'][:400])}</pre></td><td>{sample['total']:.2f}</td><td>{rewards}</td></tr>"
        )
    return (
        "<p><b>Answers the model just wrote</b> (best, middle and worst of the last step)</p><table>"
        "<tr><th>Prompt</th><th>Answer</th><th>Reward</th><th>Per reward</th></tr>" + "".join(rows) + "</table>"
    )


def grpo_views(snapshot: JobSnapshot) -> list:
    # Shown only for GRPO jobs: other objectives have no rewards of their own answers
    shown = bool(snapshot.reward_mean)
    return [
        gr.LinePlot(value=reward_frame(snapshot), visible=shown),
        gr.LinePlot(value=spread_frame(snapshot), visible=shown),
        gr.LinePlot(value=length_frame(snapshot), visible=shown),
        samples_html(snapshot),
    ]


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    # An empty frame defaults to text columns; the plot would then keep a text axis with the
    # values in arrival order, even after numbers arrive. Numbers from the first draw keep it numeric.
    return frame.astype("float64")


def render(manager: JobManager, job_id: str | None) -> list:
    if not job_id:
        empty = JobSnapshot(job_id="", job_dir="")
        frames = [loss_frame(empty), eval_frame(empty), lr_frame(empty), preference_plot(empty), *grpo_views(empty)]
        return ["No job yet: launch one above.", "", *frames, ""]
    try:
        snapshot = manager.snapshot(job_id)
    except KeyError:
        hidden = [gr.LinePlot(visible=False)] * 4
        return [
            f"No job called {html.escape(job_id[:80])}; pick one from the list.",
            "",
            None,
            None,
            None,
            *hidden,
            "",
            "",
        ]
    logs = "\n".join(snapshot.logs[-LOG_LINES:])
    position = manager.queue_position(job_id)
    status = status_markdown(snapshot)
    if position:
        status += f"\n\nNumber {position} in the queue: it starts when the jobs before it end."
    return [
        status,
        progress_html(snapshot),
        loss_frame(snapshot),
        eval_frame(snapshot),
        lr_frame(snapshot),
        preference_plot(snapshot),
        *grpo_views(snapshot),
        logs,
    ]


def job_to_show(manager: JobManager) -> str | None:
    """On page load: a running job if there is one, else the newest."""
    jobs = manager.list_jobs()
    running = [job for job in jobs if manager.snapshot(job).state in jobdir.ACTIVE_STATES]
    return (running or jobs or [None])[0]


def stop_question(snapshot: JobSnapshot) -> str:
    return (
        f"Stop **{html.escape(snapshot.job_id)}**? It saves a checkpoint at the next step and ends; Resume can "
        "continue it later. It may have been started from another browser: the stop is recorded in its log."
    )


def requested_by(request: gr.Request | None) -> str:
    """How the job's log names who stopped it: the signed-in user when there is a login, else just the wizard."""
    user = getattr(request, "username", None) if request is not None else None
    return f"from the wizard by {user}" if user else "from the wizard"


def build(manager: JobManager) -> Monitor:
    # Empty until the page loads (the load event fills it, after the login): the page itself, which gradio
    # serves before the login with a description of every component, names no job
    job = gr.Dropdown(choices=[], label="Job (all jobs in the jobs folder)", allow_custom_value=True)
    status = gr.Markdown()
    progress = gr.HTML()
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="Training loss", height=260)
        eval_plot = gr.LinePlot(x="step", y="validation_loss", title="Validation loss", height=260)
        lr_plot = gr.LinePlot(x="step", y="learning_rate", title="Learning rate", height=260)
    preference = gr.LinePlot(
        x="step",
        y="value",
        color="metric",
        title="Better vs worse answer (DPO / KTO / reward)",
        height=260,
        visible=False,
    )
    with gr.Row():
        reward_plot = gr.LinePlot(
            x="step", y="value", color="reward", title="Mean reward (GRPO)", height=260, visible=False
        )
        spread_plot = gr.LinePlot(
            x="step", y="value", color="metric", title="Reward spread and KL (GRPO)", height=260, visible=False
        )
        length_plot = gr.LinePlot(
            x="step", y="answer_tokens", title="Answer length in tokens (GRPO)", height=260, visible=False
        )
    samples = gr.HTML()
    logs = gr.Textbox(label="Recent log lines", lines=6, max_lines=12, interactive=False)
    with gr.Row():
        stop = gr.Button("Stop (saves a checkpoint first)", variant="stop")
        resume = gr.Button("Resume from the last checkpoint")
    # Any open page can stop any job (jobs are watched from every session), so Stop asks first
    with gr.Group(visible=False) as confirm:
        question = gr.Markdown()
        with gr.Row():
            yes = gr.Button("Yes, stop it", variant="stop")
            cancel = gr.Button("Cancel")
    timer = gr.Timer(POLL_SECONDS)
    monitor = Monitor(
        job,
        status,
        progress,
        loss_plot,
        eval_plot,
        lr_plot,
        preference,
        reward_plot,
        spread_plot,
        length_plot,
        samples,
        logs,
        stop,
        resume,
        timer,
        confirm,
    )

    def refresh(job_id):
        return render(manager, job_id)

    def ask_to_stop(job_id):
        try:
            snapshot = manager.snapshot(job_id) if job_id else None
        except KeyError:
            snapshot = None
        if snapshot is None or snapshot.state not in jobdir.ACTIVE_STATES:
            return gr.Group(visible=False), ""
        return gr.Group(visible=True), stop_question(snapshot)

    def stop_job(job_id, request: gr.Request):
        problem = None
        if job_id:
            try:
                manager.stop(job_id, requested_by=requested_by(request))
            except KeyError:  # not a job name: render() says so
                pass
            except UserError as error:  # e.g. a full disk: say so above the job's status
                problem = f"⚠ {error}"
        view = render(manager, job_id)
        if problem:
            view[0] = f"{problem}\n\n{view[0]}"
        return [*view, gr.Group(visible=False)]

    timer.tick(refresh, inputs=job, outputs=monitor.view, api_name="job_view", show_progress="hidden")
    job.change(refresh, inputs=job, outputs=monitor.view, api_visibility="private")
    stop.click(ask_to_stop, inputs=job, outputs=[confirm, question], api_name="ask_to_stop")
    yes.click(stop_job, inputs=job, outputs=[*monitor.view, confirm], api_name="stop_job")
    cancel.click(lambda: gr.Group(visible=False), outputs=confirm, api_visibility="private")
    return monitor
