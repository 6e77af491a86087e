"""An OpenAI-compatible HTTP API over a finished job: `python app.py serve JOB_DIR`.

Speaks the subset of OpenAI's Chat Completions API a chat tool needs (`GET /v1/models`,
`POST /v1/chat/completions`, streamed or not) so any OpenAI client can talk to a fine-tuned model.
Generation goes through training.chat.ChatSession, the same path as the chat tab and `app.py chat`.
One model is in memory and answers one request at a time (a lock); other requests wait their turn.

Errors use OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`, naming the
field and the fix, so a client library raises its usual exception with our message in it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from training.errors import UserError

log = logging.getLogger("lathe.api")

DEFAULT_MAX_TOKENS = 512  # when a request names no limit; finish_reason "length" says when it was reached
# OpenAI options this server cannot honour: refused unless left at their "off" value, so no answer
# silently differs from what the request asked for.
UNSUPPORTED_UNLESS_OFF: dict[str, tuple] = {
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "stop": (None, [], ""),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "response_format": (None, {"type": "text"}),
    "n": (None, 1),
}


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True)
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def text_only(cls, value):
        """One clear message instead of pydantic's error for each branch of `str | list[TextPart]`."""
        if isinstance(value, str):
            return value
        shape = "a string, or a list of {'type': 'text', 'text': ...} parts"
        if not isinstance(value, list):
            raise PydanticCustomError("content_type", f"Input should be {shape}")
        for index, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise PydanticCustomError(
                    "content_part", f"part {index} is {kind!r}, but this model reads text only: give {shape}"
                )
        return value

    def for_template(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)
        # "developer" is OpenAI's newer name for the system message; chat templates know "system".
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    # strict: "5" is not a number and "true" is not a boolean, as in OpenAI's own API.
    # extra="allow": fields this server has no use for (user, metadata, store...) are accepted and ignored.
    model_config = ConfigDict(strict=True, extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None


class ApiError(Exception):
    """An error answered as OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = {401: "authentication_error", 404: "invalid_request_error", 500: "server_error"}.get(
            self.status, "invalid_request_error"
        )
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def field_path(loc: tuple) -> str:
    """('body', 'messages', 0, 'role') -> 'messages[0].role', the way OpenAI names a field."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validation_error(errors: list[dict]) -> ApiError:
    """The first problem of a request FastAPI could not parse, as a 400 naming the field."""
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", "parse error")
        return ApiError(400, f"The request body is not valid JSON ({reason}).")
    param = field_path(tuple(first["loc"]))
    if not param or param == "body":
        return ApiError(400, "The request body must be a JSON object with `model` and `messages`.")
    # pydantic's message only; never its `input`, which may be a whole conversation
    return ApiError(400, f"{param}: {first['msg']}.", param=param)


def check_supported(request: ChatRequest) -> None:
    for name, off_values in UNSUPPORTED_UNLESS_OFF.items():
        value = (request.model_extra or {}).get(name)
        if value not in off_values:
            raise ApiError(400, f"{name}: this server does not support {name!r} yet; leave it out.", param=name)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve to any interface: treat it as exposed


def check_exposure(host: str, api_key: str | None) -> None:
    """Issue #8: listening beyond this machine needs a key; anyone who can reach the port can use the model."""
    if not is_loopback(host) and not api_key:
        raise UserError(
            f"--host {host}: serving beyond this machine needs an API key, or anyone who reaches the port can use "
            "your model. Set LATHE_API_KEY=<a long random string> (or pass --api-key) and give clients the same "
            "key; or keep the default --host 127.0.0.1."
        )


def check_port_free(host: str, port: int) -> None:
    """Before loading the model (which takes a while), so a busy port is reported at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = f"cannot listen on {host}:{port} ({error.strerror})"
            raise UserError(f"--port {port}: {reason}. Choose another --port.") from None


class ChatCompletions:
    """Turns validated requests into ChatSession calls and OpenAI-shaped answers, one at a time."""

    def __init__(self, session, model_id: str, tuned: bool):
        self.session, self.model_id, self.tuned = session, model_id, tuned
        self._lock = threading.Lock()  # generation and its stats: one request at a time

    def settings(self, request: ChatRequest, messages: list[dict]):
        from training.chat import GenerationSettings

        if request.model != self.model_id:
            raise ApiError(
                404,
                f"The model `{request.model}` does not exist here; this server serves `{self.model_id}`.",
                param="model",
                code="model_not_found",
            )
        check_supported(request)
        asked = request.max_completion_tokens or request.max_tokens
        asked_field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        window = self.session.context_window
        try:
            prompt = self.session.prompt_tokens(messages)
        except UserError as error:
            raise ApiError(400, str(error), param="messages") from None
        room = window - prompt if window else None
        if room is not None and room < 1:
            raise ApiError(
                400,
                f"messages: the conversation is {prompt} tokens, and this model reads at most {window}. Shorten it.",
                param="messages",
                code="context_length_exceeded",
            )
        if asked and room is not None and asked > room:
            raise ApiError(
                400,
                f"{asked_field}: the conversation is {prompt} tokens of the model's {window}, so at most {room} "
                f"new tokens fit. Ask for {room} or fewer.",
                param=asked_field,
                code="context_length_exceeded",
            )
        limit = asked or (min(DEFAULT_MAX_TOKENS, room) if room else DEFAULT_MAX_TOKENS)
        return GenerationSettings(
            max_new_tokens=limit,
            temperature=1.0 if request.temperature is None else request.temperature,  # OpenAI's default
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed,
        )

    def complete(self, request: ChatRequest) -> dict:
        messages = [message.for_template() for message in request.messages]
        settings = self.settings(request, messages)
        with self._lock:
            text = self.session.reply(messages, tuned=self.tuned, settings=settings)
            stats = self.session.last_stats
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": stats.finish_reason,
                }
            ],
            "usage": usage(stats),
        }

    def stream(self, request: ChatRequest) -> Iterator[str]:
        """Server-Sent Events: a role delta, content deltas, a finish_reason chunk, (usage), [DONE].

        The request is checked before the first byte (errors are a plain 400), so this returns a
        generator only once the request is known to be good."""
        messages = [message.for_template() for message in request.messages]
        settings = self.settings(request, messages)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return self._events(messages, settings, include_usage)

    def _events(self, messages, settings, include_usage: bool) -> Iterator[str]:
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
        head["model"] = self.model_id

        def chunk(delta: dict, finish_reason: str | None = None, **extra) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse({**head, "choices": [choice], **extra})

        with self._lock:
            yield chunk({"role": "assistant", "content": ""})
            pieces = self.session.stream(messages, tuned=self.tuned, settings=settings)
            try:
                for piece in pieces:
                    yield chunk({"content": piece})
            except Exception as error:  # noqa: BLE001 - the status line is sent; report it in the stream
                log.error("generation failed: %s: %s", type(error).__name__, error)
                yield sse(ApiError(500, f"Generation failed: {type(error).__name__}: {error}").body())
                return
            finally:
                # A client that hung up: stop generating now and free ChatSession's own lock, rather than
                # whenever the garbage collector finalises the abandoned generator.
                pieces.close()
            stats = self.session.last_stats
        yield chunk({}, stats.finish_reason)
        if include_usage:  # OpenAI's shape: a last chunk with no choices and the usage
            yield sse({**head, "choices": [], "usage": usage(stats)})
        yield "data: [DONE]\n\n"


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def usage(stats) -> dict[str, int]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.new_tokens,
        "total_tokens": stats.prompt_tokens + stats.new_tokens,
    }


def closing_event_stream(events: Iterator[str]):
    """A text/event-stream response that closes `events` when it ends, however it ends.

    When a client hangs up, Starlette cancels the response; an async generator wrapped around `events`
    would be left for the garbage collector, which may finalise it much later, or inside ChatSession's
    own generating thread. Closing it here, in a worker thread, stops ChatSession at its next token
    and frees the model for the next request."""
    import anyio
    from fastapi.responses import StreamingResponse

    class Response(StreamingResponse):
        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                with anyio.CancelScope(shield=True):  # runs while being cancelled
                    await anyio.to_thread.run_sync(events.close)

    return Response(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def create_app(completions: ChatCompletions, api_key: str | None = None, created: int | None = None):
    """The FastAPI app. `api_key`: when set, every request needs `Authorization: Bearer <key>`."""
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="Lathe OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    created = created or int(time.time())
    expected = f"Bearer {api_key}".encode() if api_key else None

    def error_response(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):  # constant time: the key cannot be guessed byte by byte
                message = "Missing or wrong API key: send `Authorization: Bearer <key>`."
                return error_response(ApiError(401, message, code="invalid_api_key"))
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        return error_response(validation_error(list(error.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        if error.status_code == 404:
            message = f"No route {request.url.path}. This server has GET /v1/models and POST /v1/chat/completions."
        else:
            message = f"{request.method} {request.url.path}: {error.detail}"
        return error_response(ApiError(error.status_code, message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.error("request failed: %s: %s", type(error).__name__, error)  # the message, never a traceback
        return error_response(ApiError(500, f"The server failed to answer: {type(error).__name__}: {error}"))

    @app.get("/v1/models")
    def list_models():
        model = {"id": completions.model_id, "object": "model", "created": created, "owned_by": "lathe"}
        return {"object": "list", "data": [model]}

    @app.get("/v1/models/{model_id}")
    def get_model(model_id: str):
        if model_id != completions.model_id:
            raise ApiError(404, f"The model `{model_id}` does not exist here.", param="model", code="model_not_found")
        return {"id": completions.model_id, "object": "model", "created": created, "owned_by": "lathe"}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatRequest):
        try:
            if not request.stream:
                return await anyio.to_thread.run_sync(completions.complete, request)
            events = await anyio.to_thread.run_sync(completions.stream, request)
        except (ApiError, anyio.get_cancelled_exc_class()):
            raise
        except Exception as error:  # noqa: BLE001 - answered as OpenAI's error object, logged in one line
            log.error("generation failed: %s: %s", type(error).__name__, error)
            raise ApiError(500, f"Generation failed: {type(error).__name__}: {error}") from None

        return closing_event_stream(events)

    return app


def model_id_for(job_dir: Path, tuned: bool) -> str:
    return job_dir.name if tuned else f"{job_dir.name}-base"


def job_folder(job_dir: str | Path) -> Path:
    job_dir = Path(job_dir).resolve()
    if not (job_dir / "spec.yaml").is_file():
        raise UserError(f"{job_dir} is not a job folder (it has no spec.yaml). Give a finished job's folder.")
    return job_dir


def load(
    job_dir: str | Path, tuned: bool = True, token: str | None = None, engine: str | None = None
) -> ChatCompletions:
    """Load the job's model (the tuned one, or with tuned=False its base) ready to answer, on `engine`
    (training.chat.choose_engine: llama.cpp on a CPU where it is installed, else transformers)."""
    from training.chat import open_session

    job_dir = job_folder(job_dir)
    session = open_session(job_dir, token=token, answers="tuned" if tuned else "base", engine=engine)
    return ChatCompletions(session, model_id_for(job_dir, tuned), tuned)


def serve(
    job_dir: str | Path,
    host: str,
    port: int,
    tuned: bool,
    api_key: str | None,
    token: str | None,
    engine: str | None = None,
) -> None:
    import uvicorn

    check_exposure(host, api_key)
    job_folder(job_dir)
    check_port_free(host, port)
    print(f"loading {'the fine-tuned' if tuned else 'the base'} model of {Path(job_dir).name}...", flush=True)
    completions = load(job_dir, tuned=tuned, token=token, engine=engine)
    print(completions.session.description, flush=True)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving model `{completions.model_id}` at http://{shown}:{port}/v1 (OpenAI-compatible; "
        f"{'API key required' if api_key else 'no API key'}). Ctrl-C stops.",
        flush=True,
    )
    # server_header off: no need to tell the internet which server this is
    uvicorn.run(create_app(completions, api_key), host=host, port=port, log_level="info", server_header=False)
