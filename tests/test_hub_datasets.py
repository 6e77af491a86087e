"""Hub datasets through the real `datasets` + `huggingface_hub` clients, against the local fake Hub.

Each case runs `python app.py check-data hub:…` in a fresh process with HF_ENDPOINT pointed at the
fake server (both libraries read it at import), a fresh cache, and the token only in HF_TOKEN.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import GATED_DATASET, INVALID_TOKEN, PUBLIC_DATASET, VALID_TOKEN

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["fake_hub"]


def check_data(hub, tmp_path, source: str, *extra: str, token: str | None = None, cwd=ROOT) -> tuple[int, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf-home"),  # fresh caches: every case really asks the server
        HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
        LATHE_CACHE_DIR=os.environ["LATHE_CACHE_DIR"],
    )
    if token:
        env["HF_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "check-data", source, *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_public_hub_dataset_is_checked_and_rendered(fake_hub_server, tmp_path, embedded_model_dir):
    code, out = check_data(fake_hub_server, tmp_path, f"hub:{PUBLIC_DATASET}")
    assert code == 0, out
    assert f"hub:{PUBLIC_DATASET}: 6 rows read, format chat messages" in out and "usable: yes" in out
    assert all(auth is None for _, auth in fake_hub_server.requests)  # no token given, none sent

    code, out = check_data(fake_hub_server, tmp_path, f"hub:{PUBLIC_DATASET}", "--split", "validation")
    assert code == 0 and "1 rows read" in out, out


def test_a_hub_source_is_read_from_the_hub_even_where_a_folder_has_its_name(
    fake_hub_server, tmp_path, embedded_model_dir
):
    """`hub:owner/name` means the Hub: a folder of that name beside the app is never read instead (which
    would train on other data without a word, and in the web UI would read the server's disk)."""
    here = tmp_path / "app-folder"
    (here / PUBLIC_DATASET).mkdir(parents=True)
    (here / PUBLIC_DATASET / "train.jsonl").write_text('{"prompt": "local", "completion": "row"}\n' * 2)
    code, out = check_data(fake_hub_server, tmp_path, f"hub:{PUBLIC_DATASET}", cwd=here)
    assert code == 0 and "6 rows read" in out, out
    assert any(PUBLIC_DATASET in path for path, _ in fake_hub_server.requests)


@pytest.mark.parametrize(
    ("source", "token", "rule"),
    [
        (f"hub:{GATED_DATASET}", None, "hub.gated"),
        ("hub:lathe-tests/no-such-dataset", None, "hub.not_found"),
        (f"hub:{PUBLIC_DATASET}", INVALID_TOKEN, "hub.token"),
    ],
    ids=["gated-without-token", "missing", "bad-token"],
)
def test_hub_failures_name_the_field_and_the_fix(fake_hub_server, tmp_path, source, token, rule):
    code, out = check_data(fake_hub_server, tmp_path, source, token=token)
    assert code == 1 and f"[{rule}]" in out, out
    assert "Traceback" not in out
    if token:
        assert token not in out


def test_a_gated_dataset_loads_with_an_approved_token_and_the_token_is_never_printed(
    fake_hub_server, tmp_path, embedded_model_dir
):
    code, out = check_data(fake_hub_server, tmp_path, f"hub:{GATED_DATASET}", token=VALID_TOKEN)
    assert code == 0 and "6 rows read" in out, out
    assert VALID_TOKEN not in out
    assert any(auth == f"Bearer {VALID_TOKEN}" for _, auth in fake_hub_server.requests)


def test_an_unknown_split_is_named(fake_hub_server, tmp_path):
    code, out = check_data(fake_hub_server, tmp_path, f"hub:{PUBLIC_DATASET}", "--split", "nope")
    assert code == 1 and "[hub.split]" in out and "data.hub_split" in out, out
