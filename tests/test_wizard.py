"""The app serves a page, and shows jobs from the jobs folder."""

import urllib.request

from gradio_client import Client

from training.jobs import JobManager
from wizard.app import launch


def test_the_app_serves_a_page_listing_jobs(tmp_path):
    job = tmp_path / "demo-job"
    job.mkdir()
    (job / "spec.yaml").write_text("name: demo-job\n")
    (job / "status.json").write_text('{"state": "completed"}')
    demo = launch(JobManager(tmp_path), port=None, block=False)  # None: gradio picks a free port
    try:
        html = urllib.request.urlopen(demo.local_url, timeout=30).read().decode()
        assert "Lathe" in html
        client = Client(demo.local_url, verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert endpoints
        text = client.predict(api_name=list(endpoints)[0])
        assert "demo-job" in text and "completed" in text
    finally:
        demo.close()
