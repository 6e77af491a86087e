"""The Results tab: where a finished job's model is, is it any good, and how to take it away.

For the job picked: the folder and what is in it, the evaluation (base vs tuned, computed when the
job finished, or now with "Evaluate"), zip downloads of the adapter and of a merged model, the
"Push to the Hub" panel, and the commands that reproduce the run.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from training import jobdir
from training.errors import UserError
from training.jobs import JobManager
from wizard.plain import as_text

# Zips are written outside the job folders, in the temp folder gradio may serve downloads from
EXPORT_MAX_AGE_SECONDS = 3600  # a download link older than this has been used or abandoned


@dataclass
class ResultsTab:
    job: gr.Dropdown
    where: gr.Markdown
    evaluation: gr.Markdown
    evaluate: gr.Button
    adapter_zip: gr.DownloadButton
    merged_zip: gr.DownloadButton
    reproduce: gr.Markdown
    gguf_quant: gr.Dropdown | None = None
    gguf_size: gr.Markdown | None = None
    gguf_zip: gr.DownloadButton | None = None


def build() -> ResultsTab:
    job = gr.Dropdown(label="Finished job", choices=[], info="Jobs that have saved a model.", allow_custom_value=True)
    where = gr.Markdown()
    gr.Markdown("### Is it any good? Base vs tuned on held-out rows")
    evaluation = gr.Markdown()
    evaluate = gr.Button("Evaluate again")
    gr.Markdown("### Take it away")
    with gr.Row():
        adapter_zip = gr.DownloadButton("Download the adapter (.zip)", value=None)
        merged_zip = gr.DownloadButton("Download a merged model (.zip)", value=None)
    gr.Markdown(
        "Clicking builds the zip (a merged model takes a minute) and offers it; click again to save it. "
        "The adapter loads with `PeftModel.from_pretrained`, the merged model with "
        "`AutoModelForCausalLM.from_pretrained`."
    )
    gguf_quant, gguf_size, gguf_zip = build_gguf()
    with gr.Accordion("Reproduce this run", open=False):
        reproduce = gr.Markdown()
    return ResultsTab(
        job, where, evaluation, evaluate, adapter_zip, merged_zip, reproduce, gguf_quant, gguf_size, gguf_zip
    )


def build_gguf() -> tuple[gr.Dropdown, gr.Markdown, gr.DownloadButton]:
    from training.gguf_export import QUANT_HELP

    gr.Markdown("#### GGUF (llama.cpp / Ollama / LM Studio)")
    with gr.Row():
        quant = gr.Dropdown(
            label="GGUF type",
            choices=[(text, name) for name, text in QUANT_HELP.items()],
            value="q8_0",
            info="One file with the chat template and stop token inside, and an Ollama Modelfile beside it.",
        )
        download = gr.DownloadButton("Download GGUF + Modelfile (.zip)", value=None)
    size = gr.Markdown()
    return quant, size, download


def gguf_size_markdown(manager: JobManager, job_id: str | None, quant: str) -> str:
    from training.gguf_export import estimate_bytes

    try:
        estimate = estimate_bytes(known_job_dir(manager, job_id), quant)
    except UserError:
        return ""
    if estimate is None:
        return "The file's size is known once the model's config is on this machine."
    return f"The {quant} file will be about **{estimate / 2**20:,.0f} MB**. Making it takes a minute or more."


def export_gguf_zip(manager: JobManager, job_id: str | None, quant: str, secret: str):
    """Export the job as GGUF + Modelfile and return the zip's path for the download button."""
    from training.gguf_export import export_gguf

    folder = None
    try:
        job_dir = known_job_dir(manager, job_id)
        folder = Path(tempfile.mkdtemp(prefix=f"{job_id}-gguf-", dir=_exports())) / f"{job_id}-{quant}-gguf"
        export_gguf(job_dir, folder, quant, token=secret or None, say=lambda text: None)
    except UserError as error:
        if folder is not None:
            shutil.rmtree(folder.parent, ignore_errors=True)
        raise gr.Error(str(error)) from None
    return zip_only(folder)


def where_markdown(job_dir: Path, output_dir: str | None) -> str:
    if not output_dir:
        return "This job has not saved a model yet."
    files = sorted(p.name for p in Path(output_dir).iterdir()) if Path(output_dir).is_dir() else []
    return (
        f"**Your model is in** `{output_dir}`\n\n"
        f"Files: {', '.join(f'`{name}`' for name in files)}\n\n"
        f"The job folder `{job_dir}` also holds its spec, logs, data summary (`{jobdir.DATA_SUMMARY}`), evaluation "
        f"(`{jobdir.EVALUATION}`), the rows it trained on (`{jobdir.PREPARED_DATA}/`) and `{jobdir.ENVIRONMENT}`.\n\n"
        f"From the command line: `python app.py export {job_dir} --merged --out my-model`"
    )


def evaluation_markdown(job_dir: Path) -> str:
    from training.evaluate import read_report

    report = read_report(job_dir)
    if report is None:
        return "Not evaluated yet: press **Evaluate again** (about a minute on a CPU)."
    lines = [f"On {report.rows} {report.held_out} ({report.task}).", "", "| metric | base | tuned |", "|---|---|---|"]
    for name, tuned in report.tuned.items():
        better = "" if name not in report.base else (" ✅" if _improved(name, report.base[name], tuned) else "")
        lines.append(f"| {name} | {report.base.get(name, float('nan')):.4g} | {tuned:.4g}{better} |")
    for side, table in report.confusion.items():
        labels = sorted({*table, *(p for row in table.values() for p in row)})
        lines += ["", f"**Confusion ({side})**: rows are the right label, columns the model's answer", ""]
        lines += ["| | " + " | ".join(_cell(label) for label in labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for gold, row in table.items():
            lines.append(f"| **{_cell(gold)}** | " + " | ".join(str(row.get(p, 0)) for p in labels) + " |")
    if report.samples:
        lines += ["", "| prompt | expected | base | tuned |", "|---|---|---|---|"]
        lines += [
            "| " + " | ".join(_cell(s[key]) for key in ("prompt", "reference", "base", "tuned")) + " |"
            for s in report.samples
        ]
    return "\n".join(lines)


def _improved(metric: str, base: float, tuned: float) -> bool:
    lower_is_better = metric in ("loss", "perplexity")
    return tuned < base if lower_is_better else tuned > base


def _cell(text: str) -> str:
    """A table cell of text from the data or the model: shown as text, never as live HTML, images or links."""
    return as_text(text.replace("\n", " ")[:200])


def known_job_dir(manager: JobManager, job_id: str | None) -> Path:
    """The folder of a job of this app's jobs folder; anything else (a typed name, a path) is refused."""
    if not job_id or job_id not in manager.list_jobs():
        raise UserError("Pick a finished job from the list.")
    return Path(manager.snapshot(job_id).job_dir)


def show(manager: JobManager, job_id: str | None) -> tuple[str, str, str]:
    """(where, evaluation, reproduce) for the job picked."""
    try:
        job_dir = known_job_dir(manager, job_id)
    except UserError as error:
        return str(error), "", ""
    snapshot = manager.snapshot(job_id)
    reproduce = job_dir / jobdir.REPRODUCE
    older = f"This job was made before Lathe wrote {jobdir.REPRODUCE}."
    steps = reproduce.read_text() if reproduce.is_file() else older
    return where_markdown(job_dir, snapshot.output_dir), evaluation_markdown(job_dir), steps


def evaluate(manager: JobManager, job_id: str | None, secret: str) -> Iterator[str]:
    from training.evaluate import evaluate_job  # loads torch: only when someone evaluates

    try:
        job_dir = known_job_dir(manager, job_id)
    except UserError as error:
        yield str(error)
        return
    yield "Evaluating: loading the base and the tuned model, then answering the held-out prompts…"
    try:
        evaluate_job(job_dir, token=secret or None)
    except UserError as error:
        yield f"⚠ {error}"
        return
    yield evaluation_markdown(job_dir)


def export_zip(manager: JobManager, job_id: str | None, merged: bool, secret: str):
    """Export the job's adapter or merged model and return the zip's path for the download button."""
    from training.export import export_adapter, export_merged

    kind = "merged" if merged else "adapter"
    folder = None
    try:
        job_dir = known_job_dir(manager, job_id)
        folder = Path(tempfile.mkdtemp(prefix=f"{job_id}-{kind}-", dir=_exports()))
        if merged:
            export_merged(job_dir, folder / f"{job_id}-{kind}", token=secret or None)
        else:
            export_adapter(job_dir, folder / f"{job_id}-{kind}")
    except UserError as error:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise gr.Error(str(error)) from None
    return zip_only(folder / f"{job_id}-{kind}")


def zip_only(folder: Path) -> str:
    """`folder` zipped beside itself, then removed: the zip is the one copy kept (an export can be gigabytes)."""
    from training.export import zip_folder

    archive = zip_folder(folder, folder.with_suffix(".zip"))
    shutil.rmtree(folder, ignore_errors=True)
    return str(archive)


def _exports() -> Path:
    """Inside gradio's own file folder, so gradio serves the zip where it is instead of copying it; exports
    older than an hour are deleted whenever a new one is made."""
    from gradio.utils import get_upload_folder

    exports = Path(get_upload_folder()) / "lathe-exports"
    exports.mkdir(parents=True, exist_ok=True)
    for old in exports.iterdir():
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > EXPORT_MAX_AGE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
    return exports


def connect(tab: ResultsTab, manager: JobManager, token: gr.State) -> None:
    outputs = [tab.where, tab.evaluation, tab.reproduce]
    tab.job.change(lambda job_id: show(manager, job_id), inputs=tab.job, outputs=outputs, api_name="show_results")

    def evaluate_again(job_id, secret):
        yield from evaluate(manager, job_id, secret)

    tab.evaluate.click(
        evaluate_again,
        inputs=[tab.job, token],
        outputs=tab.evaluation,
        api_name="evaluate_job",
    )
    downloads = ((tab.adapter_zip, False, "download_adapter"), (tab.merged_zip, True, "download_merged"))
    if tab.gguf_zip is not None:
        for trigger in (tab.job.change, tab.gguf_quant.change):
            trigger(
                lambda job_id, quant: gguf_size_markdown(manager, job_id, quant),
                inputs=[tab.job, tab.gguf_quant],
                outputs=tab.gguf_size,
                api_visibility="private",
            )
        tab.gguf_zip.click(
            lambda job_id, quant, secret: export_gguf_zip(manager, job_id, quant, secret),
            inputs=[tab.job, tab.gguf_quant, token],
            outputs=tab.gguf_zip,
            api_name="download_gguf",
        )
    for button, merged, name in downloads:
        button.click(
            lambda job_id, secret, merged=merged: export_zip(manager, job_id, merged, secret),
            inputs=[tab.job, token],
            outputs=button,
            api_name=name,
        )


def jobs_with_a_model(manager: JobManager, current: str | None = None):
    done = [j for j in manager.list_jobs() if manager.snapshot(j).output_dir]
    return gr.update(choices=done, value=current if current in done else next(iter(done), None))


def connect_tab(opened: gr.Tab, tab: ResultsTab, manager: JobManager) -> None:
    """`opened`: the tab itself, whose list of jobs is refreshed each time it is opened."""
    opened.select(
        lambda current: jobs_with_a_model(manager, current), inputs=tab.job, outputs=tab.job, api_visibility="private"
    )
