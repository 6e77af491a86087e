"""The wizard's form: widgets drawn from the spec's own field declarations, and values turned back into a spec.

Labels, help, bounds and choices come from `training.spec`; this module holds no second copy of
defaults. Handlers receive the form's values as one list (in `SpecForm.inputs` order) and hand it
to `SpecForm.build`, so no handler takes a dozen positional UI values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from training.errors import UserError
from training.spec import (
    DEMO_PREFIX,
    HUB_PREFIX,
    JobSpec,
    SpecError,
    apply_overrides,
    describe_field,
    parse_field_map,
    parse_spec,
)
from training.web_paths import WebRoots, web_path_problems
from wizard import rewards_form

# Inputs that are not spec fields themselves but decide one (see SpecForm.overrides).
STOP_RULE, SOURCE_KIND, DEMO_NAME, UPLOADED_PATH, MIX_GENERAL, FIELD_MAP, HUB_DATASET = (
    "stop_rule",
    "source_kind",
    "demo_name",
    "uploaded_path",
    "mix_general",
    "field_map",
    "hub_dataset",
)
STOP_BY_EPOCHS, STOP_BY_STEPS = "Epochs", "Max steps"
# Step 3's "Try several values": the lists become the spec's sweep section (training/sweep.py)
SWEEP_STRATEGY, SWEEP_COUNT, SWEEP_CONFIRM = "sweep_strategy", "sweep_count", "sweep_confirm"
SWEPT_FIELDS = {"sweep_learning_rate": "hyperparameters.learning_rate", "sweep_lora_r": "method.lora_r"}
SOURCE_DEMO, SOURCE_UPLOAD, SOURCE_HUB = "Bundled demo", "Upload a file", "Hugging Face dataset"
GENERAL_DEMO = "demo:general"


def label_for(path: str) -> str:
    """A field's label, as the spec declares it (`Field(title=...)`); the inputs that are not fields say theirs."""
    try:
        return describe_field(path).label
    except (KeyError, AttributeError):
        return path.rpartition(".")[2].replace("_", " ").capitalize()


def value_at(spec: JobSpec, path: str) -> Any:
    value: Any = spec
    for part in path.split("."):
        value = getattr(value, part)
    return value


class SpecForm:
    def __init__(self, base: JobSpec, roots: WebRoots | None = None):
        self.base = base
        self.roots = roots  # set in the web UI: the only folders its paths may reach (training.web_paths)
        self.components: dict[str, gr.components.Component] = {}
        self.help_text: dict[str, str] = {}  # restored under a field once its problem is fixed
        # Optional numbers that must be at least 1: a browser shows the empty value as 0 and sends 0 back,
        # so 0 there means "not set"
        self.zero_means_unset: set[str] = set()

    # ---- drawing ----------------------------------------------------------------------------

    def field(self, path: str, component=None, slider: bool = False, **options) -> gr.components.Component:
        """A widget for one spec field, with label, help, bounds and choices from the spec.

        `component` supplies a ready-made widget instead (e.g. the model picker); `slider` draws a
        bounded number as a slider.
        """
        field = describe_field(path)
        value = value_at(self.base, path)
        common = {"label": options.pop("label", field.label), "info": field.help, "value": value, **options}
        if component is not None:
            widget = component
        elif slider:
            widget = gr.Slider(minimum=field.minimum, maximum=field.maximum, **common)
        elif field.kind == "choice":
            names = field.choice_labels or {}
            widget = gr.Dropdown(choices=[(names.get(c, c), c) for c in field.choices], **common)
        elif field.kind == "bool":
            widget = gr.Checkbox(**common)
        elif field.kind in ("int", "float"):
            # No minimum/maximum on the widget: gradio would refuse an out-of-range value with a toast
            # that names no field; the spec's check puts the message under the field instead.
            common["info"] = f"{field.help} {field.range_text()}".strip()
            if value is None and field.minimum is not None and field.minimum >= 1:
                self.zero_means_unset.add(path)
                common["info"] += " 0 or empty = not set."
            widget = gr.Number(precision=0 if field.kind == "int" else None, **common)
        else:
            widget = gr.Textbox(**common)
        self.components[path] = widget
        self.help_text[path] = common["info"]
        return widget

    def extra(self, key: str, component: gr.components.Component) -> gr.components.Component:
        self.components[key] = component
        return component

    @property
    def inputs(self) -> list[gr.components.Component]:
        return list(self.components.values())

    # ---- reading ----------------------------------------------------------------------------

    def overrides(self, values: Sequence[Any]) -> dict[str, Any]:
        fields = dict(zip(self.components, values, strict=True))
        stop_rule = fields.pop(STOP_RULE, STOP_BY_EPOCHS)
        # Epochs and max steps are one choice: the other one is cleared
        if stop_rule == STOP_BY_EPOCHS:
            fields["hyperparameters.max_steps"] = None
        else:
            fields["hyperparameters.epochs"] = None
        kind, demo, uploaded = fields.pop(SOURCE_KIND, None), fields.pop(DEMO_NAME, None), fields.pop(UPLOADED_PATH, "")
        hub_id = (fields.pop(HUB_DATASET, "") or "").strip()
        if kind == SOURCE_DEMO and demo:
            fields["data.source"] = DEMO_PREFIX + demo
        elif kind == SOURCE_UPLOAD:
            fields["data.source"] = uploaded or ""
        elif kind == SOURCE_HUB:
            fields["data.source"] = HUB_PREFIX + hub_id if hub_id else ""
        if MIX_GENERAL in fields:
            fields["data.mix_in"] = [GENERAL_DEMO] if fields.pop(MIX_GENERAL) else []
        if FIELD_MAP in fields:
            fields["data.field_map"] = parse_field_map(fields.pop(FIELD_MAP) or "")
        if SWEEP_STRATEGY in fields:
            fields["sweep"] = sweep_section(fields)
        if rewards_form.WEIGHT["match"] in fields:
            objective = fields.get("method.objective", self.base.method.objective)
            fields["method.rewards"] = rewards_form.rewards_from(fields, objective)
        for path in self.zero_means_unset & fields.keys():
            fields[path] = None if fields[path] == 0 else fields[path]
        if _clean(fields.get("data.validation_source")):  # separate validation data replaces the split, as in
            fields["data.validation_split"] = 0.0  # a spec file (the slider always sends a share)
        return {path: _clean(value) for path, value in fields.items()}

    def values_for(self, spec: JobSpec) -> list[Any]:
        """The form's values (in `inputs` order) that describe `spec`: the inverse of `overrides`."""
        source = spec.data.source
        indirect = {
            STOP_RULE: STOP_BY_STEPS if spec.hyperparameters.max_steps else STOP_BY_EPOCHS,
            SOURCE_KIND: SOURCE_DEMO
            if source.startswith(DEMO_PREFIX)
            else SOURCE_HUB
            if source.startswith(HUB_PREFIX)
            else SOURCE_UPLOAD,
            DEMO_NAME: source.removeprefix(DEMO_PREFIX) if source.startswith(DEMO_PREFIX) else None,
            HUB_DATASET: source.removeprefix(HUB_PREFIX) if source.startswith(HUB_PREFIX) else "",
            UPLOADED_PATH: "" if source.startswith((DEMO_PREFIX, HUB_PREFIX)) else source,
            MIX_GENERAL: GENERAL_DEMO in spec.data.mix_in,
            FIELD_MAP: field_map_text(spec.data.field_map),
            SWEEP_STRATEGY: spec.sweep.strategy if spec.sweep else "grid",
            SWEEP_COUNT: spec.sweep.count if spec.sweep else None,
            SWEEP_CONFIRM: False,
            **{
                key: list(spec.sweep.parameters.get(path, [])) if spec.sweep else []
                for key, path in SWEPT_FIELDS.items()
            },
            **dict(zip(rewards_form.KEYS, rewards_form.reward_values(spec), strict=True)),
        }
        return [indirect[key] if key in indirect else value_at(spec, key) for key in self.components]

    def left_out_note(self, spec: JobSpec) -> str:
        """What of `spec` the form's inputs cannot show, said when a spec is loaded into them."""
        left_out = [f"data.mix_in {source}" for source in spec.data.mix_in if source != GENERAL_DEMO]
        left_out += rewards_form.left_out(spec)
        return f" {', '.join(left_out)} cannot be shown in the wizard and was left out." if left_out else ""

    def build(self, values: Sequence[Any]) -> tuple[JobSpec | None, list[tuple[str, str]]]:
        """The spec these values describe, or every problem as (field path, message)."""
        overrides = {}
        try:
            overrides = self.overrides(values)
            spec = parse_spec(apply_overrides(self.base.model_dump(mode="json"), overrides))
            confined = web_path_problems(spec, self.roots) if self.roots else []
            return (None, confined) if confined else (spec, [])
        except SpecError as error:
            return None, rewards_form.place_problems(error.problems, overrides.get("method.rewards"))
        except UserError as error:
            return None, [("", str(error))]

    def show_problems(self, problems: list[tuple[str, str]], paths: Sequence[str]) -> list:
        """Updates that put each problem under its own field (or restore the field's help)."""
        by_path: dict[str, list[str]] = {}
        for path, message in problems:
            by_path.setdefault(owning_field(path, paths), []).append(message)
        updates = []
        for path in paths:
            messages = by_path.get(path)
            if messages:
                updates.append(gr.update(info="⚠ " + " ".join(messages)))
            else:
                updates.append(gr.update(info=self.help_text.get(path)) if path in self.help_text else gr.update())
        return updates


# Problems about a spec field that the form sets indirectly show on the input that decides it.
SHOWN_ON = {
    "data.source": SOURCE_KIND,
    "data.mix_in": MIX_GENERAL,
    "data.field_map": FIELD_MAP,
    "hyperparameters": STOP_RULE,
    "sweep": "sweep_learning_rate",
    "sweep.parameters": "sweep_learning_rate",
    "sweep.count": SWEEP_COUNT,
    "sweep.strategy": SWEEP_STRATEGY,
    "method.rewards": rewards_form.WEIGHT["match"],
}


def owning_field(path: str, paths: Sequence[str]) -> str:
    """The input a problem belongs to; a section-level problem shows on the section's first field."""
    path = SHOWN_ON.get(path, path)
    if path in paths:
        return path
    return next((p for p in paths if p.startswith(path + ".")), path)


def sweep_section(fields: dict[str, Any]) -> dict[str, Any] | None:
    """Pop the "try several values" inputs; the spec's sweep section, or None when no list was filled."""
    parameters = {path: list(fields.pop(key, None) or []) for key, path in SWEPT_FIELDS.items()}
    strategy, count = fields.pop(SWEEP_STRATEGY), fields.pop(SWEEP_COUNT, None)
    fields.pop(SWEEP_CONFIRM, None)
    parameters = {path: [_clean(v) for v in values] for path, values in parameters.items() if values}
    if not parameters:
        return None
    return {"parameters": parameters, "strategy": strategy, "count": _clean(count) or None}


def field_map_text(mapping: dict[str, str]) -> str:
    return ", ".join(f"{role}={column}" for role, column in mapping.items())


def _clean(value: Any) -> Any:
    """Gradio gives '' for an emptied text box and floats for whole numbers; the spec wants None and ints."""
    if value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def problems_markdown(problems: list[tuple[str, str]]) -> str:
    if not problems:
        return ""
    lines = "\n".join(f"- **{label_for(path) if path else 'Job'}**: {message}" for path, message in problems)
    return f"Please fix before going on:\n{lines}"
