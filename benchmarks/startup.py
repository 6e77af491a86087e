"""How long `python app.py` takes to serve its page, next to how long importing TRL's trainer takes.

The app must not import the training stack at start-up (it is imported when first needed), so
its start-up should be well under the cost of importing trl.

    python benchmarks/startup.py [--runs 3]

The last line is `startup_s: X` (the median over runs).
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
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
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
