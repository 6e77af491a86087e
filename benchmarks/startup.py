"""How long `python app.py` takes to serve its page, next to how long importing TRL's trainer takes;
and how long `python app.py check-data` takes on a three-row file, next to loading the tokenizer the
way it did before (AutoTokenizer, which imports transformers and torch).

The app must not import the training stack at start-up (it is imported when first needed), so
its start-up should be well under the cost of importing trl; a check should answer in seconds
(target: 3 s for three rows, once the embedded model is converted).

    python benchmarks/startup.py [--runs 3] [--check-data-only]

The last lines are `check_data_s: X` and `startup_s: Y` (medians over runs).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_to_serve(jobs_dir: str) -> float:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--jobs-dir", jobs_dir, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.monotonic() - started < 120:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200:
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the app did not serve its page within 120 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def time_to_import(statement: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


THREE_ROWS = [("Who are you?", "I am Juniper."), ("Capital of France?", "Paris."), ("Two plus two?", "Four.")]
CHECK_TARGET_S = 3.0


def time_check_data(folder: str, runs: int) -> None:
    """A fresh `app.py check-data` on three rows, beside a fresh process that only loads the tokenizer the old way."""
    import json

    from training.models import embedded_model_dir

    model_dir = str(embedded_model_dir())  # converted once here, so no run below pays for it
    rows = Path(folder) / "three.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
            for q, a in THREE_ROWS
        )
    )
    check, old = [], []
    for _ in range(runs):  # alternated, so the load of a shared machine falls on both
        check.append(time_to_import(f"import sys, app; sys.argv[1:] = ['check-data', {str(rows)!r}]; app.main()"))
        old.append(
            time_to_import(f"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained({model_dir!r})")
        )
    print("check-data, three rows: " + ", ".join(f"{s:.2f}" for s in check) + " s")
    print("old tokenizer load alone (AutoTokenizer): " + ", ".join(f"{s:.2f}" for s in old) + " s")
    print(f"ratio check-data/old-tokenizer-load: {statistics.median(check) / statistics.median(old):.2f}")
    print(f"check_data_s: {statistics.median(check):.2f} (target {CHECK_TARGET_S:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check-data-only", action="store_true", help="Time only the data check.")
    options = parser.parse_args()
    runs = options.runs
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as folder:
        time_check_data(folder, runs)
    if options.check_data_only:
        return
    with tempfile.TemporaryDirectory() as jobs_dir:
        serve = [time_to_serve(jobs_dir) for _ in range(runs)]
    # `import trl` alone is lazy; the trainer class pulls in torch, transformers and the rest
    trl = [time_to_import("from trl import SFTTrainer") for _ in range(runs)]
    print("serve page: " + ", ".join(f"{s:.2f}" for s in serve) + " s")
    print("from trl import SFTTrainer: " + ", ".join(f"{s:.2f}" for s in trl) + " s")
    print(f"ratio serve/import-trainer: {statistics.median(serve) / statistics.median(trl):.2f}")
    print(f"startup_s: {statistics.median(serve):.2f}")


if __name__ == "__main__":
    main()
