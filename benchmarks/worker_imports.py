"""How long a job's worker takes to import the training stack, with and without the optional packages its
job does not use (training/worker.py `hide_unused_packages`), in fresh processes alternated in one run.

    python benchmarks/worker_imports.py [--runs 3]

The job is a LoRA job on the embedded model reporting to TensorBoard only, so bitsandbytes, W&B, MLflow
and Trackio are hidden. The last line is `ratio hidden/all: X`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMPORT = """
import sys
if sys.argv[1] == "hidden":
    from training.spec import load_spec
    from training.worker import hide_unused_packages
    hide_unused_packages(load_spec(sys.argv[2]))
import training.engine
"""


def timed(mode: str, spec_file: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORT, mode, str(spec_file)], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    from training.cpu_tuning import cpu_kind
    from training.spec import JobSpec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    print(f"CPU: {cpu_kind()}")
    with tempfile.TemporaryDirectory() as folder:
        spec_file = Path(folder) / "spec.yaml"
        spec_file.write_text(JobSpec().to_yaml())
        timed("all", spec_file)  # the first import warms the disk cache for both
        times: dict[str, list[float]] = {"all": [], "hidden": []}
        for _ in range(runs):
            for mode in times:
                times[mode].append(timed(mode, spec_file))
    for mode, values in times.items():
        print(f"import training.engine, {mode:>6}: " + ", ".join(f"{v:.2f}" for v in values) + " s")
    print(f"ratio hidden/all: {statistics.median(times['hidden']) / statistics.median(times['all']):.2f}")


if __name__ == "__main__":
    main()
