"""The wizard's five steps: Next checks the current step's fields (and what they name on disk), Back keeps
everything entered."""

from __future__ import annotations

import gradio as gr

from training.jobs import JobManager
from wizard.form import SpecForm, owning_field, problems_markdown
from wizard.steps import data, hyperparameters, model

STEP_MODEL, STEP_DATA, STEP_HYPER, STEP_PREVIEW, STEP_LAUNCH = 1, 2, 3, 4, 5
CHECKED = {STEP_MODEL: model.PATHS, STEP_DATA: data.PATHS, STEP_HYPER: hyperparameters.PATHS}


def next_step(form: SpecForm, manager: JobManager, step: int, secret: str, values) -> list:
    """Stay on `step` with its problems shown under their fields, or go on to the next step."""
    paths = CHECKED.get(step, [])
    spec, problems = form.build(values)
    mine = [p for p in problems if owning_field(p[0], paths) in paths]
    if not mine and spec is not None:
        from training.preflight import preflight_problems  # touches the disk and the model files

        found = preflight_problems(spec, manager.jobs_dir, token=secret or None)
        mine = [p for p in found if owning_field(p[0], paths) in paths]
    selected = step if mine else step + 1
    return [gr.Walkthrough(selected=selected), problems_markdown(mine), *form.show_problems(mine, paths)]


def connect(
    walkthrough: gr.Walkthrough,
    problems: gr.Markdown,
    form: SpecForm,
    manager: JobManager,
    token: gr.State,
    nexts: dict[int, gr.Button],
    backs: dict[int, gr.Button],
) -> None:
    """`nexts` and `backs`: each step's Next and Back button, by step number."""
    for step, button in nexts.items():
        if step not in CHECKED:  # the preview step checks nothing new: it shows what will run
            button.click(lambda s=step: gr.Walkthrough(selected=s + 1), outputs=walkthrough, api_visibility="private")
            continue
        button.click(
            _checks(form, manager, step),
            inputs=[token, *form.inputs],
            outputs=[walkthrough, problems, *[form.components[p] for p in CHECKED[step]]],
            api_name=f"next_{step}",
        )
    for step, button in backs.items():
        button.click(lambda s=step: gr.Walkthrough(selected=s - 1), outputs=walkthrough, api_visibility="private")


def _checks(form: SpecForm, manager: JobManager, step: int):
    return lambda secret, *values: next_step(form, manager, step, secret, values)
