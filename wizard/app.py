"""The Gradio app: a five-step wizard that ends in a live run view, and a chat tab.

The job spec is the contract: steps fill a `SpecForm`, Next validates only the current step's
fields (showing each problem under its field), and Launch hands a validated spec plus the
session's token to the JobManager. The token lives in server-side session state (`gr.State`),
never in the spec, the page or the browser's storage.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from training.errors import UserError
from training.jobs import JobManager
from training.presets import example_jobs
from training.redact import register_secret
from training.spec import load_spec
from wizard import chat, monitor, publish, results, runs
from wizard.auth import Authenticator, ClientAddressMiddleware, require_login_unless_local
from wizard.form import GENERAL_DEMO, SWEEP_CONFIRM, SpecForm, owning_field, problems_markdown
from wizard.steps import data, hyperparameters, model, preview

STEP_MODEL, STEP_DATA, STEP_HYPER, STEP_PREVIEW, STEP_LAUNCH = 1, 2, 3, 4, 5
DEFAULT_MAX_UPLOAD_MB = 100  # the data check handles 100 MB in ~15 s here (docs/benchmarks.md)


def build_ui(manager: JobManager) -> gr.Blocks:
    form = SpecForm(example_jobs()["quickstart"].with_overrides({"name": "my-first-job"}))
    sessions = chat.SessionCache()
    with gr.Blocks(title="Lathe") as demo:
        token = gr.State("")  # server-side, per browser session
        webhook = gr.State("")  # the notice webhook's URL: a secret too, kept like the token
        gr.Markdown("# Lathe\nFine-tune an open LLM in five steps, then chat with it.")
        with gr.Tabs() as tabs:
            with gr.Tab("Fine-tune", id="fine-tune"):
                with gr.Walkthrough(selected=STEP_MODEL) as walkthrough:
                    with gr.Step("Model & token", id=STEP_MODEL):
                        model_step = model.build(form)
                        next_1 = gr.Button("Next", variant="primary")
                    with gr.Step("Dataset & task", id=STEP_DATA):
                        data_step = data.build(form, manager.jobs_dir.parent / "uploads")
                        with gr.Row():
                            back_2, next_2 = gr.Button("Back"), gr.Button("Next", variant="primary")
                    with gr.Step("Hyperparameters", id=STEP_HYPER):
                        preset = hyperparameters.build(form)
                        webhook_box = runs.webhook_field()
                        with gr.Row():
                            back_3, next_3 = gr.Button("Back"), gr.Button("Next", variant="primary")
                    with gr.Step("GPU preview", id=STEP_PREVIEW):
                        preview_step = preview.build()
                        with gr.Row():
                            back_4, next_4 = gr.Button("Back"), gr.Button("Next", variant="primary")
                    with gr.Step("Launch & monitor", id=STEP_LAUNCH):
                        launch_button = gr.Button("Launch", variant="primary")
                        queue_if_busy = gr.Checkbox(
                            True,
                            label="If another job is training, queue this one",
                            info="One job trains at a time. Untick to be told instead of waiting.",
                        )
                        launch_anyway = gr.Checkbox(
                            False,
                            label="Launch even if the estimate says it won't fit",
                            info="The estimate can be wrong; training then stops with an out-of-memory message.",
                        )
                        launch_problems = gr.Markdown()
                        run_view = monitor.build(manager)
                        back_5 = gr.Button("Back")
                step_problems = gr.Markdown()
            with gr.Tab("Chat") as chat_tab_button:
                chat_tab = chat.build(manager, sessions, token)
            with gr.Tab("Results") as results_tab_button:
                results_tab = results.build()
                publish.connect(publish.build(), manager, job=results_tab.job, token=token)
                results.connect(results_tab, manager, token)
            with gr.Tab("Runs") as runs_tab_button:
                runs_tab = runs.build()
        runs.connect(runs_tab, manager, form, walkthrough, tabs, runs_tab_button)

        # ---- Navigation: Next validates the current step; Back keeps everything entered ----
        steps = {STEP_MODEL: model.PATHS, STEP_DATA: data.PATHS, STEP_HYPER: hyperparameters.PATHS}

        def go_next(step: int):
            paths = steps.get(step, [])

            def handler(secret, *values):
                spec, problems = form.build(values)
                mine = [p for p in problems if owning_field(p[0], paths) in paths]
                if not mine and spec is not None:
                    from training.preflight import preflight_problems  # touches the disk and the model files

                    found = preflight_problems(spec, manager.jobs_dir, token=secret or None)
                    mine = [p for p in found if owning_field(p[0], paths) in paths]
                selected = step if mine else step + 1
                return [gr.Walkthrough(selected=selected), problems_markdown(mine), *form.show_problems(mine, paths)]

            return handler

        for step, button in ((STEP_MODEL, next_1), (STEP_DATA, next_2), (STEP_HYPER, next_3)):
            outputs = [walkthrough, step_problems, *[form.components[p] for p in steps[step]]]
            button.click(go_next(step), inputs=[token, *form.inputs], outputs=outputs, api_name=f"next_{step}")
        next_4.click(lambda: gr.Walkthrough(selected=STEP_LAUNCH), outputs=walkthrough, api_visibility="private")
        for step, button in ((STEP_DATA, back_2), (STEP_HYPER, back_3), (STEP_PREVIEW, back_4), (STEP_LAUNCH, back_5)):
            button.click(lambda s=step: gr.Walkthrough(selected=s - 1), outputs=walkthrough, api_visibility="private")

        # ---- Step actions ----
        def check_access(model_id, typed_token, saved_token):
            from training.hub import check_access as check

            secret = (typed_token or saved_token or "").strip()
            register_secret(secret)  # masked in every log and message from now on, whatever its shape
            result = check(model_id, secret or None)
            # The token moves into server-side state and the box is emptied, so it is not sent again
            return ("✅ " if result.ok else "⚠ ") + result.message, "", secret

        model_step.check.click(
            check_access,
            inputs=[model_step.model, model_step.token, token],
            outputs=[model_step.access, model_step.token, token],
            api_name="check_access",
        )

        def keep_token(typed, saved):
            register_secret(typed)
            return (typed or "").strip() or saved

        model_step.token.change(
            keep_token,
            inputs=[model_step.token, token],
            outputs=token,
            api_visibility="private",
        )
        # Picking a catalog model applies its suggested settings (e.g. QLoRA and a longer context for 7B)
        suggested = model.suggested_paths()
        # .input, not .change: a loaded spec sets the model too, and must keep its own settings
        model_step.model.input(
            lambda model_id: model.suggested_values(model_id, suggested),
            inputs=model_step.model,
            outputs=[form.components[p] for p in suggested],
            api_visibility="private",
        )

        def load_saved_spec(path):
            from training.spec import load_spec as read_spec

            unchanged = [gr.update() for _ in form.inputs]
            if not path:
                return [*unchanged, ""]
            try:
                spec = read_spec(path)
            except UserError as error:
                return [*unchanged, f"⚠ {error}"]
            left_out = [s for s in spec.data.mix_in if s != GENERAL_DEMO]
            note = f" data.mix_in {', '.join(left_out)} cannot be shown here and was left out." if left_out else ""
            return [*form.values_for(spec), f"✅ Loaded **{spec.name}**: every step is filled in.{note}"]

        model_step.spec_file.upload(
            load_saved_spec,
            inputs=model_step.spec_file,
            outputs=[*form.inputs, model_step.spec_loaded],
            api_name="load_spec",
        )
        data_step.preview_button.click(
            lambda secret, *values: data.render_preview(form, values, token=secret or None),
            inputs=[token, *form.inputs],
            outputs=data_step.preview,
            api_name="preview_data",
        )
        preset.change(
            lambda name, *values: hyperparameters.apply_preset(form, name, values),
            inputs=[preset, *form.inputs],
            outputs=[form.components[p] for p in hyperparameters.PATHS],
            api_visibility="private",
        )
        preview_outputs = [
            preview_step.hardware,
            preview_step.summary,
            preview_step.estimate,
            preview_step.spec_yaml,
            preview_step.download,
        ]
        next_3.click(
            lambda secret, *values: preview.preview(form, values, token=secret or None),
            inputs=[token, *form.inputs],
            outputs=preview_outputs,
            api_name="gpu_preview",
        )

        preview_step.price.change(
            lambda secret, price, *values: preview.priced(form, values, secret or None, price),
            inputs=[token, preview_step.price, *form.inputs],
            outputs=preview_step.estimate,
            api_name="price_estimate",
        )
        preview_step.measure.click(
            lambda secret, price, *values: preview.measured(manager, form, values, secret or None, price),
            inputs=[token, preview_step.price, *form.inputs],
            outputs=preview_step.estimate,
            api_name="measure_speed",
        )

        def launch(secret, hook, queue, anyway, *values):
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

        launch_button.click(
            launch,
            inputs=[token, webhook, queue_if_busy, launch_anyway, *form.inputs],
            outputs=[launch_problems, run_view.job],
            api_name="launch",
        )
        webhook_box.change(runs.keep_webhook, inputs=webhook_box, outputs=webhook, api_name="set_webhook")

        def resume(secret, job_id):
            if not job_id:
                return "Pick a job to resume."
            try:
                manager.resume(job_id, secrets={"HF_TOKEN": secret} if secret else None)
            except (UserError, KeyError) as error:
                return f"⚠ {error}"
            return f"Resuming **{job_id}** from its last complete checkpoint."

        run_view.resume.click(resume, inputs=[token, run_view.job], outputs=launch_problems, api_name="resume_job")

        # ---- Re-attach on every page load: the running (or newest) job, with its whole curve ----
        def finished_jobs(current=None):
            finished = [j for j in manager.list_jobs() if can_chat(manager.snapshot(j))]
            return gr.update(choices=finished, value=current if current in finished else next(iter(finished), None))

        chat_tab_button.select(finished_jobs, inputs=chat_tab.job, outputs=chat_tab.job, api_visibility="private")

        def jobs_with_a_model(current=None):
            done = [j for j in manager.list_jobs() if manager.snapshot(j).output_dir]
            return gr.update(choices=done, value=current if current in done else next(iter(done), None))

        results_tab_button.select(
            jobs_with_a_model, inputs=results_tab.job, outputs=results_tab.job, api_visibility="private"
        )

        def on_load(request: gr.Request):
            job_id = monitor.job_to_show(manager)
            # A notice's link (?job=NAME) opens that job's run view; only a name from the jobs list is taken
            linked = runs.linked_job(manager, request)
            job_id = linked or job_id
            running = job_id is not None and manager.snapshot(job_id).state in ("queued", "running")
            jobs = gr.update(choices=manager.list_jobs(), value=job_id)
            step = gr.Walkthrough(selected=STEP_LAUNCH) if running or linked else gr.Walkthrough()
            return jobs, step, finished_jobs()

        demo.load(on_load, outputs=[run_view.job, walkthrough, chat_tab.job], api_name="attach")
    return demo


def can_chat(snapshot) -> bool:
    """Finished with a model that writes text (a reward model only scores it)."""
    if not snapshot.output_dir:
        return False
    try:
        return load_spec(Path(snapshot.job_dir) / "spec.yaml").method.objective != "reward"
    except UserError:
        return False


def launch(
    manager: JobManager,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    block: bool = True,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    auth: Authenticator | None = None,
):
    require_login_unless_local(host, auth)
    confine_gradio_files(manager)
    demo = build_ui(manager)
    demo.queue().launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        share=False,
        show_error=False,
        enable_monitoring=False,
        run_history=False,  # it would keep every input, the token included, in the browser's storage
        max_file_size=f"{max_upload_mb}mb",  # gradio refuses bigger uploads and says the limit
        ssr_mode=False,
        footer_links=["api"],
        auth=auth.check if auth else None,
        auth_message=auth.login_help() if auth else None,
        # Job folders, converted models and the Hub cache are never served, even if gradio's own
        # checks regress (path handling is its most-patched surface); blocked_paths wins over the rest.
        blocked_paths=[str(manager.jobs_dir.resolve()), *cache_folders()],
        app_kwargs={
            "middleware": [Middleware(ClientAddressMiddleware)],  # the login limiter needs the client's address
            "openapi_url": None,  # FastAPI's own schema of every route would otherwise answer without a login
        },
    )
    return demo


def confine_gradio_files(manager: JobManager) -> None:
    """Keep gradio's uploads and the files it serves in this app's own upload folder.

    gradio serves any file under its temp folder (default /tmp/gradio, shared by every gradio app on the
    machine) and its examples cache (default ./.gradio, relative to where the app starts). Both are read
    from the environment when components are built, so set them before build_ui."""
    if os.environ.get("GRADIO_ALLOWED_PATHS"):
        raise UserError(
            "GRADIO_ALLOWED_PATHS is set, which would let the wizard serve files outside its own folders; "
            "unset it (Lathe serves only its job uploads and downloads)."
        )
    folder = gradio_files_folder(manager.jobs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "examples")


def gradio_files_folder(jobs_dir: Path) -> Path:
    """Where gradio keeps uploads and the files it serves: next to the jobs, inside the uploads folder."""
    return (Path(jobs_dir).parent / "uploads" / "gradio").resolve()


def cache_folders() -> list[str]:
    """The converted-model cache and the Hugging Face cache, which can hold models and tokens."""
    from training.models import cache_root

    folders = [cache_root(), Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))]
    return [str(Path(folder).expanduser().resolve()) for folder in folders]
