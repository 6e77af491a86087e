from training.presets import example_jobs, model_catalog, recipes
from training.spec import EMBEDDED_MODEL, JobSpec


def test_every_catalog_model_builds_a_valid_spec():
    for entry in model_catalog():
        spec = entry.apply(JobSpec())
        assert spec.model.name_or_path == entry.id


def test_catalog_has_one_default_the_embedded_model_and_the_well_known_models():
    catalog = model_catalog()
    assert [m.id for m in catalog if m.default] == [EMBEDDED_MODEL]
    ids = {m.id for m in catalog}
    for expected in (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "meta-llama/Llama-3.2-1B-Instruct",
        "meta-llama/Llama-3.1-8B-Instruct",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "google/gemma-2-2b-it",
        "meta-llama/Llama-2-7b-chat-hf",
    ):
        assert expected in ids
    assert all(m.licence and m.params_b > 0 for m in catalog)
    assert {m.id for m in catalog if m.gated} >= {"meta-llama/Llama-3.1-8B-Instruct", "google/gemma-2-2b-it"}


def test_every_recipe_builds_a_valid_spec_on_every_model():
    for entry in model_catalog():
        for recipe in recipes().values():
            assert recipe.apply(entry.apply(JobSpec())) is not None


def test_recipes_are_the_three_named_in_the_wizard():
    assert set(recipes()) == {"quick", "balanced", "thorough"}


def test_quickstart_is_the_embedded_model_on_the_identity_demo():
    spec = example_jobs()["quickstart"]
    assert spec.model.name_or_path == EMBEDDED_MODEL
    assert spec.data.source == "demo:identity"
    assert (spec.data.assistant_name, spec.data.assistant_maker) == ("Juniper", "Lathe Labs")
    assert spec.method.type == "lora"
