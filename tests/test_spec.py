import pytest
import yaml
from pydantic import ValidationError

from training.errors import UserError
from training.spec import JobSpec, apply_overrides, field_help, load_spec, parse_override, parse_spec


def test_default_spec_is_valid_and_round_trips_through_yaml(tmp_path):
    spec = JobSpec()
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec


def test_spec_is_frozen():
    with pytest.raises(ValidationError, match="frozen"):
        JobSpec().name = "other"  # type: ignore[misc]


def test_unknown_field_is_named():
    with pytest.raises(UserError, match=r"hyperparameters\.learnign_rate: unknown field"):
        parse_spec({"hyperparameters": {"learnign_rate": 1e-4}})


def test_out_of_range_value_names_the_field_and_bound():
    with pytest.raises(UserError, match=r"hyperparameters\.learning_rate: .*less than or equal to 1"):
        parse_spec({"hyperparameters": {"learning_rate": 5}})


def test_epochs_and_max_steps_both_set_is_refused_with_the_fix():
    with pytest.raises(UserError, match="epochs and max_steps are both set. Choose one"):
        parse_spec({"hyperparameters": {"epochs": 2, "max_steps": 10}})


def test_every_problem_is_reported_at_once():
    with pytest.raises(UserError) as caught:
        parse_spec(
            {
                "name": "bad name!",
                "data": {"validation_split": 0.9},
                "method": {"type": "dora", "target_modules": "q proj"},
                "hyperparameters": {"batch_size": 0},
                "surprise": True,
            }
        )
    text = str(caught.value)
    for path in (
        "name:",
        "data.validation_split:",
        "method.type:",
        "method.target_modules:",
        "hyperparameters.batch_size:",
        "surprise:",
    ):
        assert path in text, path


def test_cross_section_check_names_both_fields():
    with pytest.raises(UserError, match=r"hyperparameters\.eval_steps is set but data\.validation_split is 0"):
        parse_spec({"data": {"validation_split": 0}, "hyperparameters": {"eval_steps": 5}})


def test_setting_max_steps_by_override_clears_epochs():
    spec = JobSpec().with_overrides({"hyperparameters.max_steps": 20})
    assert spec.hyperparameters.max_steps == 20 and spec.hyperparameters.epochs is None
    back = spec.with_overrides({"hyperparameters.epochs": 2})
    assert back.hyperparameters.epochs == 2 and back.hyperparameters.max_steps is None


def test_override_values_are_read_as_yaml():
    # YAML 1.1 reads 1e-4 as text; the spec still takes it as the number a person meant
    spec = JobSpec().with_overrides(dict([parse_override("hyperparameters.learning_rate=1e-4")]))
    assert spec.hyperparameters.learning_rate == 1e-4
    assert parse_override("output.merge_adapter=true") == ("output.merge_adapter", True)
    assert parse_override("hyperparameters.eval_steps=null") == ("hyperparameters.eval_steps", None)
    with pytest.raises(UserError, match="section.field=value"):
        parse_override("no-equals-sign")


def test_override_into_a_scalar_is_refused():
    with pytest.raises(UserError, match="not a section"):
        apply_overrides({"name": "x"}, {"name.first": 1})


def test_target_modules_accepts_presets_and_lists():
    assert (
        JobSpec().with_overrides({"method.target_modules": "q_proj, v_proj"}).method.target_modules == "q_proj,v_proj"
    )
    assert JobSpec().with_overrides({"method.target_modules": "attention"}).method.target_modules == "attention"


def test_no_field_can_hold_a_token():
    paths = [path for path, _ in field_help()]
    assert not [p for p in paths if "token" in p.lower() and "tokens" not in p.lower()]
    with pytest.raises(UserError, match="unknown field"):
        parse_spec({"model": {"token": "hf_secret"}})


def test_every_field_has_help():
    assert all(text for _, text in field_help())


def test_spec_yaml_is_plain_data():
    data = yaml.safe_load(JobSpec().to_yaml())
    assert set(data) == {"name", "model", "data", "method", "hyperparameters", "output"}


def test_a_spec_naming_only_max_steps_stops_by_steps():
    spec = parse_spec({"hyperparameters": {"max_steps": 5}})
    assert spec.hyperparameters.max_steps == 5 and spec.hyperparameters.epochs is None


def test_the_stopping_rule_is_reported_even_beside_a_bad_field():
    with pytest.raises(UserError) as caught:
        parse_spec({"hyperparameters": {"learning_rate": 5, "epochs": None}})
    assert "learning_rate" in str(caught.value) and "neither epochs nor max_steps" in str(caught.value)


def test_fsdp_is_refused_where_it_cannot_run_each_with_its_field_and_fix():
    from training.spec import SpecError, parse_spec

    data = JobSpec().model_dump(mode="json")
    data["hyperparameters"]["distributed"] = "fsdp"  # with the default single device
    data["method"].update(type="qlora", objective="dpo")
    data["output"]["merge_adapter"] = True
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    fields = [path for path, _ in caught.value.problems]
    assert fields == ["hyperparameters.distributed", "method.type", "method.objective", "output.merge_adapter"]
    assert "Set hyperparameters.devices to 2 or more, or distributed to ddp" in str(caught.value)

    fine = JobSpec().with_overrides(
        {"hyperparameters.devices": 2, "hyperparameters.distributed": "fsdp", "method.type": "full"}
    )
    assert fine.hyperparameters.distributed == "fsdp"
