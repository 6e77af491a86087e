"""What the web UI may read: its upload folder, the operator's --data-dir folders and the jobs folder.

The web UI is not a shell: a logged-in person types a data source, a validation source, a model folder or a
job name, and the server opens it. So in the wizard every such value is confined (the command line, run by
the machine's own user, keeps full local access: the confinement is a `WebRoots` the wizard passes, never a
global). A refusal says what is allowed and reads the same whether or not the path exists.

Job names are names: `resolve_job_name` is the one place a name becomes a job folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from training.spec import HUB_PREFIX, JobSpec

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
DEMO_PREFIX, EMBEDDED_PREFIX = "demo:", "embedded:"


class NotAJob(KeyError):
    """A job name that is not a name, or names no job: a KeyError, as for any unknown job."""

    def __str__(self) -> str:
        return str(self.args[0])


def resolve_job_name(jobs_dir: str | Path, name: str) -> Path:
    """The folder of job `name` under `jobs_dir`; a name holding a separator, '..' or a drive is refused."""
    if not isinstance(name, str) or not JOB_NAME.match(name) or ".." in name:
        shown = repr(name)[:80]
        raise NotAJob(f"{shown} is not a job name (letters, digits, '.', '_' or '-'); pick a job from the list.")
    return Path(jobs_dir) / name


@dataclass(frozen=True)
class WebRoots:
    """The folders the web UI reads data and models from, the jobs folder, and files it never reads."""

    data_dirs: tuple[Path, ...]
    jobs_dir: Path
    never: tuple[Path, ...] = ()

    @classmethod
    def make(cls, uploads_dir: Path, jobs_dir: Path, extra_dirs=(), never=()) -> WebRoots:
        roots = tuple(Path(p).expanduser().resolve() for p in (uploads_dir, *extra_dirs))
        return cls(roots, Path(jobs_dir).resolve(), tuple(Path(p).expanduser().resolve() for p in never))

    def allowed(self) -> str:
        extra = [str(p) for p in self.data_dirs[1:]]
        folders = " and the operator's data folders (" + ", ".join(extra) + ")" if extra else ""
        return f"uploaded files{folders}"

    def holds(self, value: str) -> bool:
        """True if `value`, symlinks followed, lies inside a data folder (and is not a file it never reads)."""
        try:
            resolved = Path(value).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):  # NUL bytes, symlink loops
            return False
        if any(resolved == p or resolved.is_relative_to(p) for p in self.never):
            return False
        return any(resolved.is_relative_to(root) for root in self.data_dirs)


def hub_id_problem(field: str, value: str) -> str | None:
    """A Hub id is owner/name (a `hub:` data source is read from the Hub only, so its id is all to check)."""
    if not HUB_ID.match(value) or ".." in value:
        return f"{field}: {value!r} is not a Hugging Face Hub id; write it as owner/name, e.g. HuggingFaceH4/no_robots."
    return None


def hub_model_problem(value: str) -> str | None:
    """A model id is a Hub id that names no local folder: transformers reads a local folder first."""
    field = "model.name_or_path"
    if problem := hub_id_problem(field, value):
        return problem
    if Path(value).exists():
        return f"{field}: {value!r} would be read from this server's disk, not the Hub; give another Hub id."
    return None


def source_problem(field: str, source: str, roots: WebRoots) -> str | None:
    if source.startswith(DEMO_PREFIX):
        return None
    if source.startswith(HUB_PREFIX):
        return hub_id_problem(field, source.removeprefix(HUB_PREFIX).strip())
    if roots.holds(source):
        return None
    return (
        f"{field}: the web UI reads only {roots.allowed()}; upload the file instead "
        "(on the server's command line, `python app.py train` reads any path)."
    )


def web_path_problems(spec: JobSpec, roots: WebRoots) -> list[tuple[str, str]]:
    """Every path in `spec` the web UI may not read, as (field, message)."""
    problems = []
    sources = [("data.source", spec.data.source), ("data.validation_source", spec.data.validation_source)]
    sources += [(f"data.mix_in[{i}]", s) for i, s in enumerate(spec.data.mix_in)]
    for field, source in sources:
        if source and (problem := source_problem(field, source, roots)):
            problems.append((field, problem))
    model = spec.model.name_or_path
    if not model.startswith(EMBEDDED_PREFIX) and not roots.holds(model):
        looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
        problem = (
            "model.name_or_path: the web UI loads a local model only from the operator's data folders; "
            "give a Hub id (owner/name) or the embedded model."
            if looks_like_path
            else hub_model_problem(model)
        )
        if problem:
            problems.append(("model.name_or_path", problem))
    start = spec.model.start_from_job
    if start:
        name = Path(start).name
        inside = JOB_NAME.match(name) and ".." not in name and _resolves_to(start, roots.jobs_dir / name)
        if not inside:
            where = roots.jobs_dir / "NAME"
            problems.append(("model.start_from_job", f"model.start_from_job: give a job folder such as {where}."))
    return problems


def _resolves_to(value: str, target: Path) -> bool:
    try:
        return Path(value).expanduser().resolve() == target.resolve()
    except (OSError, RuntimeError, ValueError):
        return False
