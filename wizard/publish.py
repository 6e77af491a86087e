"""The "Push to the Hub" panel: a finished job's adapter (or merged model) and its model card, uploaded to a repo.

The token is the one this browser session gave in step 1, read from the wizard's server-side `gr.State`;
the panel has no token box of its own, so the token is never sent from the page again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from training.errors import UserError
from training.jobs import JobManager


@dataclass
class PublishPanel:
    repo: gr.Textbox
    private: gr.Checkbox
    merged: gr.Checkbox
    push: gr.Button
    result: gr.Markdown


def build() -> PublishPanel:
    with gr.Accordion("Push to the Hub", open=False):
        gr.Markdown(
            "Upload the job's model with a model card to a Hugging Face repo, using the token from step 1 "
            "(it needs write access). A new repo is created; an existing one gets a new commit."
        )
        repo = gr.Textbox(
            label="Repo",
            placeholder="your-name/my-model",
            info="owner/name, or just a name for your own account.",
        )
        with gr.Row():
            private = gr.Checkbox(True, label="Private", info="For a new repo; an existing repo keeps its visibility.")
            merged = gr.Checkbox(
                False, label="Merged model", info="One standalone model instead of the small LoRA adapter."
            )
        push = gr.Button("Push", variant="primary")
        result = gr.Markdown()
    return PublishPanel(repo=repo, private=private, merged=merged, push=push, result=result)


def push_job_to_hub(manager: JobManager, job_id: str, repo: str, private: bool, merged: bool, secret: str) -> str:
    """The push, as one line of markdown for the result box."""
    from training.publish import push_job  # loads huggingface_hub and the export code: only when someone pushes

    if not job_id:
        return "⚠ Pick a finished job first."
    try:
        url = push_job(manager.snapshot(job_id).job_dir, repo, secret or None, merged=merged, private=private)
    except UserError as error:
        return f"⚠ {error}"
    except KeyError:
        return f"⚠ {job_id} is not a job here. Pick one from the list."
    return f"✅ Pushed the {'merged model' if merged else 'adapter'} of **{job_id}** to [{url}]({url})."


def connect(panel: PublishPanel, manager: JobManager, job: gr.Dropdown, token: gr.State) -> None:
    """Push the job chosen in `job` with the session's token."""

    def push(job_id, repo, private, merged, secret) -> Iterator[str]:
        yield "Pushing… (a merged model is built first, which takes a while)"
        yield push_job_to_hub(manager, job_id, repo, private, merged, secret)

    panel.push.click(
        push,
        inputs=[job, panel.repo, panel.private, panel.merged, token],
        outputs=panel.result,
        api_name="push_to_hub",
    )
