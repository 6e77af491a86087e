"""The Gradio app. For now: the job list and each job's live state; the five-step wizard grows here."""

from __future__ import annotations

import gradio as gr

from training.jobs import JobManager, JobSnapshot


def describe(snapshot: JobSnapshot) -> str:
    progress = f"step {snapshot.step}/{snapshot.total_steps}" if snapshot.total_steps else snapshot.phase
    loss = f", loss {snapshot.train_loss[-1][1]:.4f}" if snapshot.train_loss else ""
    return f"**{snapshot.job_id}** — {snapshot.state} ({progress}{loss})"


def build_ui(manager: JobManager) -> gr.Blocks:
    with gr.Blocks(title="Lathe") as demo:
        gr.Markdown(
            "# Lathe\nFine-tune open LLMs without code. Start a job with "
            "`python app.py train presets/jobs/quickstart.yaml`; it appears below."
        )
        jobs = gr.Markdown()

        def refresh() -> str:
            rows = [describe(manager.snapshot(job_id)) for job_id in manager.list_jobs()]
            return "\n\n".join(rows) or "No jobs yet."

        demo.load(refresh, outputs=jobs)
        gr.Timer(2.0).tick(refresh, outputs=jobs)
    return demo


def launch(manager: JobManager, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True):
    demo = build_ui(manager)
    demo.queue().launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, enable_monitoring=False, show_error=False
    )
    return demo
