"""Step 3 — Hyperparameters: a preset, the settings people change most, and the rest folded away."""

from __future__ import annotations

import gradio as gr

from training.presets import recipes
from wizard.form import STOP_BY_EPOCHS, STOP_BY_STEPS, STOP_RULE, SpecForm

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
PATHS = [STOP_RULE, *MAIN, *ADVANCED]
PRESET_HELP = "\n".join(f"- **{name.capitalize()}**: {recipe.description}" for name, recipe in recipes().items())


def apply_preset(form: SpecForm, name: str, values) -> list:
    """New values for every field of this step, from the preset applied to what is entered now."""
    spec, _ = form.build(values)
    spec = recipes()[name.lower()].apply(spec or form.base)
    updates = []
    for path in PATHS:
        if path == STOP_RULE:
            updates.append(STOP_BY_STEPS if spec.hyperparameters.max_steps else STOP_BY_EPOCHS)
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
    return preset


def connect(preset: gr.Radio, form: SpecForm) -> None:
    preset.change(
        lambda name, *values: apply_preset(form, name, values),
        inputs=[preset, *form.inputs],
        outputs=[form.components[p] for p in PATHS],
        api_visibility="private",
    )
