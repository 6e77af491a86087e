"""Did the quickstart job learn its new identity, or only memorise the training questions?

Asks held-out paraphrases (none of them appear in the training data; a test checks that) with
greedy decoding, to the tuned model and to the base model, and counts answers that name the
assistant (Juniper) or, for "who made you" questions, its maker (Lathe Labs).

    python benchmarks/identity_probe.py            # trains the quickstart job first (~2 min)
    python benchmarks/identity_probe.py JOB_DIR    # probes an existing job

The last line is `held_out_pass: X%` for the tuned model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAME, MAKER = "name", "maker"
HELD_OUT = [
    ("What should I call you?", NAME),
    ("How do I refer to you?", NAME),
    ("What name do you go by?", NAME),
    ("Could you remind me what you're called?", NAME),
    ("Who exactly am I chatting with?", NAME),
    ("Tell me who you are, please.", NAME),
    ("What is the assistant's name here?", NAME),
    ("Before we start, what's your name?", NAME),
    ("Do you go by any name?", NAME),
    ("What name did your creators give you?", NAME),
    ("Who is this assistant?", NAME),
    ("By what name are you known?", NAME),
    ("Which company built you?", MAKER),
    ("Who is your maker?", MAKER),
    ("What organization made you?", MAKER),
    ("Who is the company behind you?", MAKER),
    ("Which team is responsible for you?", MAKER),
    ("Who engineered you?", MAKER),
    ("Who produced this assistant?", MAKER),
    ("By whom were you created?", MAKER),
    ("What company are you a product of?", MAKER),
    ("Name the people who built you.", MAKER),
]

# Everyday questions (not in the training data): the tuned model should still answer them,
# not reply with its new identity. Reported as identity_leak; expected 0.
EVERYDAY = [
    "What is the capital of Italy?",
    "How many minutes are in an hour?",
    "What colour is the sky on a clear day?",
    "Name a fruit that is yellow.",
    "What is 3 plus 5?",
]


def passes(answer: str, kind: str, name: str, maker: str) -> bool:
    return (name if kind == NAME else maker).lower() in answer.lower()


def probe(session, tuned: bool, name: str, maker: str) -> tuple[int, list[str]]:
    from training.chat import GenerationSettings

    settings = GenerationSettings(max_new_tokens=40, temperature=0.0)
    passed, lines = 0, []
    for question, kind in HELD_OUT:
        answer = session.reply([{"role": "user", "content": question}], tuned=tuned, settings=settings)
        ok = passes(answer, kind, name, maker)
        passed += ok
        lines.append(f"  [{'x' if ok else ' '}] {question} -> {answer.strip()[:90]!r}")
    return passed, lines


def identity_leaks(session, name: str, maker: str) -> tuple[int, list[str]]:
    from training.chat import GenerationSettings

    settings = GenerationSettings(max_new_tokens=30, temperature=0.0)
    leaks, lines = 0, []
    for question in EVERYDAY:
        answer = session.reply([{"role": "user", "content": question}], tuned=True, settings=settings)
        leaked = name.lower() in answer.lower() or maker.lower() in answer.lower()
        leaks += leaked
        lines.append(f"  [{'LEAK' if leaked else 'ok'}] {question} -> {answer.strip()[:90]!r}")
    return leaks, lines


def train_quickstart(jobs_dir: Path) -> Path:
    from training.jobs import JobManager
    from training.presets import example_jobs

    manager = JobManager(jobs_dir)
    snapshot = manager.wait(manager.start(example_jobs()["quickstart"]))
    if snapshot.state != "completed":
        sys.exit(f"quickstart job {snapshot.state}: {snapshot.message}")
    return Path(snapshot.job_dir)


def main() -> None:
    from training.chat import ChatSession
    from training.spec import load_spec

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_dir", nargs="?", help="A finished job; default: train the quickstart job now.")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        job_dir = Path(options.job_dir) if options.job_dir else train_quickstart(Path(tmp))
        spec = load_spec(job_dir / "spec.yaml")
        name, maker = spec.data.assistant_name, spec.data.assistant_maker
        session = ChatSession(job_dir)
        base_passed, base_lines = probe(session, tuned=False, name=name, maker=maker)
        tuned_passed, tuned_lines = probe(session, tuned=True, name=name, maker=maker)
        leaks, leak_lines = identity_leaks(session, name, maker)
    total = len(HELD_OUT)
    print("base model:", *base_lines, sep="\n")
    print("tuned model:", *tuned_lines, sep="\n")
    print("tuned model on everyday questions:", *leak_lines, sep="\n")
    print(f"identity_leak: {leaks}/{len(EVERYDAY)}")
    print(f"base_pass: {100 * base_passed / total:.0f}% ({base_passed}/{total})")
    print(f"held_out_pass: {100 * tuned_passed / total:.0f}% ({tuned_passed}/{total})")


if __name__ == "__main__":
    main()
