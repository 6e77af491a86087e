"""Chat settings on a CPU follow the hardware and what else runs, not a CPU flag alone."""

from __future__ import annotations

import json

import pytest

from training import cpu_tuning


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LATHE_CHAT_DTYPE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("training", "load", "expected"),
    [(False, 0.2, 4), (True, 0.2, 3), (False, 9.0, 3)],
    ids=["idle: every core", "a job trains: one core left to it", "other work on every core: one left"],
)
def test_threads_follow_what_else_runs(isolated_cache, monkeypatch, training, load, expected):
    monkeypatch.setattr(cpu_tuning, "usable_cores", lambda: 4)
    monkeypatch.setattr(cpu_tuning, "training_running", lambda: training)
    monkeypatch.setattr(cpu_tuning.os, "getloadavg", lambda: (load, load, load))
    assert cpu_tuning.decode_threads() == expected


def test_a_running_worker_is_seen(tmp_path):
    import subprocess
    import sys

    cpu_tuning._busy = None
    # A stand-in whose command line is a worker's: `python -m training.worker JOB_DIR`
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "training.worker", "x"])
    try:
        assert cpu_tuning.training_running()
    finally:
        fake.kill()
        fake.wait()
        cpu_tuning._busy = None


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [(2.0, 1.0, "bf16"), (1.0, 3.0, "fp32")])
def test_the_dtype_is_the_faster_one_measured_and_the_probe_runs_once(
    isolated_cache, monkeypatch, fp32, bf16, expected
):
    calls = []

    def probe():
        calls.append(1)
        return {"fp32": fp32, "bf16": bf16}

    monkeypatch.setattr(cpu_tuning, "probe_dtypes", probe)
    monkeypatch.setattr(cpu_tuning, "cpu_has_fast_bf16", lambda: True)  # the flag alone would say bf16
    assert cpu_tuning.chat_dtype_name()[0] == expected
    dtype, why = cpu_tuning.chat_dtype_name()
    assert dtype == expected and "before" in why and len(calls) == 1  # cached for this CPU kind
    saved = json.loads((isolated_cache / "cpu_tuning.json").read_text())
    assert [entry["dtype"] for entry in saved.values()] == [expected]


def test_the_person_can_force_the_dtype(isolated_cache, monkeypatch):
    import torch

    monkeypatch.setattr(cpu_tuning, "probe_dtypes", lambda: pytest.fail("a forced dtype needs no probe"))
    monkeypatch.setenv("LATHE_CHAT_DTYPE", "fp32")
    assert cpu_tuning.chat_dtype() == torch.float32


def test_the_real_probe_times_both_dtypes(isolated_cache):
    times = cpu_tuning.probe_dtypes()
    assert set(times) == {"fp32", "bf16"} and all(0 < t < 60 for t in times.values())
    assert "cores" in cpu_tuning.cpu_kind()
