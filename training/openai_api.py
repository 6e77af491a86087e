"""An OpenAI-compatible HTTP API over a finished job: `python app.py serve JOB_DIR`.

Speaks the subset of OpenAI's Chat Completions API a chat tool needs (`GET /v1/models`,
`POST /v1/chat/completions`, streamed or not) so any OpenAI client can talk to a fine-tuned model.
Generation goes through training.chat.ChatSession, the same path as the chat tab and `app.py chat`.
One model is in memory and answers one request at a time (a lock); other requests wait their turn.

Errors use OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`, naming the
field and the fix, so a client library raises its usual exception with our message in it.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from training import jobdir
from training.errors import UserError
from training.network import is_loopback
from training.tool_calls import template_call

log = logging.getLogger("lathe.api")

DEFAULT_MAX_TOKENS = 512  # when a request names no limit; finish_reason "length" says when it was reached
DEFAULT_MAX_WAITING = 16  # requests waiting for the model beyond the one generating; more get 429
DEFAULT_MAX_BODY_MB = 4  # a request body over this is refused (413) before it is parsed
# No tokenizer turns more than this many characters into one token on average, so a conversation longer than
# window x this cannot fit and is refused before it is tokenized (tokenizing 20 MB took +3 GB).
MAX_CHARS_PER_TOKEN = 32
SHUTDOWN_GRACE_SECONDS = 2  # SIGTERM: open requests get this long, then they are cancelled
# OpenAI options this server cannot honour: refused unless left at their "off" value, so no answer
# silently differs from what the request asked for.
UNSUPPORTED_UNLESS_OFF: dict[str, tuple] = {
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


class _StrictModel(BaseModel):
    """The base of every request model. strict: "5" is not a number and "true" is not a boolean, as in
    OpenAI's own API."""

    model_config = ConfigDict(strict=True)


class TextPart(_StrictModel):
    type: Literal["text"]
    text: str


class FunctionCall(_StrictModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(_StrictModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_StrictModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None  # None only for an assistant turn that made tool calls
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant turn's calls, sent back in the conversation
    tool_call_id: str | None = None  # a tool turn: the call it answers

    @model_validator(mode="after")
    def _content_or_calls(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise PydanticCustomError(
                "content_missing", "content is required (only an assistant turn with tool_calls may leave it out)"
            )
        return self

    @field_validator("content", mode="before")
    @classmethod
    def text_only(cls, value):
        """One clear message instead of pydantic's error for each branch of `str | list[TextPart]`."""
        if value is None or isinstance(value, str):
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

    def for_template(self) -> dict:
        if self.content is None or isinstance(self.content, str):
            text = self.content or ""
        else:
            text = "".join(part.text for part in self.content)
        # "developer" is OpenAI's newer name for the system message; chat templates know "system".
        message = {"role": "system" if self.role == "developer" else self.role, "content": text}
        if self.tool_calls:
            message["tool_calls"] = [template_call(call.model_dump()) for call in self.tool_calls]
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message


class FunctionDefinition(_StrictModel):
    model_config = ConfigDict(extra="allow")  # e.g. OpenAI's `strict` flag: accepted, passed on
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict | None = None


class ToolDefinition(_StrictModel):
    type: Literal["function"]
    function: FunctionDefinition


class StreamOptions(_StrictModel):
    include_usage: bool = False


class ChatRequest(_StrictModel):
    # extra="allow": fields this server has no use for (user, metadata, store...) are accepted and ignored.
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)  # torch's seed range; beyond it a 400
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[ToolDefinition] | None = None
    # "required" and naming one function would need constrained generation, which this server does not do
    tool_choice: Literal["none", "auto"] | None = None


class ApiError(Exception):
    """An error answered as OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = {401: "authentication_error", 429: "rate_limit_error", 500: "server_error"}.get(
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

    def tools(self, request: ChatRequest, messages: list[dict]) -> list[dict] | None:
        """The request's tools as the chat template takes them, or None; a model that cannot call them is a 400."""
        if not request.tools or request.tool_choice == "none":
            return None
        tools = [tool.model_dump(exclude_none=True) for tool in request.tools]
        try:
            problem = self.session.tools_problem(messages, tools)
        except Exception as error:  # noqa: BLE001 - a template that fails on tools cannot take them either
            problem = f"the model's chat template failed on these tools ({type(error).__name__}: {error})"
        if problem:
            raise ApiError(400, f"tools: {problem}.", param="tools")
        return tools

    def check_model(self, request: ChatRequest) -> None:
        if request.model != self.model_id:
            raise ApiError(
                404,
                f"The model `{request.model}` does not exist here; this server serves `{self.model_id}`.",
                param="model",
                code="model_not_found",
            )
        check_supported(request)

    def settings(self, request: ChatRequest, messages: list[dict], tools: list[dict] | None = None):
        from training.chat import GenerationSettings

        asked = request.max_completion_tokens or request.max_tokens
        asked_field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        window = self.session.context_window
        characters = sum(len(message["content"]) for message in messages) + len(json.dumps(tools or []))
        if window and characters > window * MAX_CHARS_PER_TOKEN:
            raise ApiError(
                400,
                f"messages: the conversation is {characters} characters, far more than this model's {window} "
                "tokens can hold. Shorten it.",
                param="messages",
                code="context_length_exceeded",
            )
        try:
            prompt = self.session.prompt_tokens(messages, tools)
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

    def prepare(self, request: ChatRequest):
        """Check the request and count its tokens (no generation): (messages, settings, include_usage, tools)."""
        messages = [message.for_template() for message in request.messages]
        self.check_model(request)
        tools = self.tools(request, messages)
        settings = self.settings(request, messages, tools)
        return messages, settings, bool(request.stream_options and request.stream_options.include_usage), tools

    def answer(self, messages, settings, tools, cancel=None) -> tuple[dict, str]:
        """Generate the whole reply: (the assistant message, finish_reason). With tools, the calls in the
        reply are read by the tokenizer's response template (training/tool_calls.py)."""
        text = "".join(self.session.stream(messages, tuned=self.tuned, settings=settings, cancel=cancel, tools=tools))
        finish = self.session.last_stats.finish_reason
        if not tools:
            return {"role": "assistant", "content": text}, finish
        parsed = self.session.parse_last_reply(messages, tools)
        message = {"role": "assistant", "content": parsed["content"]}
        if parsed["tool_calls"]:
            message["tool_calls"], finish = parsed["tool_calls"], "tool_calls"
        return message, finish

    def complete(self, request: ChatRequest, cancel: threading.Event | None = None, prepared=None) -> dict:
        messages, settings, _, tools = prepared or self.prepare(request)
        with self._lock:
            message, finish = self.answer(messages, settings, tools, cancel)
            stats = self.session.last_stats
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage(stats),
        }

    def stream(self, request: ChatRequest, cancel: threading.Event | None = None, prepared=None) -> Iterator[str]:
        """Server-Sent Events: a role delta, content deltas, a finish_reason chunk, (usage), [DONE].

        The request is checked before the first byte (errors are a plain 400), so this returns a
        generator only once the request is known to be good."""
        messages, settings, include_usage, tools = prepared or self.prepare(request)
        if tools:
            return self._answer_events(messages, settings, include_usage, tools, cancel)
        return self._events(messages, settings, include_usage, cancel)

    def _answer_events(self, messages, settings, include_usage: bool, tools, cancel=None) -> Iterator[str]:
        """With tools, the stream follows the whole reply: a call can be told from text only once it is read
        (OpenAI's shape: content, then each call as a `tool_calls` delta with its index)."""
        head, chunk = self._chunks()

        with self._lock:
            yield chunk({"role": "assistant", "content": ""})
            try:
                message, finish = self.answer(messages, settings, tools, cancel)
            except Exception as error:  # noqa: BLE001 - the status line is sent; report it in the stream
                log.error("generation failed: %s: %s", type(error).__name__, error)
                yield sse(ApiError(500, f"Generation failed: {type(error).__name__}: {error}").body())
                return
            stats = self.session.last_stats
        if message["content"]:
            yield chunk({"content": message["content"]})
        for index, call in enumerate(message.get("tool_calls", [])):
            yield chunk({"tool_calls": [{"index": index, **call}]})
        yield chunk({}, finish)
        if include_usage:
            yield sse({**head, "choices": [], "usage": usage(stats)})
        yield "data: [DONE]\n\n"

    def _chunks(self):
        """One answer's chunk header, and a function that wraps a delta in it as a Server-Sent Event."""
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
        head["model"] = self.model_id

        def chunk(delta: dict, finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse({**head, "choices": [choice]})

        return head, chunk

    def _events(self, messages, settings, include_usage: bool, cancel=None) -> Iterator[str]:
        head, chunk = self._chunks()

        with self._lock:
            yield chunk({"role": "assistant", "content": ""})
            pieces = self.session.stream(messages, tuned=self.tuned, settings=settings, cancel=cancel)
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


class ModelGate:
    """One request generates at a time; up to `max_waiting` more wait in the event loop, holding no thread.

    Waiting requests used to block worker threads on a lock: with ~45 of them the thread pool was used up and
    the stream holding the lock never got a thread for its next chunk, so everything hung. Here a waiting
    request is a coroutine on an asyncio.Lock; beyond the bound the answer is an immediate 429 with
    Retry-After. Used from the event loop's thread only."""

    def __init__(self, max_waiting: int = DEFAULT_MAX_WAITING):
        import asyncio

        self.max_waiting = max_waiting
        self.admitted = 0  # generating + waiting
        self._lock = asyncio.Lock()
        self._cancels: set[threading.Event] = set()
        self._turn_seconds = 5.0  # a running average of how long a turn takes, for Retry-After

    def reserve(self) -> threading.Event:
        """Take a place in the queue at once (or a 429); the Event returned cancels this turn's generation."""
        if self.admitted > self.max_waiting:
            retry = max(1, min(60, round(self._turn_seconds * self.admitted)))
            raise ApiError(
                429,
                f"The model is busy: {self.admitted} requests are ahead (at most {self.max_waiting} wait). "
                f"Retry in about {retry} s.",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(retry)},
            )
        self.admitted += 1
        cancel = threading.Event()
        cancel.started = None
        self._cancels.add(cancel)
        return cancel

    async def enter(self, cancel: threading.Event) -> None:
        """Wait for the model (a coroutine waiting on a lock, not a thread)."""
        await self._lock.acquire()
        cancel.started = time.monotonic()

    def leave(self, cancel: threading.Event) -> None:
        """Give back the place (and the model, if this request had its turn)."""
        cancel.set()
        self._cancels.discard(cancel)
        self.admitted -= 1
        if cancel.started is not None:
            self._turn_seconds = 0.8 * self._turn_seconds + 0.2 * (time.monotonic() - cancel.started)
            self._lock.release()

    def cancel_all(self) -> None:
        for cancel in list(self._cancels):
            cancel.set()


async def answer_unless_gone(request, cancel: threading.Event, work):
    """Run `work` in a thread; if the client hangs up first, cancel it (at the next token) and answer nobody."""
    import asyncio

    import anyio
    from fastapi.responses import Response

    task = asyncio.ensure_future(anyio.to_thread.run_sync(work))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.05)
            if done:
                return task.result()
            if await request.is_disconnected():
                cancel.set()
                with contextlib.suppress(Exception):
                    await task  # generation stops at its next token; then the model is free
                return Response(status_code=499)  # nobody reads it
    finally:
        cancel.set()  # also when this coroutine is cancelled (server shutdown)


def close_when_idle(events: Iterator[str]) -> None:
    """Close a generator that may still be running in another thread (it ends at the next token once its
    cancel is set; closing it meanwhile raises 'generator already executing')."""
    for _ in range(3000):
        try:
            events.close()
            return
        except ValueError:
            time.sleep(0.01)


def closing_event_stream(events: Iterator[str], cancel: threading.Event | None = None, on_close=None):
    """A text/event-stream response that stops generating and closes `events` when it ends, however it ends.

    When a client hangs up, Starlette cancels the response; an async generator wrapped around `events`
    would be left for the garbage collector, which may finalise it much later, or inside ChatSession's
    own generating thread. Setting `cancel` stops ChatSession at its next token; closing the generator
    in a worker thread then frees the model for the next request."""
    import anyio
    from fastapi.responses import StreamingResponse

    class Response(StreamingResponse):
        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                if cancel is not None:
                    cancel.set()
                with anyio.CancelScope(shield=True):  # runs while being cancelled
                    await anyio.to_thread.run_sync(close_when_idle, events)
                    if on_close is not None:
                        on_close()

    return Response(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class RequestLimits:
    """Pure ASGI middleware: the API key, and the body size limit before anything parses the body.

    Pure ASGI rather than FastAPI's @app.middleware("http"), which sits between a handler and the client's
    disconnect message."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        # constant time: the key cannot be guessed byte by byte
        if self.expected is not None and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            message = "Missing or wrong API key: send `Authorization: Bearer <key>`."
            return await send_error(send, ApiError(401, message, code="invalid_api_key"))
        limit_mb = self.max_body_bytes / 2**20
        too_large = ApiError(
            413,
            f"The request body is over this server's {limit_mb:g} MB limit (--max-body-mb). Send a shorter "
            "conversation.",
            code="request_too_large",
        )
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            return await send_error(send, too_large)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:  # a chunked body that never said its length
                from starlette.exceptions import HTTPException

                raise HTTPException(413, too_large.message)
            return message

        await self.app(scope, limited_receive, send)


async def send_error(send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    completions: ChatCompletions,
    api_key: str | None = None,
    created: int | None = None,
    max_waiting: int = DEFAULT_MAX_WAITING,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
):
    """The FastAPI app. `api_key`: when set, every request needs `Authorization: Bearer <key>`."""
    import contextlib as context

    import anyio
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    gate = ModelGate(max_waiting)  # its asyncio.Lock binds to the server's loop when first used

    @context.asynccontextmanager
    async def lifespan(app):
        yield
        gate.cancel_all()  # shutting down: stop generating now rather than at the end of the reply

    app = FastAPI(
        title="Lathe OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.add_middleware(RequestLimits, api_key=api_key, max_body_bytes=int(max_body_mb * 2**20))
    created = created or int(time.time())

    def error_response(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

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
        elif error.status_code == 413:
            message = str(error.detail)
        else:
            message = f"{request.method} {request.url.path}: {error.detail}"
        return error_response(ApiError(error.status_code, message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.error("request failed: %s: %s", type(error).__name__, error)  # the message, never a traceback
        return error_response(ApiError(500, f"The server failed to answer: {type(error).__name__}: {error}"))

    # async: these answer in the event loop, needing no worker thread, however busy the model is
    @app.get("/v1/models")
    async def list_models():
        model = {"id": completions.model_id, "object": "model", "created": created, "owned_by": "lathe"}
        return {"object": "list", "data": [model]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str):
        if model_id != completions.model_id:
            raise ApiError(404, f"The model `{model_id}` does not exist here.", param="model", code="model_not_found")
        return {"id": completions.model_id, "object": "model", "created": created, "owned_by": "lathe"}

    async def chat_completions(request: ChatRequest, http: Request):
        cancel = gate.reserve()  # a full queue answers at once, before the prompt is even tokenized
        handed_over = False
        try:
            prepared = await anyio.to_thread.run_sync(completions.prepare, request)
            await gate.enter(cancel)
            if request.stream:
                events = completions.stream(request, cancel, prepared)
                handed_over = True  # the response leaves the gate when it ends
                return closing_event_stream(events, cancel, on_close=lambda: gate.leave(cancel))
            return await answer_unless_gone(http, cancel, lambda: completions.complete(request, cancel, prepared))
        except (ApiError, anyio.get_cancelled_exc_class()):
            raise
        except Exception as error:  # noqa: BLE001 - answered as OpenAI's error object, logged in one line
            log.error("generation failed: %s: %s", type(error).__name__, error)
            raise ApiError(500, f"Generation failed: {type(error).__name__}: {error}") from None
        finally:
            if not handed_over:
                gate.leave(cancel)

    # `from __future__ import annotations` makes "Request" a string that FastAPI looks up in this module's
    # globals, where it is not (fastapi is imported only when serving): give FastAPI the class itself
    chat_completions.__annotations__["http"] = Request
    app.post("/v1/chat/completions")(chat_completions)
    return app


def model_id_for(job_dir: Path, tuned: bool) -> str:
    return job_dir.name if tuned else f"{job_dir.name}-base"


def job_folder(job_dir: str | Path) -> Path:
    return jobdir.require_job_dir(Path(job_dir).resolve(), hint="Give a finished job's folder.")


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
    max_waiting: int = DEFAULT_MAX_WAITING,
    max_body_mb: float = DEFAULT_MAX_BODY_MB,
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
    app = create_app(completions, api_key, max_waiting=max_waiting, max_body_mb=max_body_mb)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        server_header=False,  # no need to tell the internet which server this is
        proxy_headers=False,  # the client address is the peer's; nothing here trusts X-Forwarded-For
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,  # SIGTERM: open requests are cancelled after this
    )
