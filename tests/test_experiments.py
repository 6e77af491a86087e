"""Experiments: a three-point sweep from the CLI, compare (CLI and the Runs tab), start a new run from one,
webhook notices (completed, failed, stopped, sweep finished; a dead webhook changes nothing), stop a sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from helpers import value_of

ROOT = Path(__file__).resolve().parents[1]
RATES = [1e-4, 3e-3, 3e-2]
# A webhook path shaped like a real one (Slack's carry their key in it); written in parts, so no committed
# string looks like a secret. It must never reach a job file, a log or the CLI's output.
CANARY = "hooks/T0CANARY/B0CANARY/" + "xoxb" + "Sweep0Canary0Secret0Value"


class Webhook:
    """A local HTTP endpoint that records every JSON notice posted to it; it can fail the first few."""

    def __init__(self, fail_first: int = 0):
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.fail_first = fail_first
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.fail_first > 0:
                    hook.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                hook.received.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/{CANARY}"

    def events(self, kind: str) -> list[dict]:
        return [body for body in self.received if body["event"] == kind]

    def close(self):
        self.server.shutdown()


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def sweep_spec(model_dir: Path | None, **overrides):
    """A three-point learning-rate sweep on the bundled demo data: on the embedded model (None) or another."""
    from training.spec import EMBEDDED_MODEL, JobSpec

    return JobSpec().with_overrides(
        {
            "name": "lr",
            "model.name_or_path": str(model_dir) if model_dir else EMBEDDED_MODEL,
            "data.validation_split": 0.2,
            "data.max_rows": 40,
            "hyperparameters.max_steps": 4,
            "hyperparameters.eval_steps": 2,
            "hyperparameters.batch_size": 4,
            "hyperparameters.precision": "fp32",
            "output.evaluate": False,
            "output.notify": "LATHE_TEST_WEBHOOK",
            "sweep": {"hyperparameters.learning_rate": RATES},
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def cli_sweep(tmp_path_factory, embedded_model_dir):
    """`app.py train` on a spec with a three-point sweep of the embedded model, notices going to a local webhook."""
    folder = tmp_path_factory.mktemp("sweep")
    spec_file = folder / "sweep.yaml"
    spec_file.write_text(sweep_spec(None).to_yaml())
    hook = Webhook()
    env = {**os.environ, "LATHE_TEST_WEBHOOK": hook.url, "LATHE_PUBLIC_URL": "http://lathe.example:7860"}
    done = subprocess.run(
        [sys.executable, "app.py", "--jobs-dir", str(folder / "jobs"), "train", str(spec_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    yield folder / "jobs", done, hook
    hook.close()


def losses(job_dir: Path, kind: str) -> list[float]:
    key = "loss" if kind == "progress" else "eval_loss"
    events = [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]
    return [e[key] for e in events if e["type"] == kind and e.get(key) is not None]


@pytest.mark.slow  # the sweep trains the embedded model
def test_a_sweep_queues_one_job_per_point_and_prints_the_comparison(cli_sweep):
    from training.sweep import sweeps

    jobs, done, _ = cli_sweep
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep_id, members), *others = sweeps(jobs).items()
    assert not others and len(members) == 3
    tried = [yaml.safe_load((m / "spec.yaml").read_text())["hyperparameters"]["learning_rate"] for m in members]
    assert tried == RATES  # each point's own complete spec, in point order
    assert all("sweep" not in yaml.safe_load((m / "spec.yaml").read_text()) for m in members)
    assert all(json.loads((m / "status.json").read_text())["state"] == "completed" for m in members)
    # The best run is the one with the lowest validation loss, computed here from the events themselves
    best = min(members, key=lambda m: min(losses(m, "eval")))
    header = next(line for line in done.stdout.splitlines() if all(m.name in line for m in members))
    assert f"{best.name} ★ best" in header
    assert f"best run by validation loss: {best.name}" in done.stdout
    assert f"compare --sweep {sweep_id}" in done.stdout


@pytest.mark.slow  # the sweep trains the embedded model
def test_app_compare_shows_only_the_differing_settings_and_marks_the_best(cli_sweep, capsys):
    import app

    jobs, _, _ = cli_sweep
    members = sorted(p for p in jobs.iterdir() if (p / "spec.yaml").is_file())
    assert app.main(["compare", str(members[0]), str(members[2])]) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert "hyperparameters.learning_rate" in rows and "0.0001" in rows["hyperparameters.learning_rate"]
    assert "hyperparameters.batch_size" not in rows and "model.name_or_path" not in table  # same in both
    final = [losses(m, "progress")[-1] for m in (members[0], members[2])]
    final_row = next(row for row in table.splitlines() if row.startswith("final training loss"))
    assert f"{min(final):.4g} ★" in final_row and final_row.count("★") == 1
    # The whole sweep by its id
    assert app.main(["--jobs-dir", str(jobs), "compare", "--sweep", members[0].name.rsplit("-", 1)[0]]) == 0
    whole = capsys.readouterr().out
    assert all(m.name in whole for m in members)


@pytest.mark.slow  # the sweep trains the embedded model
def test_each_job_and_the_sweep_send_one_notice_and_the_url_stays_secret(cli_sweep):
    jobs, done, hook = cli_sweep
    completed = hook.events("job_completed")
    assert sorted(body["job"] for body in completed) == sorted(
        p.name for p in jobs.iterdir() if p.is_dir() and (p / "spec.yaml").exists()
    )
    for body in completed:
        assert body["state"] == "completed" and body["metrics"]["final training loss"] > 0
        assert "final validation loss" in body["metrics"]
        assert body["link"] == f"http://lathe.example:7860/?job={body['job']}"
        assert body["text"] == body["content"] == body["message"]  # Slack, Discord, ntfy
    assert hook.headers[0]["X-Template"] == "yes"  # ntfy builds the message from the body's title and message
    (sweep,) = hook.events("sweep_finished")
    assert len(sweep["runs"]) == 3 and sweep["best"] in sweep["text"]
    # The URL (with its key) is nowhere: not in job files, logs, the sweep's files, nor the CLI's output
    for path in jobs.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in done.stdout + done.stderr


@pytest.mark.slow  # the sweep trains the embedded model
def test_the_runs_tab_overlays_curves_marks_the_best_and_starts_a_new_run_from_one(cli_sweep, tiny_model_dir):
    from gradio_client import Client

    from training.jobs import JobManager
    from training.spec import load_spec
    from training.sweep import sweeps
    from wizard.app import serve_wizard

    jobs, _, _ = cli_sweep
    manager = JobManager(jobs)
    demo = serve_wizard(manager, port=None, block=False, data_dirs=(str(tiny_model_dir.parent),))
    try:
        client = Client(demo.local_url, verbose=False)
        listed, sweep_choices = client.predict([], api_name="/list_runs")
        (sweep_id, members), *_ = sweeps(jobs).items()
        picked, train, validation, table, start_choices = client.predict(sweep_id, "step", api_name="/open_sweep")
        assert sorted(value_of(picked)) == sorted(m.name for m in members)
        points = value_of(train)["data"]
        columns = value_of(train)["columns"]
        runs_in_plot = {row[columns.index("run")] for row in points}
        assert runs_in_plot == {m.name for m in members}  # three curves on one plot
        assert {row[columns.index("run")] for row in value_of(validation)["data"]} == runs_in_plot
        best = min(members, key=lambda m: min(losses(m, "eval")))
        assert f"best run by validation loss: **{best.name}**" in table
        assert "hyperparameters.learning_rate" in table and "hyperparameters.batch_size" not in table
        assert value_of(start_choices) == best.name

        # By tokens seen: the same curves on another axis
        by_tokens, *_ = client.predict([m.name for m in members], "tokens", api_name="/compare_runs")
        tokens = [row[value_of(by_tokens)["columns"].index("tokens")] for row in value_of(by_tokens)["data"]]
        assert max(tokens) > 0

        # Start a new run from the best one: the wizard's values rebuild its spec field by field
        *values, message = client.predict(best.name, api_name="/start_from_run")
        assert message.startswith("✅")
        rebuilt = client.predict(*[value_of(v) for v in values], api_name="/gpu_preview")[3]
        original = load_spec(best / "spec.yaml")
        assert yaml.safe_load(rebuilt) == yaml.safe_load(original.to_yaml())
    finally:
        demo.close()


@pytest.mark.trains
def test_a_stopped_sweep_and_a_failed_job_send_their_notices(tmp_path, tiny_model_dir, monkeypatch):
    from training.compare import load_runs, to_text
    from training.jobs import JobManager
    from training.notify import post
    from training.sweep import start_sweep, stop_sweep

    hook = Webhook(fail_first=1)  # the first notice is retried after a 503
    monkeypatch.setenv("LATHE_TEST_WEBHOOK", hook.url)
    manager = JobManager(tmp_path / "jobs")
    try:
        long = sweep_spec(
            tiny_model_dir,
            **{
                "hyperparameters.max_steps": 400,
                "hyperparameters.eval_steps": None,
                "data.validation_split": 0.0,
                "sweep": {"method.lora_r": [4, 8]},
            },
        )
        sweep_id, (first, second) = start_sweep(manager, long)
        assert wait_until(lambda: manager.snapshot(first).step >= 1, timeout=180)
        stop_sweep(manager, sweep_id, requested_by="by the test")
        assert manager.wait(first, 120).state == "stopped" and manager.wait(second, 10).state == "stopped"
        assert wait_until(lambda: hook.events("sweep_finished"), timeout=20)
        # The first notice was refused once (fail_first), so its retry may arrive after the others
        assert wait_until(lambda: {body["job"] for body in hook.events("job_stopped")} == {first, second}, 30)

        broken = sweep_spec(tiny_model_dir, **{"sweep": None, "data.source": str(tmp_path / "missing.jsonl")})
        failed = manager.start(broken.with_overrides({"name": "broken"}))
        assert manager.wait(failed, 180).state == "failed"
        assert wait_until(lambda: hook.events("job_failed"), timeout=20)
        (notice,) = hook.events("job_failed")
        assert notice["job"] == failed and "missing.jsonl" in notice["cause"] and "Cause:" in notice["text"]

        # A stopped, a never-started and a failed job compare like any other
        text = to_text(load_runs([manager.snapshot(j).job_dir for j in (first, second, failed)]))
        assert "stopped" in text and "failed" in text and "method.lora_r" in text

        # A dead webhook gives up on its own within seconds (tests/test_trackers.py runs a job against one)
        took = time.monotonic()
        assert post("http://127.0.0.1:9/" + CANARY, {"event": "x"}, attempts=3, backoff=0.1) is False
        assert time.monotonic() - took < 5
    finally:
        manager.shutdown()
        hook.close()


def test_the_wizard_builds_a_sweep_multiplies_the_time_and_asks_before_more_than_12(tmp_path, tiny_model_dir):
    from gradio_client import Client
    from helpers import form_values

    from training.jobs import JobManager
    from wizard.app import serve_wizard

    manager = JobManager(tmp_path / "jobs")
    demo = serve_wizard(manager, port=None, block=False, data_dirs=(str(tiny_model_dir.parent),))
    try:
        client = Client(demo.local_url, verbose=False)
        base = {"Model": str(tiny_model_dir), "Stop after": "Max steps", "Max steps": 2, "Precision": "fp32"}
        two = {**base, "Learning rates to try": [1e-4, 3e-4]}
        *_, estimate, spec_yaml, _ = client.predict(
            *form_values(client, "/gpu_preview", **two), api_name="/gpu_preview"
        )
        sweep = yaml.safe_load(spec_yaml)["sweep"]
        assert sweep["parameters"] == {"hyperparameters.learning_rate": [1e-4, 3e-4]} and sweep["strategy"] == "grid"
        assert "**Sweep: 2 runs**" in estimate
        one_run = float(estimate.split(" × ")[1].split(" min")[0])
        assert f"**{2 * one_run:.1f} min** in all" in estimate
        # 4 x 4 = 16 runs: the preview says so, and Launch refuses until it is confirmed
        many = {**base, "Learning rates to try": [1e-5, 3e-5, 1e-4, 3e-4], "LoRA ranks to try": [4, 8, 16, 32]}
        estimate = client.predict(*form_values(client, "/gpu_preview", **many), api_name="/gpu_preview")[2]
        assert "**Sweep: 16 runs**" in estimate and "more than 12 runs" in estimate
        message, _ = client.predict(*form_values(client, "/launch", **many), api_name="/launch")
        assert "16 runs" in message and "Yes, queue more than 12 runs" in message
        assert manager.list_jobs() == []
    finally:
        demo.close()


@pytest.mark.trains
def test_a_webhook_typed_in_the_wizard_gets_the_notice_and_stays_out_of_the_spec(tmp_path, tiny_model_dir):
    from gradio_client import Client
    from helpers import form_values

    from training.jobs import JobManager
    from wizard.app import serve_wizard

    hook = Webhook()
    manager = JobManager(tmp_path / "jobs")
    demo = serve_wizard(manager, port=None, block=False, data_dirs=(str(tiny_model_dir.parent),))
    try:
        client = Client(demo.local_url, verbose=False)
        client.predict(hook.url, api_name="/set_webhook")  # kept in the server's session state
        settings = {"Job name": "hooked", "Model": str(tiny_model_dir), "Stop after": "Max steps", "Max steps": 400}
        message, job = client.predict(*form_values(client, "/launch", **settings), api_name="/launch")
        job_id = value_of(job)
        assert message.startswith("Launched"), message
        # At once, with a grace period longer than a busy machine's start-up: it ends stopped, before or at its
        # first step
        manager.stop(job_id, grace_seconds=600)
        ended = manager.wait(job_id, 600)
        assert ended.state == "stopped", ended.message
        assert wait_until(lambda: hook.received, timeout=20), ended
        assert hook.received[0]["job"] == job_id and hook.received[0]["event"] == "job_stopped"
        spec_text = (tmp_path / "jobs" / job_id / "spec.yaml").read_text()
        assert "notify: LATHE_NOTIFY_URL" in spec_text
        for path in (tmp_path / "jobs").rglob("*"):
            if path.is_file():
                assert CANARY.encode() not in path.read_bytes(), path
    finally:
        manager.shutdown()
        demo.close()
        hook.close()


def test_sweep_spec_rules():
    from training.errors import UserError
    from training.spec import JobSpec
    from training.sweep import expand

    grid = JobSpec().with_overrides(
        {"sweep": {"hyperparameters.learning_rate": [1e-4, 3e-4], "method.lora_r": [8, 16, 32]}}
    )
    points = expand(grid)
    assert len(points) == 6 and {(p.spec.hyperparameters.learning_rate, p.spec.method.lora_r) for p in points} == {
        (lr, r) for lr in (1e-4, 3e-4) for r in (8, 16, 32)
    }
    assert [p.spec.name for p in points][:2] == ["my-job-1of6", "my-job-2of6"]
    random = grid.with_overrides({"sweep": {**grid.sweep.model_dump(), "strategy": "random", "count": 3}})
    assert [p.overrides for p in expand(random)] == [p.overrides for p in expand(random)]  # same seed, same points
    assert len(expand(random)) == 3
    with pytest.raises(UserError, match="sweep.parameters.hyperparameters.learning_rat: not a field"):
        JobSpec().with_overrides({"sweep": {"hyperparameters.learning_rat": [1e-4]}})
    with pytest.raises(UserError, match="hyperparameters.learning_rate=5.0: hyperparameters.learning_rate"):
        JobSpec().with_overrides({"sweep": {"hyperparameters.learning_rate": [1e-4, 5.0]}})
    with pytest.raises(UserError, match="sweep.count: a random sweep needs a count"):
        JobSpec().with_overrides({"sweep": {"parameters": {"method.lora_r": [8, 16]}, "strategy": "random"}})
    with pytest.raises(UserError, match="output.notify: name an environment variable") as caught:
        JobSpec().with_overrides({"output.notify": "https://hooks.example/" + CANARY})
    assert CANARY not in str(caught.value)


@pytest.mark.slow  # the sweep trains the embedded model
def test_in_a_browser_the_runs_tab_opens_the_sweep_and_starts_a_run_from_the_best(cli_sweep, tmp_path):
    """A person picks the sweep in the Runs tab, sees both plots and the best run, and starts from it."""
    import re
    import shutil

    from training.jobs import JobManager
    from wizard.app import serve_wizard

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium); `make test` installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    jobs, _, _ = cli_sweep
    members = sorted(p for p in jobs.iterdir() if (p / "sweep.json").is_file())
    best = min(members, key=lambda m: min(losses(m, "eval")))
    demo = serve_wizard(JobManager(jobs), port=None, block=False)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(demo.local_url)
            page.get_by_role("tab", name="Runs").click()
            page.get_by_label("Or open a sweep").click()
            page.get_by_role("option", name=re.compile(r"lr-sweep-")).first.click()
            page.get_by_text(f"best run by validation loss: {best.name}").wait_for()
            try:  # training and validation loss, each with the three runs overlaid
                page.locator(".vega-embed").locator("visible=true").nth(1).wait_for()
            finally:
                # docs/screenshots only when asked (`make screenshots`), as tests/test_browser.py does
                shots = Path(os.environ.get("LATHE_SCREENSHOTS") or tmp_path)
                page.screenshot(path=shots / "7-runs.png", full_page=True)
            assert page.get_by_text("hyperparameters.learning_rate").count() >= 1
            page.get_by_role("button", name="Start a new run from this one").click()
            page.get_by_text("1 · Model & token").wait_for()
            assert page.get_by_label("Job name").input_value() == load_name(best)
            browser.close()
    finally:
        demo.close()


def load_name(job_dir: Path) -> str:
    return yaml.safe_load((job_dir / "spec.yaml").read_text())["name"]
