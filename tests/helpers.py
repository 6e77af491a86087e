"""Small helpers shared by tests."""

import time


def wait_for(predicate, timeout: float = 180.0, interval: float = 0.2) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def make_adapter_job(job_dir, model_dir, overrides: dict | None = None, seed: int = 1):
    """A finished-looking LoRA job folder over `model_dir`: spec.yaml and an adapter/ whose lora_B is
    non-zero, so the tuned model really answers differently from the base (PEFT starts B at zero)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.spec import JobSpec

    job_dir.mkdir(parents=True, exist_ok=True)
    spec = JobSpec().with_overrides({"name": job_dir.name, "model.name_or_path": str(model_dir), **(overrides or {})})
    (job_dir / "spec.yaml").write_text(spec.to_yaml())
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=1.0)
    model.save_pretrained(job_dir / "adapter")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(job_dir / "adapter")
    return job_dir


def form_values(client, endpoint: str, **by_label) -> list:
    """The wizard form's values in endpoint order: its defaults, with some fields changed by label."""
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]["parameters"]
    labels = [p["label"] for p in parameters]
    assert set(by_label) <= set(labels), set(by_label) - set(labels)
    return [by_label.get(p["label"], p.get("parameter_default")) for p in parameters]


def value_of(output):
    """gradio_client hands back a component update as a dict; the value is inside it."""
    return output["value"] if isinstance(output, dict) and "__type__" in output else output
