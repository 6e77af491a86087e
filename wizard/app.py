"""The Gradio app: a five-step wizard that ends in a live run view, a chat tab and a results tab.

The job spec is the contract: steps fill a `SpecForm`, Next validates only the current step's
fields (showing each problem under its field), and Launch hands a validated spec plus the
session's token to the JobManager. The token lives in server-side session state (`gr.State`),
never in the spec, the page or the browser's storage. Each step and tab draws itself (`build`)
and wires its own events (`connect`); this module only puts them together and serves them.
"""

from __future__ import annotations

import gradio as gr

from training import jobdir
from training.jobs import JobManager
from training.presets import example_jobs
from training.web_paths import WebRoots
from wizard import chat, monitor, publish, results, runs, walkthrough
from wizard.auth import Authenticator
from wizard.form import SpecForm
from wizard.server import DEFAULT_MAX_UPLOAD_MB, launch_options, prepare_server
from wizard.steps import data, hyperparameters, launch, model, preview
from wizard.walkthrough import STEP_DATA, STEP_HYPER, STEP_LAUNCH, STEP_MODEL, STEP_PREVIEW


def build_ui(manager: JobManager, data_dirs=(), never_read=()) -> gr.Blocks:
    uploads = manager.jobs_dir.parent / "uploads"
    # What a web user's paths may name: the uploads, the operator's --data-dir folders (never the login file)
    roots = WebRoots.make(uploads, manager.jobs_dir, data_dirs, never_read)
    form = SpecForm(example_jobs()["quickstart"].with_overrides({"name": "my-first-job"}), roots)
    with gr.Blocks(title="Lathe", analytics_enabled=False) as demo:
        token = gr.State("")  # server-side, per browser session
        webhook = gr.State("")  # the notice webhook's URL: a secret too, kept like the token
        gr.Markdown("# Lathe\nFine-tune an open LLM in five steps, then chat with it.")
        with gr.Tabs() as tabs:
            with gr.Tab("Fine-tune", id="fine-tune"):
                with gr.Walkthrough(selected=STEP_MODEL) as steps:
                    with gr.Step("Model & token", id=STEP_MODEL):
                        model_step = model.build(form)
                        nexts, backs = {STEP_MODEL: gr.Button("Next", variant="primary")}, {}
                    with gr.Step("Dataset & task", id=STEP_DATA):
                        data_step = data.build(form, uploads)
                        nexts[STEP_DATA] = back_and_next(STEP_DATA, backs)
                    with gr.Step("Hyperparameters", id=STEP_HYPER):
                        preset = hyperparameters.build(form)
                        webhook_box = runs.webhook_field()
                        nexts[STEP_HYPER] = back_and_next(STEP_HYPER, backs)
                    with gr.Step("GPU preview", id=STEP_PREVIEW):
                        preview_step = preview.build()
                        nexts[STEP_PREVIEW] = back_and_next(STEP_PREVIEW, backs)
                    with gr.Step("Launch & monitor", id=STEP_LAUNCH):
                        launch_step = launch.build(manager)
                        backs[STEP_LAUNCH] = gr.Button("Back")
                step_problems = gr.Markdown()
            with gr.Tab("Chat") as chat_opened:
                chat_tab = chat.build(manager, chat.SessionCache(), token)
            with gr.Tab("Results") as results_opened:
                results_tab = results.build()
                publish_panel = publish.build()
            with gr.Tab("Runs") as runs_opened:
                runs_tab = runs.build()

        walkthrough.connect(steps, step_problems, form, manager, token, nexts, backs)
        model.connect(model_step, form, token)
        data.connect(data_step, form, token)
        hyperparameters.connect(preset, form)
        preview.connect(preview_step, form, manager, token, shown_by=nexts[STEP_HYPER])
        launch.connect(launch_step, form, manager, token, webhook)
        webhook_box.change(runs.keep_webhook, inputs=webhook_box, outputs=webhook, api_name="set_webhook")
        runs.connect(runs_tab, manager, form, steps, tabs, runs_opened)
        chat.connect_tab(chat_opened, chat_tab, manager)
        results.connect_tab(results_opened, results_tab, manager)
        publish.connect(publish_panel, manager, job=results_tab.job, token=token)
        results.connect(results_tab, manager, token)

        # Re-attach on every page load: the running (or newest) job, with its whole curve
        def on_load(request: gr.Request):
            # A notice's link (?job=NAME) opens that job's run view; only a name from the jobs list is taken
            linked = runs.linked_job(manager, request)
            job_id = linked or monitor.job_to_show(manager)
            running = job_id is not None and manager.snapshot(job_id).state in jobdir.ACTIVE_STATES
            jobs = gr.update(choices=manager.list_jobs(), value=job_id)
            step = gr.Walkthrough(selected=STEP_LAUNCH) if running or linked else gr.Walkthrough()
            return jobs, step, chat.finished_jobs(manager)

        demo.load(on_load, outputs=[launch_step.run_view.job, steps, chat_tab.job], api_name="attach")
    return demo


def back_and_next(step: int, backs: dict[int, gr.Button]) -> gr.Button:
    """A step's Back and Next buttons side by side: Back goes into `backs`, Next is returned."""
    with gr.Row():
        backs[step], forward = gr.Button("Back"), gr.Button("Next", variant="primary")
    return forward


def serve_wizard(
    manager: JobManager,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    block: bool = True,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    auth: Authenticator | None = None,
    public_urls: tuple[str, ...] = (),
    trusted_proxies: tuple[str, ...] = (),
    data_dirs: tuple[str, ...] = (),
) -> gr.Blocks:
    """Serve the wizard (blocking unless `block=False`, which returns the running app, as the tests use it).
    `public_urls`: the addresses people reach it by through a proxy; `trusted_proxies`: whose X-Forwarded-*
    headers are believed; `data_dirs`: folders a web user may read data from besides the uploads."""
    policy = prepare_server(manager, host, auth, public_urls, trusted_proxies)
    demo = build_ui(manager, data_dirs, never_read=[auth.path] if auth and auth.path else [])
    demo.queue().launch(**launch_options(manager, host, port, block, max_upload_mb, auth, policy))
    return demo
