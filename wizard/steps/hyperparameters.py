"""Step 3 — Hyperparameters: a preset, the settings people change most, and the rest folded away."""

from __future__ import annotations

import gradio as gr

from training.presets import recipes
from training.spec import SweepSection, describe_field
from training.sweep import CONFIRM_ABOVE
from training.trackers import PACKAGES as TRACKERS
from wizard import rewards_form
from wizard.form import (
    STOP_BY_EPOCHS,
    STOP_BY_STEPS,
    STOP_RULE,
    SWEEP_CONFIRM,
    SWEEP_COUNT,
    SWEEP_STRATEGY,
    SWEPT_FIELDS,
    SpecForm,
)

MAIN = [
    "method.type",
    "hyperparameters.context_length",
    "hyperparameters.learning_rate",
    "hyperparameters.epochs",
    "hyperparameters.max_steps",
    "method.lora_r",
    "method.lora_alpha",
]
ADVANCED = [
    "hyperparameters.batch_size",
    "hyperparameters.gradient_accumulation",
    "hyperparameters.warmup_ratio",
    "hyperparameters.scheduler",
    "hyperparameters.weight_decay",
    "method.lora_dropout",
    "method.target_modules",
    "method.use_dora",
    "method.use_rslora",
    "method.dpo_beta",
    "method.preference_loss",
    "method.qlora_compute_dtype",
    "method.qlora_double_quant",
    "hyperparameters.precision",
    "hyperparameters.gradient_checkpointing",
    "hyperparameters.devices",
    "hyperparameters.distributed",
    "hyperparameters.group_by_length",
    "hyperparameters.packing",
    "hyperparameters.seed",
    "hyperparameters.logging_steps",
    "hyperparameters.eval_steps",
    "hyperparameters.save_steps",
    "output.save_total_limit",
    "output.merge_adapter",
    "output.evaluate",
]
TRACKING = ["output.report_to", "output.notify"]
SWEEP_KEYS = [*SWEPT_FIELDS, SWEEP_STRATEGY, SWEEP_COUNT, SWEEP_CONFIRM]
GRPO = ["method.grpo_generations", "method.grpo_max_completion_length", "method.grpo_temperature", "method.grpo_beta"]
PATHS = [STOP_RULE, *MAIN, *ADVANCED, *GRPO, *rewards_form.KEYS, *TRACKING, *SWEEP_KEYS]
# Choices offered for "try several values" (a loaded spec may hold others; they are kept)
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 3e-3]
LORA_RANKS = [4, 8, 16, 32, 64, 128]
PRESET_HELP = "\n".join(f"- **{name.capitalize()}**: {recipe.description}" for name, recipe in recipes().items())


def apply_preset(form: SpecForm, name: str, values) -> list:
    """New values for every field of this step, from the preset applied to what is entered now."""
    spec, _ = form.build(values)
    spec = recipes()[name.lower()].apply(spec or form.base)
    updates = []
    for path in PATHS:
        if path == STOP_RULE:
            updates.append(STOP_BY_STEPS if spec.hyperparameters.max_steps else STOP_BY_EPOCHS)
        elif path in SWEEP_KEYS or path in rewards_form.KEYS:  # a preset sets values, not what to try or reward
            updates.append(gr.update())
        else:
            section, _, field = path.partition(".")
            updates.append(getattr(getattr(spec, section), field))
    return updates


def build(form: SpecForm) -> gr.Radio:
    gr.Markdown("### 3 · Hyperparameters\nStart from a preset; every field explains itself.")
    preset = gr.Radio([name.capitalize() for name in recipes()], label="Preset", value=None)
    gr.Markdown(PRESET_HELP)
    hp = form.base.hyperparameters
    form.extra(
        STOP_RULE,
        gr.Radio(
            [STOP_BY_EPOCHS, STOP_BY_STEPS],
            label="Stop after",
            value=STOP_BY_STEPS if hp.max_steps else STOP_BY_EPOCHS,
            info="Train for whole passes over the data, or for a fixed number of steps.",
        ),
    )
    with gr.Row():
        for path in MAIN[:3]:
            form.field(path)
    with gr.Row():
        for path in MAIN[3:]:
            form.field(path)
    with gr.Accordion("Advanced settings", open=False):
        for start in range(0, len(ADVANCED), 4):
            with gr.Row():
                for path in ADVANCED[start : start + 4]:
                    form.field(path)
    with gr.Accordion("Rewards and answers (GRPO)", open=form.base.method.objective == "grpo"):
        gr.Markdown("For the objective *Learn from rewards on its own answers (GRPO)*; other objectives ignore it.")
        with gr.Row():
            for path in GRPO:
                form.field(path)
        rewards_form.build(form)
    with gr.Accordion("Trackers and notifications", open=False), gr.Row():
        form.field(
            "output.report_to",
            gr.CheckboxGroup(
                list(TRACKERS),
                value=form.base.output.report_to,
                label="Send the run to",
                info=describe_field("output.report_to").help,
            ),
        )
        form.field("output.notify", label="Webhook: environment variable with its URL")
    with gr.Accordion("Try several values (a sweep)", open=False):
        gr.Markdown(
            "Pick more than one value to queue one job per combination; the **Runs** tab compares them and marks "
            "the best by validation loss. The GPU preview multiplies the time by the number of runs."
        )
        with gr.Row():
            form.extra(
                "sweep_learning_rate",
                gr.Dropdown(
                    LEARNING_RATES, value=[], multiselect=True, allow_custom_value=True, label="Learning rates to try"
                ),
            )
            form.extra(
                "sweep_lora_r",
                gr.Dropdown(LORA_RANKS, value=[], multiselect=True, allow_custom_value=True, label="LoRA ranks to try"),
            )
        with gr.Row():
            form.extra(
                SWEEP_STRATEGY,
                gr.Radio(
                    ["grid", "random"],
                    value="grid",
                    label="Sweep by",
                    info=SweepSection.model_fields["strategy"].description,
                ),
            )
            form.extra(
                SWEEP_COUNT, gr.Number(None, precision=0, label="Random: how many runs", info="0 or empty = not set.")
            )
            form.extra(SWEEP_CONFIRM, gr.Checkbox(False, label=f"Yes, queue more than {CONFIRM_ABOVE} runs"))
    return preset


def connect(preset: gr.Radio, form: SpecForm) -> None:
    preset.change(
        lambda name, *values: apply_preset(form, name, values),
        inputs=[preset, *form.inputs],
        outputs=[form.components[p] for p in PATHS],
        api_visibility="private",
    )
