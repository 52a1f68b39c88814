"""The OpenAI surface real clients use (issue 19 item 3, issue 20 item 2), against one `tfx serve` on the tiny
chat model, the tiny GPT-2 and the tiny MiniLM: the request models derived from the settings schema, errors
naming the body's own fields, POST /v1/responses (plain and streamed), the developer role, token-id prompts,
logprobs (checked against a forward pass), response_format through constrained decoding, the cut before
tokenizing, and the official openai client, simonw's llm and langchain-openai on top."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import openai
import pytest
from test_serve import KEY, Server
from tiny_chat import CHAT_CASES, N_POSITIONS, SYSTEM, prompt_of

CHAT = "tfx-test/tiny-chat"
GPT2 = "tfx-test/tiny-gpt2"
MINILM = "tfx-test/tiny-minilm"


def snapshot(hub_cache, repo_id: str):
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


@pytest.fixture(scope="module")
def env(hub_cache) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env["HF_HUB_CACHE"] = str(hub_cache)
    return env


@pytest.fixture(scope="module")
def server(env):
    s = Server(["-m", CHAT, "--api-key", KEY], env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tokenizer(hub_cache):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(snapshot(hub_cache, CHAT))


@pytest.fixture(scope="module")
def model(hub_cache):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(snapshot(hub_cache, CHAT)).eval()


def user(text: str, system: str | None = None, role: str = "system") -> list[dict[str, str]]:
    return ([{"role": role, "content": system}] if system else []) + [{"role": "user", "content": text}]


def error_of(server, path: str, body: dict) -> tuple[int, dict]:
    status, _, data = server.request("POST", path, body)
    return status, data["error"]


# --- request models from the settings schema ------------------------------------------------------------


def test_request_models_are_derived_from_the_settings_schema():
    from tfx.serve import chat, responses, schemas
    from tfx.settings import schema
    from tfx.spec import SETTINGS

    for task, cls in SETTINGS.items():
        model = schemas.TASK_REQUESTS[task]
        names = {f.alias or n for n, f in model.model_fields.items()} - set(schemas.REQUEST_KEYS)
        assert names == {f.http_name for f in schema(cls) if f.opt.server}, task
    assert "from" in {f.alias for f in schemas.TranslateRequest.model_fields.values()}
    sampling = set(schemas.SamplingRequest.model_fields)  # one declaration, shared by the three bodies
    for body in (schemas.CompletionRequest, chat.ChatRequest, responses.ResponsesRequest):
        assert issubclass(body, schemas.SamplingRequest) and sampling <= set(body.model_fields)
    aliases = {f.alias or n for n, f in schemas.SamplingRequest.model_fields.items()}
    assert {"max_tokens", "n", "temperature", "top_p", "seed", "stop"} <= aliases


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/completions", {"model": GPT2, "prompt": "Hi", "temperature": -1}, "temperature"),
        ("/v1/completions", {"model": GPT2, "prompt": "Hi", "top_p": 2.0}, "top_p"),
        ("/v1/completions", {"model": GPT2, "prompt": "Hi", "max_tokens": 64}, "max_tokens"),  # past the 64-token context
        ("/v1/chat/completions", {"model": CHAT, "messages": user("Hi"), "max_completion_tokens": 0}, "max_completion_tokens"),
        ("/v1/responses", {"model": CHAT, "input": "Hi", "max_output_tokens": 500}, "max_output_tokens"),
        ("/v1/generate", {"model": GPT2, "input": "Hi", "top_p": 2.0}, "top_p"),
        ("/v1/translate", {"model": "tfx-test/tiny-t5", "input": "Hi"}, "to"),
    ],
)
def test_a_bad_setting_is_a_400_naming_the_http_field(server, path, body, param):
    status, error = error_of(server, path, body)
    assert status == 400 and error["param"] == param, error
    assert "--" not in error["message"] and param in error["message"], error


# --- /v1/responses --------------------------------------------------------------------------------------


def test_responses_text_and_message_input(server, tokenizer):
    client = server.client()
    for text, reply in CHAT_CASES[:2]:
        answer = client.responses.create(model=CHAT, input=text)
        assert answer.object == "response" and answer.status == "completed" and answer.output_text == reply
        assert answer.usage.input_tokens == len(tokenizer(prompt_of(text))["input_ids"])
        assert answer.usage.output_tokens == len(tokenizer(reply)["input_ids"])
        assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    text, reply = CHAT_CASES[1]
    with_instructions = client.responses.create(model=CHAT, input=[{"role": "user", "content": text}], instructions=SYSTEM)
    assert with_instructions.output_text == reply
    assert with_instructions.usage.input_tokens == len(tokenizer(prompt_of(text, SYSTEM))["input_ids"])
    short = client.responses.create(model=CHAT, input=text, max_output_tokens=3)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    assert short.usage.output_tokens == 3 and reply.startswith(short.output_text)


def test_responses_streamed_events(server):
    text, reply = CHAT_CASES[2]
    events = list(server.client().responses.create(model=CHAT, input=text, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == reply
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.output_text == reply and done.usage.output_tokens > 0 and events[-4].text == reply


def test_responses_streamed_logprobs_equal_the_whole_ones(server):
    text, _ = CHAT_CASES[1]
    client = server.client()
    asked = dict(model=CHAT, input=text, include=["message.output_text.logprobs"], top_logprobs=2, temperature=0, max_output_tokens=10)
    whole = client.responses.create(**asked)
    entries = whole.output[0].content[0].logprobs
    assert entries and "".join(e.token for e in entries) == whole.output_text

    def key(e):
        return e.token, round(e.logprob, 5), [(t.token, round(t.logprob, 5)) for t in e.top_logprobs]

    events = list(client.responses.create(**asked, stream=True))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    carrying = [d.logprobs for d in deltas if d.logprobs]
    assert len(carrying) > 1, "each delta carries its own tokens' logprobs, not all in the last one"
    assert [key(e) for c in carrying for e in c] == [key(e) for e in entries]
    assert all(len(e.top_logprobs) == 2 for e in entries)
    done = next(e for e in events if e.type == "response.output_text.done")
    assert [key(e) for e in done.logprobs] == [key(e) for e in entries]
    plain = list(client.responses.create(model=CHAT, input=text, temperature=0, max_output_tokens=10, stream=True))
    assert all(e.logprobs == [] for e in plain if e.type == "response.output_text.delta")


def test_responses_plain_input_to_a_model_without_template_is_text(server):
    from tiny_models import GPT2_CASES

    client = server.client()
    prompt, continuation = GPT2_CASES[0]
    completion = client.completions.create(model=GPT2, prompt=prompt, max_tokens=12, temperature=0)
    answer = client.responses.create(model=GPT2, input=prompt, max_output_tokens=12, temperature=0)
    assert answer.output_text == completion.choices[0].text == continuation[: len(answer.output_text)] and answer.output_text
    assert answer.usage.input_tokens == completion.usage.prompt_tokens and answer.usage.output_tokens == completion.usage.completion_tokens
    streamed = list(client.responses.create(model=GPT2, input=prompt, max_output_tokens=12, temperature=0, stream=True))
    assert "".join(e.delta for e in streamed if e.type == "response.output_text.delta") == answer.output_text
    for body in ({"input": [{"role": "user", "content": prompt}]}, {"input": prompt, "instructions": SYSTEM}):
        status, error = error_of(server, "/v1/responses", {"model": GPT2, **body})
        assert status == 400 and error["code"] == "no_chat_template" and error["param"] == "input", error
        assert "plain string" in error["message"], error


def test_the_developer_role_is_the_system_message(server):
    text, reply = CHAT_CASES[0]
    client = server.client()
    system = client.chat.completions.create(model=CHAT, messages=user(text, SYSTEM))
    developer = client.chat.completions.create(model=CHAT, messages=user(text, SYSTEM, role="developer"))
    assert developer.choices[0].message.content == system.choices[0].message.content == reply
    assert developer.usage.prompt_tokens == system.usage.prompt_tokens


# --- token-id prompts -----------------------------------------------------------------------------------


def test_token_id_prompts_equal_their_text(server, tokenizer):
    client = server.client()
    texts = [prompt_of(u) for u, _ in CHAT_CASES[:2]]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    by_text = client.completions.create(model=CHAT, prompt=texts, max_tokens=12, temperature=0)
    by_ids = client.completions.create(model=CHAT, prompt=ids, max_tokens=12, temperature=0)
    one = client.completions.create(model=CHAT, prompt=ids[0], max_tokens=12, temperature=0)
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices] == [r[: len(c.text)] for (_, r), c in zip(CHAT_CASES, by_text.choices)]
    assert one.choices[0].text == by_text.choices[0].text and by_ids.usage.prompt_tokens == sum(map(len, ids))
    for bad in ([len(tokenizer) + 5], [[1, 2], [-1]], [[]]):
        status, error = error_of(server, "/v1/completions", {"model": CHAT, "prompt": bad})
        assert status == 400 and error["param"] == "prompt", error


# --- logprobs ---------------------------------------------------------------------------------------------


def reference_logprobs(model, tokenizer, prompt: str, new_ids: list[int]):
    """log_softmax of the model's logits at each generated position (one forward pass over prompt + reply)."""
    import torch

    ids = tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        logits = model(torch.tensor([ids + new_ids])).logits[0].float()
    return torch.log_softmax(logits[len(ids) - 1 : len(ids) - 1 + len(new_ids)], dim=-1)


def test_chat_and_completion_logprobs_are_log_softmax_of_the_logits(server, model, tokenizer):
    text, reply = CHAT_CASES[1]
    client = server.client()
    answer = client.chat.completions.create(model=CHAT, messages=user(text), logprobs=True, top_logprobs=3, max_tokens=10)
    content = answer.choices[0].logprobs.content
    new_ids = tokenizer(answer.choices[0].message.content)["input_ids"]
    assert [c.token for c in content] and "".join(c.token for c in content) == answer.choices[0].message.content
    reference = reference_logprobs(model, tokenizer, prompt_of(text), new_ids)
    for step, entry in enumerate(content):
        assert abs(entry.logprob - reference[step, new_ids[step]].item()) < 1e-4
        best = reference[step].topk(3)
        assert [round(t.logprob, 4) for t in entry.top_logprobs] == [round(v, 4) for v in best.values.tolist()]
        assert bytes(entry.bytes).decode() == entry.token
    completion = client.completions.create(model=CHAT, prompt=prompt_of(text), logprobs=2, max_tokens=10, temperature=0)
    lp = completion.choices[0].logprobs
    assert lp.tokens == [c.token for c in content] and all(abs(a - c.logprob) < 1e-5 for a, c in zip(lp.token_logprobs, content))
    assert all(len(top) == 2 for top in lp.top_logprobs) and lp.text_offset[0] == 0
    chunks = list(client.chat.completions.create(model=CHAT, messages=user(text), logprobs=True, top_logprobs=3, max_tokens=10, stream=True))
    carrying = [c.choices[0].logprobs.content for c in chunks if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content]
    assert len(carrying) > 1, "each streamed chunk carries the logprobs of its own tokens, not all in the last one"
    streamed = [e for entries in carrying for e in entries]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in content]
    parts = list(client.completions.create(model=CHAT, prompt=prompt_of(text), logprobs=2, max_tokens=10, temperature=0, stream=True))
    per_chunk = [p.choices[0].logprobs for p in parts if p.choices and p.choices[0].logprobs and p.choices[0].logprobs.tokens]
    assert len(per_chunk) > 1
    for field in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [v for chunk in per_chunk for v in getattr(chunk, field)] == getattr(lp, field), field
    assert "".join(p.choices[0].text for p in parts if p.choices) == completion.choices[0].text


# --- response_format ------------------------------------------------------------------------------------

SCHEMA = {  # bounded strings and numbers: even a random tiny model closes it inside the token budget
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 6}, "age": {"type": "integer", "minimum": 0, "maximum": 99}, "pet": {"enum": ["cat", "dog"]}},
    "required": ["name", "age", "pet"],
    "additionalProperties": False,
}


def test_response_format_json_object_and_json_schema(server):
    import jsonschema

    client = server.client()
    obj = client.chat.completions.create(model=CHAT, messages=user(CHAT_CASES[1][0]), response_format={"type": "json_object"}, max_tokens=30)
    assert isinstance(json.loads(obj.choices[0].message.content), dict) and obj.choices[0].finish_reason == "stop"
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
    answer = client.chat.completions.create(model=CHAT, messages=user("Tell me a story."), response_format=fmt, max_tokens=60)
    jsonschema.validate(json.loads(answer.choices[0].message.content), SCHEMA)
    done = client.responses.create(model=CHAT, input="Hello!", text={"format": {"type": "json_schema", "name": "person", "schema": SCHEMA, "strict": True}}, max_output_tokens=60)
    jsonschema.validate(json.loads(done.output_text), SCHEMA)
    completion = client.completions.create(model=GPT2, prompt="The", max_tokens=48, extra_body={"response_format": fmt})
    jsonschema.validate(json.loads(completion.choices[0].text), SCHEMA)
    status, error = error_of(server, "/v1/chat/completions", {"model": CHAT, "messages": user("Hi"), "response_format": {"type": "yaml"}})
    assert status == 400 and error["param"] == "response_format"


# --- the cut before tokenizing (issue 20, item 2) -------------------------------------------------------


def test_a_multi_megabyte_prompt_is_cut_before_tokenizing(server):
    client = server.client()
    huge = "the cat sat on the mat. " * 200_000  # 4.8 MB
    started = time.monotonic()
    answer = client.completions.create(model=CHAT, prompt=huge, max_tokens=4, temperature=0)
    assert time.monotonic() - started < 5
    assert 0 < answer.usage.prompt_tokens <= N_POSITIONS - 4 and answer.usage.model_extra["truncated"] is True
    started = time.monotonic()
    streamed = list(client.completions.create(model=CHAT, prompt=huge, max_tokens=4, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert time.monotonic() - started < 5 and streamed[-1].usage.prompt_tokens == answer.usage.prompt_tokens
    for path, body in (("/v1/chat/completions", {"model": CHAT, "messages": user(huge)}), ("/v1/responses", {"model": CHAT, "input": huge})):
        started = time.monotonic()
        status, error = error_of(server, path, body)
        assert status == 400 and error["code"] == "context_length_exceeded" and time.monotonic() - started < 5
    small = client.completions.create(model=CHAT, prompt="Hello", max_tokens=2, temperature=0)
    assert "truncated" not in (small.usage.model_extra or {})
    client.embeddings.create(model=MINILM, input="warm")  # the load is not what is timed
    for path, body in (
        ("/v1/generate", {"model": CHAT, "input": huge, "max_new_tokens": 4}),
        ("/v1/generate", {"model": CHAT, "input": huge, "max_new_tokens": 4, "stream": True}),
        ("/v1/embeddings", {"model": MINILM, "input": huge}),
    ):
        started = time.monotonic()
        status, _, data = server.request("POST", path, body)
        assert status == 200 and time.monotonic() - started < 5, (path, str(data)[-200:])
    assert data["usage"]["prompt_tokens"] <= 512


# --- real clients: simonw's llm, langchain-openai ---------------------------------------------------------


def test_llm_with_extra_openai_models(server, env, tmp_path):
    text, reply = CHAT_CASES[1]
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: tiny-chat\n  model_name: {CHAT}\n  api_base: {server.url}/v1\n  api_key_name: tfx\n"
    )
    (tmp_path / "keys.json").write_text(json.dumps({"tfx": KEY}))
    run_env = {**env, "LLM_USER_PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "llm", "-m", "tiny-chat", "--no-log", text], env=run_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == reply
    r = subprocess.run([sys.executable, "-m", "llm", "-m", "tiny-chat", "--no-log", "--no-stream", "-s", SYSTEM, text], env=run_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == reply, r.stderr
    r = subprocess.run([sys.executable, "-m", "llm", "-m", "tiny-chat", "--no-log", "-o", "json_object", "1", "-o", "max_tokens", "30", text], env=run_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and isinstance(json.loads(r.stdout), dict), r.stderr


def test_langchain_chat_openai_and_embeddings(server, hub_cache):
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    from typing import Literal

    from pydantic import BaseModel

    text, reply = CHAT_CASES[0]
    llm = ChatOpenAI(model=CHAT, base_url=server.url + "/v1", api_key=KEY, max_retries=0, temperature=0, max_tokens=40)
    assert llm.invoke(text).content == reply
    assert "".join(chunk.content for chunk in llm.stream(text)) == reply

    class Person(BaseModel):  # bounded, so the random tiny model closes the JSON in its budget
        pet: Literal["cat", "dog"]
        happy: bool

    person = llm.with_structured_output(Person, method="json_schema", strict=True).invoke(text)
    assert isinstance(person, Person)

    embeddings = OpenAIEmbeddings(model=MINILM, base_url=server.url + "/v1", api_key=KEY, check_embedding_ctx_length=False, max_retries=0)
    vectors = embeddings.embed_documents(["a cat", "a dog"])
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(snapshot(hub_cache, MINILM))).encode(["a cat", "a dog"])
    assert len(vectors) == 2 and all(abs(a - b) < 1e-4 for v, r in zip(vectors, reference) for a, b in zip(v, r.tolist()))
    assert embeddings.embed_query("a cat") == pytest.approx(vectors[0], abs=1e-5)


def test_the_openai_client_maps_the_400s_to_bad_request(server):
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().completions.create(model=GPT2, prompt="Hi", temperature=-1)
    assert caught.value.status_code == 400 and caught.value.body["param"] == "temperature"


def test_the_load_bench_smoke(env, hub_cache, tmp_path):
    """bench/bench_serve_load.py for 2 s (issue 20's load test, 60 s in bench/): well-behaved clients beside
    8 MB prompts, cut bodies, dropped streams and cross-origin posts; every answer right, none lost, no 5xx."""
    figures = tmp_path / "load.json"
    bench = os.path.join(os.path.dirname(__file__), "..", "bench", "bench_serve_load.py")
    done = subprocess.run([sys.executable, bench, "--seconds", "2", "--hub-cache", str(hub_cache), "--json", str(figures)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(figures.read_text())
    assert result["wrong"] == result["lost"] == result["server_5xx"] == result["tracebacks_in_log"] == 0, result
    assert result["answers"].get("generate 200", 0) > 0 and result["answers"].get("embeddings 200", 0) > 0, result
    assert result["answers"].get("cross-origin 403", 0) > 0, result


def test_a_stream_whose_client_left_before_its_turn_reads_no_prompt():
    """A stream cancelled while it waited for the model's thread returns at once: before, it was started
    (model loaded, task built, the prompt read, a first token made) and thousands of dropped streams starved
    the well-behaved requests in bench/bench_serve_load.py (p99 23 s)."""
    import asyncio

    from tfx.serve.batcher import Slot
    from tfx.serve.work import Stream

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"a cancelled stream reached Slot.{name}")

    stream = Stream(asyncio.new_event_loop())
    stream.cancelled.set()
    assert Slot.stream_now(Untouchable(), "generate", None, "a prompt", stream, None) is None
