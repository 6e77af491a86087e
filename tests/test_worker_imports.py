"""A worker hides the optional packages its job does not use (bitsandbytes, the trackers it does not report
to), so the training stack starts without importing them; a job that needs one keeps it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from training.worker import unused_packages

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
from training.spec import load_spec
from training.worker import hide_unused_packages
hidden = hide_unused_packages(load_spec(sys.argv[1]))
import transformers.utils, peft, trl, training.engine  # the stack imports cleanly with them hidden
print(json.dumps({"hidden": hidden, "bnb": transformers.utils.is_bitsandbytes_available(),
                  "loaded": sorted(name for name in ("bitsandbytes", "wandb", "mlflow", "trackio")
                                   if sys.modules.get(name) is not None)}))
"""


def test_a_lora_job_without_trackers_imports_neither_bitsandbytes_nor_a_tracker(tiny_spec, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(tiny_spec.to_yaml())
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(spec_file)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(seen["hidden"]) == {"bitsandbytes", "wandb", "mlflow", "trackio"}
    assert seen["bnb"] is False and seen["loaded"] == []  # the libraries saw them as not installed


def test_qlora_a_quantized_folder_and_a_chosen_tracker_keep_theirs(tiny_spec, tiny_model_dir, tmp_path):
    assert "bitsandbytes" not in unused_packages(tiny_spec.with_overrides({"method.type": "qlora"}))

    quantized = tmp_path / "quantized-model"
    quantized.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    (quantized / "config.json").write_text(json.dumps(config | {"quantization_config": {"load_in_4bit": True}}))
    assert "bitsandbytes" not in unused_packages(tiny_spec.with_overrides({"model.name_or_path": str(quantized)}))
    hub = tiny_spec.with_overrides({"model.name_or_path": "someone/not-downloaded-yet"})
    assert "bitsandbytes" not in unused_packages(hub)  # cannot be checked before it is downloaded

    tracked = unused_packages(tiny_spec.with_overrides({"output.report_to": ["tensorboard", "mlflow"]}))
    assert "mlflow" not in tracked and {"wandb", "trackio", "bitsandbytes"} <= set(tracked)
