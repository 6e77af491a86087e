"""Lathe: fine-tune open LLMs without code.

    python app.py                          serve the wizard on http://127.0.0.1:7860
    python app.py train SPEC.yaml          run a job headless, with a progress line (--detach: in the background)
    python app.py follow JOB_DIR           watch a job running in the background; `stop JOB_DIR` stops it
    python app.py chat JOB_DIR             talk to a finished job (--prompt for one answer)
    python app.py score JOB_DIR --prompt P --answer A   score an answer with a finished reward model
    python app.py check-data FILE [--task T --model M]  check a dataset before training (exit 1 if unusable)
    python app.py estimate SPEC.yaml       memory breakdown, fit verdict and time for each device found
    python app.py eval JOB_DIR             base vs tuned: validation loss, task scores, sample answers
    python app.py export JOB_DIR --out DIR [--merged] [--zip]   the adapter, or a standalone merged model
    python app.py push JOB_DIR --repo ID [--merged] [--public]  upload it to the Hugging Face Hub (token: HF_TOKEN)
    python app.py serve JOB_DIR            an OpenAI-compatible API over a finished job (--port, --base)
    python app.py add-user AUTH_FILE NAME  add or change a login (needed to serve on anything but 127.0.0.1)
    python app.py compare JOB_DIR JOB_DIR ...   settings that differ, final metrics, eval scores; best marked
    python app.py compare --sweep SWEEP_ID      every run of a sweep (--stop stops the whole sweep)

Every user error ends in one plain line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Set before any huggingface import reads them. Forced, not defaulted: a person's action must never borrow
# the token saved on this machine (`hf auth login`) or the operator's; every call passes its token itself.
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No call home from the app or the workers it starts (they inherit this): gradio's analytics and version
# check, and the Hub libraries' telemetry. A hosted app may have no route out, and the README promises it.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from training import redact  # noqa: E402
from training.errors import UserError  # noqa: E402

DEFAULT_JOBS_DIR = os.environ.get("LATHE_JOBS_DIR", "jobs")
WIZARD_HOST, WIZARD_PORT = "127.0.0.1", 7860


ENGINES = ("auto", "transformers", "llama.cpp")  # training.chat.ENGINES, without importing torch for --help
ENGINE_HELP = (
    "Who answers: auto (default; llama.cpp on a CPU where it is installed, from the job's GGUF made once), "
    "transformers, or llama.cpp. Env LATHE_CHAT_ENGINE sets the default."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="Lathe: fine-tune open LLMs without code.")
    parser.add_argument("--jobs-dir", default=DEFAULT_JOBS_DIR, help="Folder that holds job folders (default: jobs).")
    parser.add_argument("--cache-dir", help="Folder for converted models (default: ~/.cache/lathe).")
    parser.add_argument(
        "--host",
        default=WIZARD_HOST,
        help="Address to serve the wizard on (default 127.0.0.1; any other address needs --auth-file).",
    )
    parser.add_argument(
        "--auth-file",
        default=os.environ.get("LATHE_AUTH_FILE") or None,
        help="Require a login: a file written by `add-user` (env LATHE_AUTH_FILE).",
    )
    parser.add_argument("--port", type=int, default=WIZARD_PORT, help="Port to serve the wizard on.")
    parser.add_argument(
        "--max-upload-mb",
        type=int,
        default=int(os.environ.get("LATHE_MAX_UPLOAD_MB", "100")),
        help="Largest data file the wizard accepts, in MB (default 100; env LATHE_MAX_UPLOAD_MB).",
    )
    hosting = parser.add_argument_group("hosting (see docs/hosting.md)")
    add_env_list_option(
        hosting,
        "--public-url",
        "URL",
        env="LATHE_PUBLIC_URL",
        separator=",",
        help="The address people open, e.g. https://lathe.example.com (repeatable; env LATHE_PUBLIC_URL). "
        "Requests for any other host name, and from any other website, are refused.",
    )
    add_env_list_option(
        hosting,
        "--trusted-proxy",
        "IP",
        env="LATHE_TRUSTED_PROXY",
        separator=",",
        help="A reverse proxy's address whose X-Forwarded-For/-Proto/-Host are believed (repeatable; env "
        "LATHE_TRUSTED_PROXY). From anyone else those headers are ignored.",
    )
    add_env_list_option(
        hosting,
        "--data-dir",
        "DIR",
        env="LATHE_DATA_DIRS",
        separator=os.pathsep,
        help="A server folder the web UI may read data and models from, besides its uploads (repeatable; env "
        "LATHE_DATA_DIRS). The command line reads any path.",
    )
    commands = parser.add_subparsers(dest="command")

    add_user = commands.add_parser("add-user", help="Add a login to an auth file, or change its password.")
    add_user.add_argument("auth_file", help="The auth file (created with mode 0600 if missing).")
    add_user.add_argument("username", help="Letters, digits, or . _ @ -")
    add_user.add_argument(
        "--password-stdin", action="store_true", help="Read the password from standard input (for scripts)."
    )

    train = commands.add_parser("train", help="Run a job from a spec file, headless.")
    train.add_argument("spec", nargs="?", help="The job spec (YAML).")
    train.add_argument("--job-dir", help="Write the job here instead of a new folder under --jobs-dir.")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="Override a spec field, e.g. --set hyperparameters.max_steps=20 (repeatable).",
    )
    train.add_argument("--help-spec", action="store_true", help="List every spec field with its help and exit.")
    train.add_argument("--resume", metavar="JOB_DIR", help="Continue a stopped or failed job from its last checkpoint.")
    train.add_argument(
        "--detach",
        action="store_true",
        help="Start the job and return; it trains on in the background (follow it with `app.py follow JOB_DIR`).",
    )
    follow_job = commands.add_parser("follow", help="Watch a job running in the background until it ends.")
    follow_job.add_argument("job_dir", help="The job folder.")
    stop_job = commands.add_parser("stop", help="Stop a running job at its next step; it saves a checkpoint.")
    stop_job.add_argument("job_dir", help="The job folder.")

    chat = commands.add_parser("chat", help="Talk to a finished job's model.")
    chat.add_argument("job_dir", help="The job folder.")
    chat.add_argument("--prompt", help="Ask one question, print the answer and exit.")
    chat.add_argument("--base", action="store_true", help="Answer with the base model instead of the tuned one.")
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default).")
    chat.add_argument("--engine", choices=ENGINES, default=None, help=ENGINE_HELP)

    score = commands.add_parser("score", help="Score answers with a finished reward model (higher = preferred).")
    score.add_argument("job_dir", help="The reward job's folder.")
    score.add_argument("--prompt", required=True, help="The question or request.")
    score.add_argument("--answer", action="append", required=True, help="An answer to score (repeatable).")

    check = commands.add_parser(
        "check-data", help="Check a dataset: format, problems, token lengths (exit 1 if unusable)."
    )
    check.add_argument(
        "source", help="A data file (JSONL, JSON, CSV, TSV, Parquet, TXT) or a demo such as demo:identity."
    )
    check.add_argument(
        "--task", default="auto", help="chat, classification, summarization, qa, language_modeling, preference."
    )
    check.add_argument("--format", default="auto", help="Force a format instead of detecting it.")
    check.add_argument("--model", default=None, help="Model whose tokenizer counts tokens (default: the embedded one).")
    check.add_argument("--context-length", type=int, default=None, help="Context length to check rows against.")
    check.add_argument(
        "--map", action="append", default=[], metavar="ROLE=COLUMN", help="Map a column, e.g. text=review."
    )
    check.add_argument("--objective", default=None, help="sft, dpo, reward or kto (default: follows the task).")
    estimate = commands.add_parser("estimate", help="Will the job fit, and how long will it take?")
    estimate.add_argument("spec", help="The job spec (YAML).")
    estimate.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    estimate.add_argument("--memory-gb", type=float, help="Estimate for a device with this much free memory instead.")
    estimate.add_argument("--gpu", help="With --memory-gb: the GPU's name (e.g. A100), for its speed.")
    estimate.add_argument("--price-per-hour", type=float, help="Show the cost at this hourly price.")
    estimate.add_argument("--measure", action="store_true", help="Time a few real steps here instead of a prior.")
    evaluate = commands.add_parser("eval", help="Compare the base and the tuned model on the held-out data.")
    evaluate.add_argument("job_dir", help="The job folder.")
    evaluate.add_argument("--rows", type=int, default=50, help="At most this many held-out rows (default 50).")
    evaluate.add_argument("--samples", type=int, default=5, help="Answers shown side by side (default 5).")

    export = commands.add_parser("export", help="Write a finished job's model to a folder others can load.")
    export.add_argument("job_dir", help="The job folder.")
    export.add_argument("--out", required=True, help="A new (or empty) folder to write into.")
    export.add_argument("--merged", action="store_true", help="One standalone model instead of the adapter.")
    export.add_argument("--zip", action="store_true", help="Also write OUT.zip.")
    export.add_argument(
        "--format", choices=("hf", "gguf"), default="hf",
        help="hf: Hugging Face folders (default); gguf: one file for llama.cpp / Ollama / LM Studio, with a Modelfile.",
    )  # fmt: skip
    export.add_argument("--quant", default="q8_0", help="GGUF only: q8_0 (default), q4_k_m, f16 or bf16.")

    # The token comes from HF_TOKEN only: a command-line option would show it in `ps` and the shell history
    push = commands.add_parser("push", help="Upload a finished job's model and model card to the Hugging Face Hub.")
    push.add_argument("job_dir", help="The job folder.")
    push.add_argument("--repo", required=True, help="owner/name, or just a name for the token's own account.")
    push.add_argument("--merged", action="store_true", help="Push one standalone merged model instead of the adapter.")
    push.add_argument("--public", action="store_true", help="Make a new repo public (default: private).")
    api = commands.add_parser("serve", help="Serve a finished job's model over an OpenAI-compatible HTTP API.")
    api.add_argument("job_dir", help="The job folder.")
    # Own dests: the global --host/--port belong to the wizard, and a sub-command's defaults would overwrite them.
    api.add_argument("--host", dest="api_host", metavar="HOST", default="127.0.0.1", help="Address (127.0.0.1).")
    api.add_argument("--port", dest="api_port", metavar="PORT", type=int, default=8000, help="Port (default 8000).")
    api.add_argument("--base", action="store_true", help="Serve the base model instead of the fine-tuned one.")
    api.add_argument("--engine", choices=ENGINES, default=None, help=ENGINE_HELP)
    api.add_argument(
        "--api-key",
        metavar="KEY",
        help="Require `Authorization: Bearer KEY` on every request (needed for a --host other than loopback). "
        "Prefer env LATHE_API_KEY: a command line is visible to other users of the machine.",
    )
    api.add_argument(
        "--max-waiting",
        type=int,
        default=16,
        help="Requests that may wait for the model while it answers another (default 16); more get 429.",
    )
    api.add_argument(
        "--max-body-mb", type=float, default=4, help="Largest request body in MB (default 4); bigger get 413."
    )

    compare = commands.add_parser("compare", help="Compare jobs side by side: differing settings, metrics, best run.")
    compare.add_argument("job_dirs", nargs="*", help="Two or more job folders.")
    compare.add_argument("--sweep", help="Compare every run of this sweep (its id, from `train` or the Runs tab).")
    compare.add_argument("--stop", action="store_true", help="With --sweep: stop every run of the sweep.")
    check.add_argument("--split", default=None, help="Hub dataset: the split (default train).")
    check.add_argument("--config", default=None, help="Hub dataset: the configuration, if it has several.")
    check.add_argument("--revision", default=None, help="Hub dataset: branch, tag or commit.")
    return parser


def add_env_list_option(group, flag: str, metavar: str, *, env: str, separator: str, help: str) -> None:
    """A repeatable option whose default is the `separator`-joined list in environment variable `env`.

    Each use on the command line adds to the list the variable gave, rather than replacing it."""
    group.add_argument(flag, action="append", default=env_list(env, separator), metavar=metavar, help=help)


def env_list(name: str, separator: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(separator) if part.strip()]


def main(argv: list[str] | None = None) -> int:
    # Every log record and everything printed is masked for tokens, before any library logs a word
    redact.install()
    redact.register_secret(os.environ.get("HF_TOKEN"))
    from training.trackers import register_tracker_secrets

    register_tracker_secrets()  # W&B, MLflow keys: masked like the Hugging Face token
    args = build_parser().parse_args(argv)
    if args.cache_dir:
        os.environ["LATHE_CACHE_DIR"] = str(Path(args.cache_dir).expanduser().resolve())
    try:
        if args.command == "train":
            return command_train(args)
        if args.command == "follow":
            return command_follow(args)
        if args.command == "stop":
            return command_stop(args)
        if args.command == "chat":
            return command_chat(args)
        if args.command == "score":
            return command_score(args)
        if args.command == "check-data":
            return command_check_data(args)
        if args.command == "estimate":
            return command_estimate(args)
        if args.command == "add-user":
            return command_add_user(args)
        if args.command == "eval":
            return command_eval(args)
        if args.command == "export":
            return command_export(args)
        if args.command == "push":
            return command_push(args)
        if args.command == "serve":
            return command_serve_api(args)
        if args.command == "compare":
            return command_compare(args)
        return command_wizard(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush fails quietly
        return 141
    finally:
        if "training.notify" in sys.modules:  # a job ended here: let its webhook notice go out first
            sys.modules["training.notify"].flush()


def command_train(args) -> int:
    from training.jobs import JobManager
    from training.preflight import preflight
    from training.spec import field_help, load_spec, parse_override

    if args.help_spec:
        for path, text in field_help():
            print(f"{path:38} {text}")
        return 0
    secrets = {"HF_TOKEN": os.environ.get("HF_TOKEN", "")}
    if args.resume:
        job_dir = Path(args.resume).resolve()
        manager = JobManager(job_dir.parent)
        job_id = manager.resume(job_dir.name, secrets=secrets)
        print(f"job {job_id} resuming from its last complete checkpoint", flush=True)
        return detach(manager, job_id) if args.detach else report(follow_until_done(manager, job_id))
    if not args.spec:
        raise UserError("train needs a spec file, e.g. python app.py train presets/jobs/quickstart.yaml")
    spec = load_spec(args.spec)
    if args.overrides:
        spec = spec.with_overrides(dict(parse_override(text) for text in args.overrides))
    print("checking the model and data (the first run converts the embedded model, ~15 s)...", flush=True)
    preflight(spec, Path(args.job_dir or args.jobs_dir), token=secrets["HF_TOKEN"] or None)
    if spec.sweep is not None:
        return command_sweep(args, spec, secrets)
    manager = JobManager(args.jobs_dir)
    job_id = manager.start(spec, secrets=secrets, job_dir=args.job_dir)
    print(f"job {job_id} started in {manager.snapshot(job_id).job_dir}", flush=True)
    return detach(manager, job_id) if args.detach else report(follow_until_done(manager, job_id))


def command_sweep(args, spec, secrets) -> int:
    """Queue one job per point of the spec's sweep, follow them in turn, then print the comparison."""
    from training.compare import load_runs, to_text
    from training.jobs import JobManager
    from training.sweep import start_sweep, stop_sweep

    if args.job_dir:
        raise UserError("--job-dir names one job; a sweep makes one folder per point under --jobs-dir.")
    manager = JobManager(args.jobs_dir)
    sweep_id, job_ids = start_sweep(manager, spec, secrets)
    print(f"sweep {sweep_id}: {len(job_ids)} jobs queued (one trains at a time)", flush=True)
    try:
        for number, job_id in enumerate(job_ids, 1):
            print(f"\n[{number}/{len(job_ids)}] {job_id}", flush=True)
            follow(manager, job_id)
    except KeyboardInterrupt:
        print("\nstopping the whole sweep...")
        stop_sweep(manager, sweep_id, requested_by="from the command line (Ctrl-C)")
        for job_id in job_ids:
            manager.wait(job_id)
    runs = load_runs([manager.snapshot(job_id).job_dir for job_id in job_ids]) if len(job_ids) > 1 else []
    print("\n" + (to_text(runs) if runs else ""))
    print(f"compare again: python app.py --jobs-dir {args.jobs_dir} compare --sweep {sweep_id}")
    states = {manager.snapshot(job_id).state for job_id in job_ids}
    return 1 if "failed" in states else 0 if states == {"completed"} else 130


def command_compare(args) -> int:
    from training.compare import load_runs, to_text
    from training.sweep import stop_sweep_on_disk, sweeps

    if args.sweep:
        members = sweeps(Path(args.jobs_dir)).get(args.sweep)
        if not members:
            raise UserError(f"There is no sweep called {args.sweep} in {args.jobs_dir}. Check --jobs-dir.")
        if args.stop:
            stopped = stop_sweep_on_disk(members, requested_by="from the command line")
            print(f"stop requested for: {', '.join(stopped) or 'nothing (every run has ended)'}")
            return 0
        folders = [*members, *args.job_dirs]
    else:
        folders = args.job_dirs
    print(to_text(load_runs(folders)))
    return 0


def follow_until_done(manager, job_id: str):
    """Follow the job; Ctrl-C, SIGTERM or SIGHUP stops it at the next step (with a checkpoint) and follows
    that; a second one leaves it running in the background."""
    from training.follow import interrupt_name, signals_stop_the_job

    with signals_stop_the_job():
        try:
            return follow(manager, job_id)
        except KeyboardInterrupt as interrupt:
            # Stop first: after a SIGHUP the terminal may be gone, and printing to it can fail
            manager.stop(job_id, requested_by=f"from the command line ({interrupt_name(interrupt)})")
            print(
                f"\n{interrupt_name(interrupt)}: stopping at the next step and saving a checkpoint "
                "(press Ctrl-C again to leave it running in the background)...",
                flush=True,
            )
            return follow(manager, job_id)
        except Exception as error:
            # This command is the job's only watcher (without --detach): when it fails, e.g. its output was
            # closed (`| head`), the job stops with a checkpoint rather than train on where nobody looks
            manager.stop(job_id, requested_by=f"from the command line, which failed ({type(error).__name__})")
            raise


def detach(manager, job_id: str) -> int:
    """Leave the job training in the background once its worker runs, and say how to reach it."""
    from training.follow import how_to_reach, wait_until_started

    state = wait_until_started(manager, job_id)
    job_dir = manager.snapshot(job_id).job_dir
    if state != "running":
        return report(manager.snapshot(job_id))
    print(f"job {job_id} is training in the background (detached).")
    print("\n".join(how_to_reach(job_dir)))
    return 0


def command_follow(args) -> int:
    from training.follow import how_to_reach
    from training.jobdir import require_job_dir
    from training.jobs import JobManager

    job_dir = require_job_dir(args.job_dir).resolve()
    manager = JobManager(job_dir.parent)  # re-attaches to its worker if it still runs
    try:
        return report(follow(manager, job_dir.name))
    except KeyboardInterrupt:
        print("\nleft it running:\n" + "\n".join(how_to_reach(job_dir)))
        return 0


def command_stop(args) -> int:
    from training.jobdir import require_job_dir
    from training.jobs import JobManager

    job_dir = require_job_dir(args.job_dir).resolve()
    manager = JobManager(job_dir.parent)
    snapshot = manager.snapshot(job_dir.name)
    if snapshot.state not in ("queued", "running"):
        print(f"job {job_dir.name} is not running (it is {snapshot.state}).")
        return 0
    manager.stop(job_dir.name, requested_by="from the command line (app.py stop)")
    print("stopping at the next step and saving a checkpoint...", flush=True)
    return report(follow(manager, job_dir.name))


def report(snapshot) -> int:
    from training import jobdir

    print()
    if snapshot.state == jobdir.FAILED:
        print(f"error: {snapshot.message} {snapshot.hint}".rstrip(), file=sys.stderr)
        return 1
    print(f"job {snapshot.state}: {snapshot.output_dir}")
    if snapshot.state == "stopped":
        from training.checkpoints import latest_complete_checkpoint

        checkpoint = latest_complete_checkpoint(Path(snapshot.job_dir))
        print(f"checkpoint: {checkpoint}\ncontinue it: python app.py train --resume {snapshot.job_dir}")
    from training.evaluate import read_report

    evaluation = read_report(Path(snapshot.job_dir)) if snapshot.state == jobdir.COMPLETED else None
    if evaluation:
        print(f"{evaluation.summary()}\n  details: python app.py eval {snapshot.job_dir} (or the wizard's Results tab)")
    if snapshot.reward_accuracy:
        print(f'try it: python app.py score {snapshot.job_dir} --prompt "What is 12 times 7?" --answer "84."')
    else:
        print(f'try it: python app.py chat {snapshot.job_dir} --prompt "Who are you?"')
    return 0 if snapshot.state == jobdir.COMPLETED else 130


def follow(manager, job_id: str):
    """Print a one-line progress display until the job ends; return the final snapshot."""
    from training.jobdir import FINAL_STATES

    interactive = sys.stdout.isatty()
    last_line = ""
    while True:
        snapshot = manager.wait(job_id, timeout=1.0)
        line = progress_line(snapshot)
        if line != last_line:
            print(
                ("\r" + line.ljust(len(last_line))) if interactive else line,
                end="" if interactive else "\n",
                flush=True,
            )
            last_line = line
        if snapshot.state in FINAL_STATES:
            # The ending is read from the events a moment before the worker exits; wait for the manager to
            # close the job (its webhook notice is on its way then) before the command can exit
            return manager.wait(job_id, timeout=30)


def progress_line(snapshot) -> str:
    if not snapshot.total_steps:
        return f"[{snapshot.state}] {snapshot.phase.replace('_', ' ')}..."
    loss = f"loss {snapshot.train_loss[-1][1]:.4f}" if snapshot.train_loss else "loss -"
    speed = f"{snapshot.tokens_per_second:.0f} tok/s" if snapshot.tokens_per_second else ""
    eta = f"ETA {snapshot.time_left}" if snapshot.eta_seconds is not None else ""
    line = f"step {snapshot.step}/{snapshot.total_steps}  epoch {snapshot.epoch:.2f}  {loss}"
    if snapshot.reward_accuracy:  # DPO and reward jobs: is the better answer scored higher?
        line += f"  margin {snapshot.reward_margin[-1][1]:+.3f}  accuracy {snapshot.reward_accuracy[-1][1]:.2f}"
    return f"{line}  {speed}  {eta}".rstrip()


def command_chat(args) -> int:
    from training.chat import GenerationSettings, open_session
    from training.jobdir import require_job_dir

    require_job_dir(args.job_dir)
    answers = "base" if args.base else "tuned"  # only the model that answers is loaded
    session = open_session(
        args.job_dir, token=os.environ.get("HF_TOKEN"), answers=answers, engine=args.engine, say=_err
    )
    print(session.description, file=sys.stderr, flush=True)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    tuned = not args.base
    if args.prompt:
        print(session.reply([{"role": "user", "content": args.prompt}], tuned=tuned, settings=settings))
        return 0
    history: list[dict[str, str]] = []
    print(f"Chatting with the {'tuned' if tuned else 'base'} model. Empty line or Ctrl-D to quit.")
    while True:
        try:
            prompt = input("you> ").strip()
        except EOFError:
            return 0
        if not prompt:
            return 0
        history.append({"role": "user", "content": prompt})
        print("model> ", end="", flush=True)
        answer = ""
        for piece in session.stream(history, tuned=tuned, settings=settings):
            answer += piece
            print(piece, end="", flush=True)
        print()
        history.append({"role": "assistant", "content": answer})


def command_score(args) -> int:
    from training.scoring import RewardScorer

    scorer = RewardScorer(args.job_dir, token=os.environ.get("HF_TOKEN"))
    for answer in args.answer:
        print(f"{scorer.score(args.prompt, answer):+.3f}  {answer}")
    return 0


def command_check_data(args) -> int:
    import time

    started = time.perf_counter()  # the check's own imports count: they were most of its time
    from training.data.check import check_data, spec_for_source
    from training.spec import JobSpec, parse_field_map

    field_map = parse_field_map(args.map, where="--map")
    overrides = {}
    if args.model:
        overrides["model.name_or_path"] = args.model
    if args.context_length:
        overrides["hyperparameters.context_length"] = args.context_length
    for option, path in (("split", "data.hub_split"), ("config", "data.hub_config"), ("revision", "data.hub_revision")):
        if getattr(args, option):
            overrides[path] = getattr(args, option)
    token = os.environ.get("HF_TOKEN") or None
    base = JobSpec().with_overrides(overrides)
    spec = spec_for_source(args.source, args.task, args.format, field_map, base, token=token)
    if args.objective:
        spec = spec.with_overrides({"method.objective": args.objective})
    report = check_data(spec, token=token)
    print(report.to_text())
    print(f"checked in {time.perf_counter() - started:.1f} s")
    return 0 if report.usable else 1


def command_estimate(args) -> int:
    from training.estimate import Device, preview_job
    from training.spec import load_spec, parse_override

    spec = load_spec(args.spec)
    if args.overrides:
        spec = spec.with_overrides(dict(parse_override(text) for text in args.overrides))
    devices = None
    if args.memory_gb:
        kind = "cuda" if args.gpu else "cpu"
        devices = [Device(kind, args.gpu or "CPU", args.memory_gb, bf16=True, cores=os.cpu_count() or 1)]
    token = os.environ.get("HF_TOKEN") or None
    speed = None
    if args.measure:
        import tempfile

        from training.estimate import MEASURE_STEPS, measure_speed
        from training.jobs import JobManager

        print(f"measuring: {MEASURE_STEPS} real steps of this job...", flush=True)
        speed = measure_speed(JobManager(tempfile.mkdtemp(prefix="lathe-measure-jobs-")), spec, token)
    for preview in preview_job(spec, token=token, devices=devices, measured_tokens_per_second=speed):
        print("\n".join(preview.lines(args.price_per_hour)))
    return 0


def command_eval(args) -> int:
    from training.evaluate import evaluate_job
    from training.jobdir import EVALUATION

    print("loading the base and the tuned model, then answering the held-out prompts...", flush=True)
    report = evaluate_job(Path(args.job_dir), token=os.environ.get("HF_TOKEN") or None, max_rows=args.rows)
    print(report.to_text(samples=args.samples))
    print(f"\nsaved: {Path(args.job_dir) / EVALUATION}")
    return 0


def command_export(args) -> int:
    from training.export import export_adapter, export_merged, zip_folder

    job_dir, out = Path(args.job_dir), Path(args.out)
    if args.format == "gguf":
        from training.gguf_export import export_gguf

        path = export_gguf(job_dir, out, args.quant, token=os.environ.get("HF_TOKEN") or None, say=_say)
        print(f"exported GGUF ({args.quant}, {path.stat().st_size / 2**20:.0f} MB): {path}")
        print(f"Ollama: cd {out} && ollama create {job_dir.name} -f Modelfile && ollama run {job_dir.name}")
        return 0
    if args.merged:
        print("merging the adapter into the base weights...", flush=True)
        folder = export_merged(job_dir, out, token=os.environ.get("HF_TOKEN") or None)
    else:
        folder = export_adapter(job_dir, out)
    print(f"exported {'merged model' if args.merged else 'adapter'}: {folder}")
    if args.zip:
        print(f"zip: {zip_folder(folder, folder.with_suffix('.zip'))}")
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def command_push(args) -> int:
    from training.publish import push_job

    what = "merged model" if args.merged else "adapter"
    print(f"pushing the {what} of {Path(args.job_dir).name} to {args.repo}...", flush=True)
    token = os.environ.get("HF_TOKEN") or None
    url = push_job(Path(args.job_dir), args.repo, token, merged=args.merged, private=not args.public)
    print(f"pushed: {url}")
    return 0


def command_serve_api(args) -> int:
    from training.openai_api import serve

    if (args.host, args.port) != (WIZARD_HOST, WIZARD_PORT):
        raise UserError("--host and --port before `serve` are the wizard's; write them after it: serve JOB --port P")
    if not 1 <= args.api_port <= 65535:
        raise UserError(f"--port {args.api_port}: choose a port from 1 to 65535.")
    api_key = args.api_key or os.environ.get("LATHE_API_KEY") or None
    if args.max_waiting < 0 or args.max_body_mb <= 0:
        raise UserError("--max-waiting must be 0 or more and --max-body-mb more than 0.")
    serve(
        args.job_dir,
        args.api_host,
        args.api_port,
        not args.base,
        api_key,
        token=os.environ.get("HF_TOKEN"),
        max_waiting=args.max_waiting,
        max_body_mb=args.max_body_mb,
        engine=args.engine,
    )
    return 0


def command_add_user(args) -> int:
    import getpass

    from wizard.auth import add_user, check_username

    check_username(args.username)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the two passwords differ; nothing was changed.")
    added = add_user(args.auth_file, args.username, password)
    print(f"{'added' if added else 'changed the password of'} {args.username} in {args.auth_file}")
    return 0


def command_wizard(args) -> int:
    from training.jobs import JobManager
    from wizard.auth import Authenticator, require_login_unless_local

    if args.max_upload_mb < 1:
        raise UserError("--max-upload-mb must be at least 1.")
    # The server's log: our own notes (Hub access checks, stop requests) and every library's warnings
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for ours in ("training", "wizard"):
        logging.getLogger(ours).setLevel(logging.INFO)
    auth = Authenticator.from_file(args.auth_file) if args.auth_file else None
    require_login_unless_local(args.host, auth)  # before the slow gradio import: a refusal comes at once
    from wizard.app import serve_wizard

    for folder in args.data_dir:
        if not Path(folder).expanduser().is_dir():
            raise UserError(f"--data-dir {folder}: no such folder. Give a folder that holds data files.")
    serve_wizard(
        JobManager(args.jobs_dir),
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        auth=auth,
        public_urls=tuple(args.public_url),
        trusted_proxies=tuple(args.trusted_proxy),
        data_dirs=tuple(args.data_dir),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
