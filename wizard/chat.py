"""The chat tab: the fine-tuned model and the base model answer the same message side by side."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from training import jobdir
from training.errors import UserError
from training.jobs import JobManager


@dataclass
class ChatTab:
    job: gr.Dropdown
    load: gr.Button
    status: gr.Markdown
    tuned: gr.Chatbot
    base: gr.Chatbot
    message: gr.Textbox


class SessionCache:
    """One loaded chat model at a time, shared by every browser session (models are big).

    A base model from the Hub is loaded with the asking session's token. A model loaded with one
    session's token is not handed to a session with another token (or none), which might not be allowed
    to download it: that session loads it again with its own. Only a digest of the token is kept here.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._session = None

    def get(self, job_dir: str, device: str | None, token: str | None = None):
        from training.chat import open_session  # loads torch: only when someone chats

        key = (job_dir, token_digest(token) if base_from_hub(job_dir) else "")
        with self._lock:
            if self._key != key:
                self._session = None  # free the old model before loading the next
                # On a CPU with llama.cpp installed, the job's GGUF answers (made once, in the job folder)
                self._session = open_session(job_dir, token=token or None, device=device, say=lambda _: None)
                self._key = key
            return self._session


def token_digest(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def base_from_hub(job_dir: str) -> bool:
    """Whether the job's base model is downloaded from the Hub (so the token matters), not a local folder."""
    from training.models import starting_point

    return not Path(starting_point(jobdir.load_job_spec(job_dir))[0]).is_dir()


def text_of(content) -> str:
    """gradio 6 may hand message content back as a list of parts; the chat template wants text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def plain_history(history: list[dict]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": text_of(m["content"])} for m in history or []]


def choose_device(manager: JobManager) -> tuple[str | None, str]:
    """Keep the chat model off a GPU that a running job is using, and say so."""
    from training.hardware import detect_hardware

    running = [j for j in manager.list_jobs() if manager.snapshot(j).state in jobdir.ACTIVE_STATES]
    if detect_hardware().gpus and running:
        return "cpu", f"A job is training on the GPU ({running[0]}), so the chat model runs on the CPU for now."
    return None, ""


def build(manager: JobManager, sessions: SessionCache, token: gr.State) -> ChatTab:
    """`token`: the session's Hugging Face token (server-side state), for a base model from the Hub."""
    gr.Markdown(
        "### Chat with a finished job\nThe fine-tuned model (left) and the base model (right) answer the "
        "same message. Each reply shows its time to first token and tokens per second."
    )
    with gr.Row():
        job = gr.Dropdown(choices=[], label="Job", scale=3, allow_custom_value=True)  # filled on load, after login
        load = gr.Button("Load", scale=1)
    status = gr.Markdown()
    with gr.Accordion("System prompt and generation settings", open=False):
        system = gr.Textbox(label="System prompt", info="Empty: the model's own default system prompt.")
        with gr.Row():
            temperature = gr.Slider(
                0.0, 2.0, value=0.0, step=0.05, label="Temperature", info="0 = always the same answer"
            )
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
            max_new_tokens = gr.Slider(8, 1024, value=128, step=8, label="Max new tokens")
        tools = gr.Code(
            language="json",
            label="Tools the model may call (optional)",
            value="",
            lines=3,
        )
        gr.Markdown(
            "A JSON list of function schemas, as OpenAI's API takes them "
            '(`[{"type": "function", "function": {"name": ..., "parameters": {...}}}]`). A call the model makes '
            "shows as 🔧 with its arguments; it needs a model whose template and tokenizer define tool calls."
        )
    with gr.Row():
        tuned = gr.Chatbot(label="Fine-tuned", height=360)
        base = gr.Chatbot(label="Base model", height=360)
    message = gr.Textbox(label="Message", placeholder="Who are you?")
    with gr.Row():
        send = gr.Button("Send", variant="primary")
        clear = gr.Button("Clear chat")

    def load_job(job_id, secret):
        if not job_id:
            return "Pick a finished job."
        device, note = choose_device(manager)
        try:
            session = sessions.get(manager.snapshot(job_id).job_dir, device, secret)
        except (UserError, KeyError) as error:
            return f"⚠ {error}"
        return f"Loaded **{job_id}** ({session.description}). {note}".strip()

    def respond(secret, job_id, text, system_prompt, temp, p, max_tokens, tuned_history, base_history, tools_text):
        from training.chat import GenerationSettings

        text, system_prompt = (text or "").strip(), (system_prompt or "").strip()  # an untouched box sends None
        if not job_id or not text:
            yield tuned_history, base_history, "Pick a job and type a message.", text
            return
        try:
            session = sessions.get(manager.snapshot(job_id).job_dir, choose_device(manager)[0], secret)
            tools = parse_tools(tools_text)
            problem = tools and session.tools_problem([{"role": "user", "content": text}], tools)
            if problem:
                raise UserError(f"Tools: {problem}.")
        except (UserError, KeyError) as error:
            yield tuned_history, base_history, f"⚠ {error}", text
            return
        settings = GenerationSettings(max_new_tokens=int(max_tokens), temperature=temp, top_p=p)
        histories = {True: plain_history(tuned_history), False: plain_history(base_history)}
        stats = []
        for is_tuned in (True, False):
            history = histories[is_tuned] + [{"role": "user", "content": text}]
            prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + history
            reply = ""
            for piece in session.stream(prompt, tuned=is_tuned, settings=settings, tools=tools):
                reply += piece
                histories[is_tuned] = history + [{"role": "assistant", "content": reply}]
                yield histories[True], histories[False], " · ".join(stats), ""
            if tools:  # the calls in the reply, read by the tokenizer's response template
                histories[is_tuned] = history + shown_reply(session.parse_last_reply(prompt, tools))
            s = session.last_stats
            stats.append(
                f"{'tuned' if is_tuned else 'base'}: first token {s.time_to_first_token_s:.2f} s, "
                f"{s.tokens_per_second:.1f} tokens/s"
            )
        yield histories[True], histories[False], " · ".join(stats), ""

    load.click(load_job, inputs=[job, token], outputs=status, api_name="load_chat")
    inputs = [token, job, message, system, temperature, top_p, max_new_tokens, tuned, base, tools]
    outputs = [tuned, base, status, message]
    send.click(respond, inputs=inputs, outputs=outputs, api_name="chat")
    message.submit(respond, inputs=inputs, outputs=outputs, api_visibility="private")
    clear.click(lambda: ([], [], ""), outputs=[tuned, base, status], api_visibility="private")
    return ChatTab(job=job, load=load, status=status, tuned=tuned, base=base, message=message)


def parse_tools(text: str | None) -> list[dict] | None:
    """The tools box: empty is no tools; otherwise a JSON list of function schemas."""
    if not (text or "").strip():
        return None
    try:
        tools = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            f"Tools: not valid JSON ({error.msg}, line {error.lineno}). Fix it, or empty the box."
        ) from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and "function" in t for t in tools):
        raise UserError('Tools: give a list of {"type": "function", "function": {...}} objects, or empty the box.')
    return tools


def shown_reply(parsed: dict) -> list[dict]:
    """A reply read for tool calls, as chat messages: its text, then each call marked as one."""
    shown = [{"role": "assistant", "content": parsed["content"]}] if parsed["content"] else []
    for call in parsed["tool_calls"]:
        function = call["function"]
        shown.append(
            {
                "role": "assistant",
                "content": f"🔧 {function['name']}({function['arguments']})",
                "metadata": {"title": f"Tool call: {function['name']}"},
            }
        )
    return shown or [{"role": "assistant", "content": ""}]


def can_chat(snapshot) -> bool:
    """Finished with a model that writes text (a reward model only scores it)."""
    if not snapshot.output_dir:
        return False
    try:
        return jobdir.load_job_spec(snapshot.job_dir).method.objective != "reward"
    except UserError:
        return False


def finished_jobs(manager: JobManager, current: str | None = None):
    """The chat's job list: the finished jobs that can chat, keeping the one chosen when it still can."""
    finished = [j for j in manager.list_jobs() if can_chat(manager.snapshot(j))]
    return gr.update(choices=finished, value=current if current in finished else next(iter(finished), None))


def connect_tab(opened: gr.Tab, tab: ChatTab, manager: JobManager) -> None:
    """`opened`: the tab itself, whose list of jobs is refreshed each time it is opened."""
    opened.select(
        lambda current: finished_jobs(manager, current), inputs=tab.job, outputs=tab.job, api_visibility="private"
    )
