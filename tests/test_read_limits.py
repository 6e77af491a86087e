"""Small inputs cannot take unbounded memory: rows and row sizes are limited before they are materialised,
specs in size and depth. Each case runs in a fresh process that reports its own peak memory, next to a
baseline process that imports the same modules (numbers in docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEAK_GROWTH_LIMIT_MB = 300  # each case took +2.8-3 GB before the limits

MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from training.data.read import read_rows
from training.errors import UserError
from training.spec import load_spec
started = time.perf_counter()
kind, path = sys.argv[1], Path(sys.argv[2])
message = ""
if kind == "rows":
    message = " | ".join(str(p) for p in read_rows(path).problems)
elif kind == "spec":
    try:
        load_spec(path)
    except UserError as error:
        message = str(error)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"message": message, "peak_mb": peak / 1024, "seconds": time.perf_counter() - started}}))
"""


def measure(kind: str, path: Path) -> dict:
    """The case's message, time and peak memory, and its peak above a baseline process that read a tiny
    valid input of the same kind (same imports), as growth_mb."""
    case = run_measure(kind, path)
    small = path.with_name(f"small.{'jsonl' if kind == 'rows' else 'yaml'}")
    small.write_text('{"prompt": "a", "completion": "b"}\n' if kind == "rows" else "name: small\n")
    case["growth_mb"] = case["peak_mb"] - run_measure(kind, small)["peak_mb"]
    return case


def run_measure(kind: str, path: Path) -> dict:
    code = MEASURE.format(root=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", code, kind, str(path)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("limits")
    rows = 3_000_000
    table = pa.table({"prompt": pa.repeat("hi", rows), "completion": pa.repeat("there", rows)})
    pq.write_table(table, folder / "many.parquet", compression="zstd", row_group_size=1_000_000)
    long_line = json.dumps({"prompt": "x" * (20 * 2**20), "completion": "y"})
    (folder / "long.jsonl").write_text('{"prompt": "a", "completion": "b"}\n' + long_line + "\n")
    (folder / "huge.yaml").write_text("name: big\ndata:\n  field_map:\n" + "    k: v\n" * (50 * 2**20 // 9))
    (folder / "deep.yaml").write_text("name: " + "[" * 20_000 + "]" * 20_000 + "\n")
    (folder / "digits.yaml").write_text("hyperparameters:\n  seed: " + "9" * 5000 + "\n")
    return folder


def test_a_tiny_parquet_of_3m_rows_is_refused_from_its_metadata(inputs):
    path = inputs / "many.parquet"
    assert path.stat().st_size < 64 * 1024  # the repeated values compress to almost nothing
    measured = measure("rows", path)
    assert "file.too_many_rows" in measured["message"] and "3,000,000 rows" in measured["message"]
    assert "data.max_rows" in measured["message"]
    assert measured["growth_mb"] < PEAK_GROWTH_LIMIT_MB, measured
    print(f"\n{path.stat().st_size / 1024:.0f} KB / 3M-row Parquet: {measured}")
    # With data.max_rows the first rows are read, batch by batch: the limit really helps now
    from training.data.read import read_rows

    started = time.perf_counter()
    assert len(read_rows(path, max_rows=10).rows) == 10 and time.perf_counter() - started < 10


def test_a_20_mb_line_is_refused_naming_the_limit(inputs):
    measured = measure("rows", inputs / "long.jsonl")
    assert "json.line_too_long" in measured["message"] and "line 2" in measured["message"], measured
    # a 20 MB file read as text costs ~2x its size; the +2.8 GB came from parsing it
    assert measured["growth_mb"] < PEAK_GROWTH_LIMIT_MB, measured
    print(f"\n20 MB JSONL line: {measured}")


@pytest.mark.parametrize(
    ("name", "words"), [("huge.yaml", "at most 256 KB"), ("deep.yaml", "nests deeper"), ("digits.yaml", "digits")]
)
def test_huge_deep_or_giant_number_specs_are_one_clear_error(inputs, name, words):
    measured = measure("spec", inputs / name)
    assert words in measured["message"], measured
    assert measured["growth_mb"] < PEAK_GROWTH_LIMIT_MB and measured["seconds"] < 10, measured
    print(f"\n{name}: {measured}")


def test_app_train_on_such_a_spec_prints_one_line_and_no_traceback(inputs):
    for name in ("huge.yaml", "deep.yaml", "digits.yaml"):
        result = subprocess.run(
            [sys.executable, "app.py", "train", str(inputs / name)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert result.returncode == 2, (name, result.stderr[-500:])
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
