"""A person in a real browser: headless Chromium clicks through the five steps with the defaults,
launches, sees the loss plotted, reloads and finds the same job, stops it, and chats with it.

Screenshots of each step go to a temporary folder; `make screenshots` writes them to docs/screenshots/
(the README shows them) by setting LATHE_SCREENSHOTS.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from training.jobs import JobManager
from wizard.app import serve_wizard

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CANARY = "hf_" + "canaryBROWSERtokenDoNotLeak987654321"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():  # `make test` installs it; say so loudly rather than pass silently
    pytest.skip(
        "Chromium is not installed (apt-get install chromium); `make test` installs it", allow_module_level=True
    )

sync_api = pytest.importorskip("playwright.sync_api")


def click_visible(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).locator("visible=true").first.click()


def test_click_through_launch_reload_and_chat(tmp_path, embedded_model_dir):
    shots = Path(os.environ.get("LATHE_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    demo = serve_wizard(JobManager(tmp_path / "jobs"), port=None, block=False)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(demo.local_url)

            # 1 · Model & token
            page.get_by_text("1 · Model & token").wait_for()
            page.get_by_label("Hugging Face token").fill(CANARY)
            click_visible(page, "Check access")
            page.get_by_text("no token and no network needed").wait_for()
            page.screenshot(path=shots / "1-model.png", full_page=True)
            click_visible(page, "Next")

            # 2 · Dataset & task, with the preview of what the model reads
            page.get_by_text("2 · Dataset & task").wait_for()
            click_visible(page, "Check the data and show how the model sees it")
            page.locator("pre.lathe-example mark").first.wait_for()
            assert "<|im_start|>assistant" in page.locator("pre.lathe-example").first.inner_text()
            page.screenshot(path=shots / "2-data.png", full_page=True)
            click_visible(page, "Next")

            # 3 · Hyperparameters, then 4 · GPU preview with the spec
            page.get_by_text("3 · Hyperparameters").wait_for()
            page.screenshot(path=shots / "3-hyperparameters.png", full_page=True)
            # A run long enough to still be training after the reload below, however slow the machine
            page.get_by_role("radio", name="Max steps").check()
            page.get_by_role("spinbutton", name="Max steps").fill("600")
            click_visible(page, "Next")
            page.get_by_text("4 · GPU preview").wait_for()
            page.get_by_text(re.compile(r"~\d+ optimizer steps")).wait_for()
            page.get_by_text(re.compile(r"Fits on CPU .* GB needed")).first.wait_for()  # the memory estimate
            page.screenshot(path=shots / "4-preview.png", full_page=True)
            click_visible(page, "Next")

            # 5 · Launch & monitor: the loss reaches the plot
            click_visible(page, "Launch")
            page.get_by_text("Launched").wait_for()
            # Step 2 or later: the page polls once a second, so on a busy machine it may skip a step
            page.get_by_text(re.compile(r"step (?:[2-9]|[1-9]\d+) of")).first.wait_for(timeout=180_000)
            page.locator(".vega-embed").first.wait_for()
            page.screenshot(path=shots / "5-monitor.png", full_page=True)

            # A reload re-attaches to the same running job
            page.reload()
            page.get_by_text(re.compile(r"step \d+ of \d+")).locator("visible=true").first.wait_for()
            page.get_by_text("my-first-job-").first.wait_for()
            page.locator("progress").wait_for()

            # Stop keeps what was learned; the stopped job opens in the chat tab
            click_visible(page, "Stop (saves a checkpoint first)")
            click_visible(page, "Yes, stop it")  # Stop asks first: any open page can stop any job
            page.get_by_text("— stopped").wait_for(timeout=120_000)
            page.reload()
            page.get_by_role("tab", name="Chat").click()
            click_visible(page, "Load")
            page.get_by_text("Loaded").wait_for(timeout=120_000)
            page.get_by_label("Message").fill("Who are you?")
            click_visible(page, "Send")
            try:
                page.get_by_text("tokens/s").first.wait_for(timeout=120_000)
            except Exception:
                page.screenshot(path="/tmp/browser-failure.png", full_page=True)
                raise
            page.get_by_text("base:").wait_for(timeout=120_000)
            page.screenshot(path=shots / "6-chat.png", full_page=True)

            storage = page.evaluate("JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
            assert CANARY not in storage
            assert CANARY not in page.content()
            browser.close()
    finally:
        demo.close()
