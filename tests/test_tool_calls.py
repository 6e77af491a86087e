"""Tool calling end to end: a model trained on a function-calling row, served by `app.py serve`, answers the
official `openai` client with a parsed `tool_calls` entry (the tokenizer's own response template reads it),
takes the tool's result back in the conversation, and a model that cannot call tools is refused clearly."""

from __future__ import annotations

import json

import openai
import pytest
from chat_templates import CHATML_TOOLS
from test_data_shapes import TOOL_ROW, WEATHER
from test_openai_api import running

from training.events import Progress

# How a call looks in this ChatML layout's output, as transformers' response templates declare it
CHATML_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {
            "open": "<tool_call>",
            "close": "</tool_call>",
            "repeats": True,
            "content": "json",
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close": "<|im_end|>", "content": "text"},
    },
}
QUESTION = TOOL_ROW["messages"][:1]


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, tiny_model_dir):
    """The tiny model with a tool-capable chat template and a response template."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tool-model")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHATML_TOOLS
    tokenizer.response_template = CHATML_RESPONSE_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tool_job(tmp_path_factory, tool_model):
    """A full fine-tune that learns to call get_weather for the question (every assistant turn trained)."""
    from training.engine import run_job
    from training.spec import JobSpec

    folder = tmp_path_factory.mktemp("tool-job")
    data = folder / "calls.jsonl"
    data.write_text(json.dumps(TOOL_ROW) + "\n")
    spec = JobSpec().with_overrides(
        {
            "name": "tool-caller",
            "model.name_or_path": str(tool_model),
            "data.source": str(data),
            "data.validation_split": 0.0,
            "data.mix_in": [],
            "method.type": "full",
            "hyperparameters.context_length": 256,
            "hyperparameters.max_steps": 100,
            "hyperparameters.batch_size": 1,
            "hyperparameters.learning_rate": 1e-2,
            "hyperparameters.warmup_ratio": 0.0,
            "hyperparameters.precision": "fp32",
            "hyperparameters.save_steps": 1000,
            "output.evaluate": False,
        }
    )
    job_dir = folder / "tool-caller-20261201-120000"
    job_dir.mkdir()
    (job_dir / "spec.yaml").write_text(spec.to_yaml())
    events: list = []
    run_job(spec, job_dir, events.append, lambda: False)
    # The event log a worker writes, so the job shows as finished (the chat tab lists finished jobs)
    (job_dir / "events.jsonl").write_text("".join(event.to_json() + "\n" for event in events))
    losses = [e.loss for e in events if isinstance(e, Progress) and e.loss is not None]
    assert losses[-1] < losses[0] * 0.1, losses
    return job_dir


@pytest.fixture(scope="module")
def client(tool_job):
    from training.openai_api import create_app, load

    with running(create_app(load(tool_job))) as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)


def test_the_served_model_answers_with_a_parsed_tool_call_and_reads_the_result(client, tool_job):
    answer = client.chat.completions.create(model=tool_job.name, messages=QUESTION, tools=[WEATHER], temperature=0)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_") and not choice.message.content

    # The call and the tool's result go back in; the conversation is longer by exactly those turns
    follow_up = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"},
    ]
    after = client.chat.completions.create(
        model=tool_job.name, messages=follow_up, tools=[WEATHER], temperature=0, max_tokens=8
    )
    assert after.usage.prompt_tokens > answer.usage.prompt_tokens + 10

    # Streamed: the same call, as a tool_calls delta with its index
    chunks = list(
        client.chat.completions.create(
            model=tool_job.name, messages=QUESTION, tools=[WEATHER], temperature=0, stream=True
        )
    )
    streamed = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert [calls[0].index for calls in streamed] == [0]
    assert streamed[0][0].function.name == "get_weather" and chunks[-1].choices[0].finish_reason == "tool_calls"

    # tool_choice "none": the tools stay out of the prompt and the answer is text
    plain = client.chat.completions.create(model=tool_job.name, messages=QUESTION, tools=[WEATHER], tool_choice="none")
    assert plain.choices[0].message.tool_calls is None and plain.usage.prompt_tokens < answer.usage.prompt_tokens


def test_a_model_without_a_response_template_refuses_tools_and_names_the_fix(tmp_path, tiny_model_dir):
    from helpers import make_adapter_job

    from training.openai_api import create_app, load

    job = make_adapter_job(tmp_path / "plain-20261201-120000", tiny_model_dir)
    with running(create_app(load(job))) as url:
        plain = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
        with pytest.raises(openai.BadRequestError) as caught:
            plain.chat.completions.create(model=job.name, messages=QUESTION, tools=[WEATHER])
        error = caught.value.body
        assert error["param"] == "tools" and "response_template" in error["message"]
        with pytest.raises(openai.BadRequestError) as caught:
            plain.chat.completions.create(model=job.name, messages=QUESTION, tools=[WEATHER], tool_choice="required")
        assert caught.value.body["param"] == "tool_choice"


def test_the_chat_tab_shows_the_call_and_a_bad_tools_box_is_named(tool_job):
    from gradio_client import Client

    from training.jobs import JobManager
    from wizard.app import serve_wizard

    demo = serve_wizard(JobManager(tool_job.parent), port=None, block=False)
    try:
        client = Client(demo.local_url, verbose=False)
        tools = json.dumps([WEATHER])
        tuned, base, stats, _ = client.predict(
            tool_job.name, "Weather in Paris?", "", 0.0, 1.0, 64, [], [], tools, api_name="/chat"
        )
        (call,) = [m for m in tuned if "🔧" in str(m["content"])]
        assert 'get_weather({"city": "Paris"})' in str(call["content"]) and "first token" in stats
        _, _, problem, _ = client.predict(
            tool_job.name, "Weather in Paris?", "", 0.0, 1.0, 64, [], [], "[{not json", api_name="/chat"
        )
        assert problem.startswith("⚠ Tools: not valid JSON")
    finally:
        demo.close()
