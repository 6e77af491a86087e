"""How long `python app.py check-data` takes on a 100 MB JSONL file, and its peak memory, against the
targets (20 s, 2 GB): the ratios below 1.0 mean the target is met.

    python benchmarks/check_data_size.py [--mb 100]

It writes a chat-format file of varied rows (a few with problems, so the report has work to do),
runs the check in a fresh process (as the CLI does) and reads that process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_GB = 20.0, 2.0
WORDS = [
    "the",
    "a",
    "river",
    "model",
    "data",
    "train",
    "answer",
    "question",
    "light",
    "stone",
    "music",
    "city",
    "garden",
    "number",
    "simple",
]


def write_file(path: Path, megabytes: int) -> int:
    rng, rows, size = random.Random(0), 0, 0
    with path.open("w") as out:
        while size < megabytes * 2**20:
            question = " ".join(rng.choices(WORDS, k=rng.randint(5, 30))) + "?"
            answer = " ".join(rng.choices(WORDS, k=rng.randint(20, 200))) + "."
            row = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
            line = json.dumps(row) if rows % 50_000 != 7 else "{broken"  # a few bad lines to report
            out.write(line + "\n")
            size += len(line) + 1
            rows += 1
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.jsonl"
        rows = write_file(path, args.mb)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "app.py", "check-data", str(path)], cwd=ROOT, capture_output=True, text=True
        )
        seconds = time.monotonic() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    print("\n".join(result.stdout.splitlines()[:4]))
    print(f"file: {args.mb} MB, {rows:,} rows; check-data exit {result.returncode}")
    print(f"seconds: {seconds:.1f} (target {TARGET_SECONDS:.0f}) ratio {seconds / TARGET_SECONDS:.2f}")
    print(f"peak_gb: {peak_gb:.2f} (target {TARGET_GB:.0f}) ratio {peak_gb / TARGET_GB:.2f}")
    return 0 if seconds <= TARGET_SECONDS and peak_gb <= TARGET_GB else 1


if __name__ == "__main__":
    sys.exit(main())
