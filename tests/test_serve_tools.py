"""Tool calls on /v1/chat/completions (issue 19 item 4), against one `tfx serve` on the tiny chat model whose
template takes tools (tests/tiny_chat_tools.py): the official openai client's tools + tool_choice, whole and
streamed, the tool's result in the history, forced calls through constrained decoding, hostile tools as 400s,
and langchain-openai's bind_tools. Rendering is checked against transformers' apply_chat_template."""

from __future__ import annotations

import json
import os

import openai
import pytest
from test_serve import KEY, Server
from tiny_chat_tools import AFTER_RESULT, CALL, GREETING, HELLO, NO_TOOLS_WEATHER, TOOL_RESULT, TOOLS, WEATHER

TOOLS_MODEL = "tfx-test/tiny-chat-tools"
CHAT = "tfx-test/tiny-chat"
GPT2 = "tfx-test/tiny-gpt2"


@pytest.fixture(scope="module")
def server(hub_cache):
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env["HF_HUB_CACHE"] = str(hub_cache)
    s = Server(["-m", TOOLS_MODEL, "--api-key", KEY], env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def tokenizer(hub_cache):
    from transformers import AutoTokenizer

    repo = hub_cache / ("models--" + TOOLS_MODEL.replace("/", "--"))
    return AutoTokenizer.from_pretrained(repo / "snapshots" / (repo / "refs" / "main").read_text().strip())


def ask(client, text: str, **kw):
    kw.setdefault("max_tokens", 48)
    return client.chat.completions.create(model=TOOLS_MODEL, messages=[{"role": "user", "content": text}], temperature=0, **kw)


def prompt_tokens(tokenizer, messages, tools=None) -> int:
    return len(tokenizer(tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True))["input_ids"])


def test_auto_gives_the_call_and_the_plain_prompt_content(client, tokenizer):
    answer = ask(client, WEATHER, tools=TOOLS)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == CALL["name"]
    assert json.loads(call.function.arguments) == CALL["arguments"]
    assert answer.usage.prompt_tokens == prompt_tokens(tokenizer, [{"role": "user", "content": WEATHER}], TOOLS)
    assert answer.usage.completion_tokens > 0 and answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    plain = ask(client, HELLO, tools=TOOLS, tool_choice="auto").choices[0]
    assert plain.message.content == GREETING and not plain.message.tool_calls and plain.finish_reason == "stop"


def test_tool_choice_none_answers_in_words(client, tokenizer):
    answer = ask(client, WEATHER, tools=TOOLS, tool_choice="none")
    assert answer.choices[0].message.content == NO_TOOLS_WEATHER and not answer.choices[0].message.tool_calls
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens == prompt_tokens(tokenizer, [{"role": "user", "content": WEATHER}])


def test_streamed_call_deltas_assemble_to_the_same_call(client):
    whole = ask(client, WEATHER, tools=TOOLS).choices[0].message.tool_calls[0]
    chunks = list(ask(client, WEATHER, tools=TOOLS, stream=True, stream_options={"include_usage": True}))
    deltas = [d for c in chunks for choice in c.choices for d in (choice.delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == CALL["name"]
    assert all(d.index == 0 for d in deltas) and all(d.id is None and d.function.name is None for d in deltas[1:])
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == json.loads(whole.function.arguments)
    assert not any(choice.delta.content for c in chunks for choice in c.choices)
    assert [choice.finish_reason for c in chunks for choice in c.choices if choice.finish_reason] == ["tool_calls"]
    assert chunks[-1].usage.completion_tokens > 0
    text = "".join(choice.delta.content or "" for c in ask(client, HELLO, tools=TOOLS, stream=True) for choice in c.choices)
    assert text == GREETING


def test_a_follow_up_with_the_tool_result_renders(client, tokenizer):
    call = ask(client, WEATHER, tools=TOOLS).choices[0].message.tool_calls[0]
    messages = [
        {"role": "user", "content": WEATHER},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
    ]
    answer = client.chat.completions.create(model=TOOLS_MODEL, messages=messages, tools=TOOLS, temperature=0, max_tokens=48)
    assert answer.choices[0].message.content == AFTER_RESULT and answer.choices[0].finish_reason == "stop"
    reference = [messages[0], {**messages[1], "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": json.loads(call.function.arguments)}}]}, messages[2]]
    assert answer.usage.prompt_tokens == prompt_tokens(tokenizer, reference, TOOLS)


def test_a_forced_call_goes_through_the_grammar(client):
    """The model only ever learnt get_weather: a named get_time, with an enum argument, is the grammar's."""
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC"]}}, "required": ["zone"]}}}
    forced = ask(client, WEATHER, tools=TOOLS + [clock], tool_choice={"type": "function", "function": {"name": "get_time"}}).choices[0]
    assert forced.finish_reason == "tool_calls" and forced.message.content is None, forced
    (call,) = forced.message.tool_calls
    assert call.function.name == "get_time" and json.loads(call.function.arguments) == {"zone": "UTC"}
    required = ask(client, HELLO, tools=TOOLS, tool_choice="required").choices[0]
    assert required.finish_reason == "tool_calls", required
    arguments = json.loads(required.message.tool_calls[0].function.arguments)
    assert required.message.tool_calls[0].function.name == "get_weather" and set(arguments) == {"city"} and isinstance(arguments["city"], str)


def error_of(server, body: dict) -> dict:
    status, _, data = server.request("POST", "/v1/chat/completions", {"model": TOOLS_MODEL, "messages": [{"role": "user", "content": WEATHER}], "max_tokens": 4, **body})
    assert status == 400, (status, data)
    return data["error"]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]}, "tools"),
        ({"tools": TOOLS * 2}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f", "description": "x" * 300_000}}]}, "tools"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages"),
    ],
)
def test_malformed_tools_are_400s(server, body, param):
    error = error_of(server, body)
    assert error["param"] == param and error["type"] == "invalid_request_error", error


def test_tools_on_a_template_without_them_are_a_400(server, client):
    for model, code in ((GPT2, "no_chat_template"), (CHAT, "unsupported_tools")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": HELLO}], tools=TOOLS, max_tokens=4)
        assert caught.value.body["code"] == code, caught.value.body


def test_langchain_bind_tools(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=TOOLS_MODEL, base_url=server.url + "/v1", api_key=KEY, max_retries=0, temperature=0, max_tokens=48)
    message = llm.bind_tools(TOOLS).invoke(WEATHER)
    assert message.tool_calls and message.tool_calls[0]["name"] == CALL["name"] and message.tool_calls[0]["args"] == CALL["arguments"]


def test_a_schema_the_grammar_cannot_follow_is_a_400(server):
    odd = {"type": "function", "function": {"name": "odd", "parameters": {"type": "object", "properties": {"x": {"type": "no-such-type"}}}}}
    error = error_of(server, {"tools": [odd], "tool_choice": "required"})
    assert error["param"] == "tools" and "no-such-type" in error["message"] and "--" not in error["message"], error


# --- the readers, without a server ----------------------------------------------------------------------


def test_the_hermes_stream_reads_as_the_whole_reply():
    from tfx.serve import tools
    from tiny_chat_tools import call_text

    reader = tools.Reader("hermes")
    text = "Let me look. " + call_text() + " <tool_call>{not json}</tool_call> and " + call_text({"name": "f", "arguments": {}}) + " <tool_"
    content, calls = reader.whole(text)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "f"] and "{not json}" in content and content.endswith("<tool_")
    stream = reader.stream()
    deltas = [d for ch in text for d in stream.feed(ch)] + stream.finish()
    firsts = [e for k, d in deltas if k == "call" for e in d if "id" in e]
    assert [(e["index"], e["function"]["name"]) for e in firsts] == [(0, "get_weather"), (1, "f")]
    args = {i: "".join(e["function"]["arguments"] for k, d in deltas if k == "call" for e in d if e["index"] == i) for i in (0, 1)}
    assert [json.loads(args[i]) for i in (0, 1)] == [json.loads(c["function"]["arguments"]) for c in calls]
    assert "".join(d for k, d in deltas if k == "content") == text.replace(call_text(), "").replace(call_text({"name": "f", "arguments": {}}), "")


def test_a_response_template_is_read_by_transformers(tokenizer):
    """A tokenizer with its own response_template: transformers' parse_response reads it (arguments cast)."""
    import copy

    from tfx.serve import tools
    from tiny_chat_tools import call_text, prompt_of

    tok = copy.deepcopy(tokenizer)
    tok.response_template = {
        "defaults": {"role": "assistant"},
        "start_anchor": "<|assistant|>",
        "fields": {
            "tool_calls": {"open_pattern": r"\s*<tool_call>", "close": "</tool_call>", "repeats": True, "content": "json", "transform": {"type": "function", "function": "{content}"}},
            "content": {"close_pattern": r"\s*<\|endoftext\|>", "content": "text"},
        },
    }
    request = tools.checked(TOOLS, None)
    reader = tools.reader_for(tok, prompt_of(WEATHER, True), request, TOOLS_MODEL)
    assert reader.kind == "template"
    content, calls = reader.whole("Sure. " + call_text())
    assert content == "Sure." and [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [(CALL["name"], CALL["arguments"])]
    assert reader.whole(GREETING) == (GREETING, [])
    from tfx.serve.http import ApiError

    with pytest.raises(ApiError) as caught:  # a forced call cannot be wrapped in a response_template's markers
        tools.reader_for(tok, "", tools.checked(TOOLS, "required"), TOOLS_MODEL)
    assert caught.value.status == 400 and caught.value.param == "tool_choice"


def test_streamed_logprobs_with_tools_join_to_the_whole_ones(client):
    whole = ask(client, WEATHER, tools=TOOLS, logprobs=True).choices[0].logprobs.content
    chunks = list(ask(client, WEATHER, tools=TOOLS, logprobs=True, stream=True))
    streamed = [t for c in chunks for choice in c.choices if choice.logprobs and choice.logprobs.content for t in choice.logprobs.content]
    assert whole and [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in whole]
