"""How the wizard is served: one place for the web server's hardening (files, login, limits, headers)."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.middleware import Middleware

from training.errors import UserError
from training.jobs import JobManager
from wizard.auth import Authenticator, ClientAddressMiddleware, require_login_unless_local
from wizard.site_guard import SiteGuard, SitePolicy

DEFAULT_MAX_UPLOAD_MB = 100  # the data check handles 100 MB in ~15 s here (docs/benchmarks.md)


def launch_options(
    manager: JobManager,
    host: str,
    port: int | None,
    block: bool,
    max_upload_mb: int,
    auth: Authenticator | None,
    policy: SitePolicy,
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
        "_app": guarded_app(policy),
    }


def prepare_server(
    manager: JobManager, host: str, auth: Authenticator | None, public_urls=(), trusted_proxies=()
) -> SitePolicy:
    """Before the UI is built: refuse an open address without a login, keep gradio's files in ours, switch
    off every call home, and decide which Hosts, Origins and proxies the site guard accepts."""
    require_login_unless_local(host, auth)
    policy = SitePolicy.for_server(host, public_urls, trusted_proxies)
    confine_gradio_files(manager)
    quiet_gradio()
    # uvicorn itself would believe X-Forwarded-For from 127.0.0.1; the SiteGuard decides who is a proxy
    os.environ["FORWARDED_ALLOW_IPS"] = "0.0.0.0/32"
    return policy


def guarded_app(policy: SitePolicy):
    """gradio's App with the SiteGuard outside all of its middleware (gradio adds its CORS layer with
    add_middleware, which always goes outermost; only wrapping the finished stack comes before it)."""
    from fastapi.responses import ORJSONResponse
    from gradio.routes import App

    class GuardedApp(App):
        def build_middleware_stack(self):
            return SiteGuard(super().build_middleware_stack(), policy)

    return GuardedApp(
        default_response_class=ORJSONResponse,  # what gradio's create_app gives the App it makes itself
        middleware=[Middleware(ClientAddressMiddleware)],  # the login limiter needs the client's address
        openapi_url=None,  # FastAPI's own schema of every route would otherwise answer without a login
    )


def quiet_gradio() -> None:
    """No call home from the app or its workers (which inherit the environment): gradio's launch analytics
    and version check reach the Hugging Face servers, and a hosted app may have no route out."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"


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
