"""How the wizard is served: one place for the web server's hardening (files, login, limits, headers)."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.middleware import Middleware

from training.errors import UserError
from training.jobs import JobManager
from wizard.auth import Authenticator, ClientAddressMiddleware, require_login_unless_local

DEFAULT_MAX_UPLOAD_MB = 100  # the data check handles 100 MB in ~15 s here (docs/benchmarks.md)


def launch_options(
    manager: JobManager, host: str, port: int | None, block: bool, max_upload_mb: int, auth: Authenticator | None
) -> dict:
    """gradio's `Blocks.launch` arguments: nothing shared, stored in the browser or served beyond our files."""
    return {
        "server_name": host,
        "server_port": port,
        "prevent_thread_lock": not block,
        "share": False,
        "show_error": False,
        "enable_monitoring": False,
        "run_history": False,  # it would keep every input, the token included, in the browser's storage
        "max_file_size": f"{max_upload_mb}mb",  # gradio refuses bigger uploads and says the limit
        "ssr_mode": False,
        "footer_links": ["api"],
        "auth": auth.check if auth else None,
        "auth_message": auth.login_help() if auth else None,
        # Job folders, converted models and the Hub cache are never served, even if gradio's own
        # checks regress (path handling is its most-patched surface); blocked_paths wins over the rest.
        "blocked_paths": [str(manager.jobs_dir.resolve()), *cache_folders()],
        "app_kwargs": {
            "middleware": [Middleware(ClientAddressMiddleware)],  # the login limiter needs the client's address
            "openapi_url": None,  # FastAPI's own schema of every route would otherwise answer without a login
        },
    }


def prepare_server(manager: JobManager, host: str, auth: Authenticator | None) -> None:
    """Before the UI is built: refuse an open address without a login, and keep gradio's files in ours."""
    require_login_unless_local(host, auth)
    confine_gradio_files(manager)


def confine_gradio_files(manager: JobManager) -> None:
    """Keep gradio's uploads and the files it serves in this app's own upload folder.

    gradio serves any file under its temp folder (default /tmp/gradio, shared by every gradio app on the
    machine) and its examples cache (default ./.gradio, relative to where the app starts). Both are read
    from the environment when components are built, so set them before build_ui."""
    if os.environ.get("GRADIO_ALLOWED_PATHS"):
        raise UserError(
            "GRADIO_ALLOWED_PATHS is set, which would let the wizard serve files outside its own folders; "
            "unset it (Lathe serves only its job uploads and downloads)."
        )
    folder = gradio_files_folder(manager.jobs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "examples")


def gradio_files_folder(jobs_dir: Path) -> Path:
    """Where gradio keeps uploads and the files it serves: next to the jobs, inside the uploads folder."""
    return (Path(jobs_dir).parent / "uploads" / "gradio").resolve()


def cache_folders() -> list[str]:
    """The converted-model cache and the Hugging Face cache, which can hold models and tokens."""
    from training.models import cache_root

    folders = [cache_root(), Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))]
    return [str(Path(folder).expanduser().resolve()) for folder in folders]
