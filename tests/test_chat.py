"""Chat (issue 15, item 1): /v1/chat/completions through the official openai client, `tfx generate --chat`
and `tfx chat`, on tfx-test/tiny-chat (a GPT-2 with a chat template that memorised CHAT_CASES). The
expected replies are what the model learnt; the prompts, token counts and one reply are also checked
against transformers itself (apply_chat_template, the tokenizer, model.generate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openai
import pytest
from clihelp import assert_clean_error, read_pty, tfx
from test_serve import KEY, Server
from tiny_chat import CHAT_CASES, SYSTEM, prompt_of

CHAT = "tfx-test/tiny-chat"
GPT2 = "tfx-test/tiny-gpt2"  # no chat template
BART = "tfx-test/tiny-bart"  # a tokenizer that adds BOS (and EOS) itself


def snapshot(hub_cache, repo_id: str):
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


@pytest.fixture(scope="module")
def tokenizer(hub_cache):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(snapshot(hub_cache, CHAT))


@pytest.fixture(scope="module")
def env(hub_cache) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env["HF_HUB_CACHE"] = str(hub_cache)
    return env


@pytest.fixture(scope="module")
def server(env):
    s = Server(["-m", CHAT, "--api-key", KEY, "--max-body", "64k"], env)
    yield s
    s.stop()


def conversation(user: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


# --- rendering ------------------------------------------------------------------------------------------


def test_rendering_is_transformers_apply_chat_template(tokenizer):
    from tfx.tasks import chat

    for user, _ in CHAT_CASES:
        for system in (None, SYSTEM):
            messages = conversation(user, system)
            prompt = chat.render(tokenizer, messages, CHAT)
            assert prompt == prompt_of(user, system) == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            assert tokenizer(prompt)["input_ids"] == tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]


def test_a_template_bos_is_not_doubled_by_a_tokenizer_that_adds_its_own(hub_cache):
    from transformers import AutoTokenizer

    from tfx.tasks import chat

    tok = AutoTokenizer.from_pretrained(snapshot(hub_cache, BART))
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    messages = [{"role": "user", "content": "Hello world"}]
    templated = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert chat.adds_bos(tok) and templated[0] == tok.bos_token_id
    ids = tok(chat.render(tok, messages, BART))["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[: len(templated)] == templated


def test_chat_settings_return_the_reply_only():
    from tfx.spec import GenerateSettings

    assert GenerateSettings(chat=True).continuation_only and not GenerateSettings().continuation_only


# --- /v1/chat/completions -------------------------------------------------------------------------------


@pytest.mark.parametrize("system", [None, SYSTEM])
def test_openai_client_chat_returns_the_memorised_replies(server, tokenizer, system):
    client = server.client()
    for user, reply in CHAT_CASES:
        answer = client.chat.completions.create(model=CHAT, messages=conversation(user, system))
        assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-") and answer.model == CHAT
        (choice,) = answer.choices
        assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", reply, "stop")
        assert answer.usage.prompt_tokens == len(tokenizer(prompt_of(user, system))["input_ids"])
        assert answer.usage.completion_tokens == len(tokenizer(reply)["input_ids"])
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_the_system_message_is_part_of_the_prompt(server, tokenizer):
    user, reply = CHAT_CASES[0]
    plain = server.client().chat.completions.create(model=CHAT, messages=conversation(user))
    with_system = server.client().chat.completions.create(model=CHAT, messages=conversation(user, SYSTEM))
    assert plain.choices[0].message.content == with_system.choices[0].message.content == reply
    assert with_system.usage.prompt_tokens - plain.usage.prompt_tokens == len(tokenizer(f"<|system|>{SYSTEM}\n")["input_ids"])


def test_openai_client_chat_streaming(server, tokenizer):
    user, reply = CHAT_CASES[2]
    chunks = list(server.client().chat.completions.create(model=CHAT, messages=conversation(user), stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks) and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == reply and len([p for p in pieces if p]) > 1  # streamed in pieces
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert not chunks[-1].choices and chunks[-1].usage.prompt_tokens == len(tokenizer(prompt_of(user))["input_ids"])
    assert chunks[-1].usage.completion_tokens == len(tokenizer(reply)["input_ids"])


def test_the_reply_is_what_model_generate_makes_of_the_rendered_template(server, hub_cache, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(snapshot(hub_cache, CHAT))
    user = CHAT_CASES[1][0]
    messages = conversation(user, SYSTEM)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    expected = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    answer = server.client().chat.completions.create(model=CHAT, messages=messages, max_tokens=20)
    assert answer.choices[0].message.content == expected


def test_max_tokens_stop_and_n(server):
    client = server.client()
    user, reply = CHAT_CASES[2]
    short = client.chat.completions.create(model=CHAT, messages=conversation(user), max_completion_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    assert reply.startswith(short.choices[0].message.content)
    cut = client.chat.completions.create(model=CHAT, messages=conversation(user), stop=[","])
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == (reply.split(",")[0], "stop")
    several = client.chat.completions.create(model=CHAT, messages=conversation(user), n=2, temperature=1.0, seed=7, max_tokens=8)
    assert [c.index for c in several.choices] == [0, 1] and all(c.message.role == "assistant" for c in several.choices)
    streamed = list(client.chat.completions.create(model=CHAT, messages=conversation(user), n=2, temperature=1.0, seed=7, max_tokens=8, stream=True))
    assert {c.choices[0].index for c in streamed} == {0, 1}
    assert sorted("".join(c.choices[0].delta.content or "" for c in streamed if c.choices[0].index == i) for i in (0, 1)) == sorted(c.message.content for c in several.choices)


def test_concurrent_conversations_of_different_lengths_share_batches(server):
    from concurrent.futures import ThreadPoolExecutor

    client = server.client()

    def ask(i: int):  # 16 lengths of conversation: a system message of 0 to 15 words
        user, reply = CHAT_CASES[i % len(CHAT_CASES)]
        system = " ".join(["ok"] * i) or None
        raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=conversation(user, system))
        answer = raw.parse()
        return (reply if system is None else None), answer.choices[0].message.content, answer.usage.prompt_tokens, int(raw.headers["x-tfx-batch-size"])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    assert all(got == want for want, got, _, _ in answers if want is not None)
    assert len({tokens for _, _, tokens, _ in answers}) >= 8
    assert max(size for _, _, _, size in answers) > 1  # the default max_tokens does not split them by length


def test_the_default_max_tokens_fills_the_room_in_few_sizes():
    from types import SimpleNamespace

    from tfx.serve.chat import ChatRequest
    from tfx.serve.config import Settings
    from tfx.serve.generation import reply_tokens, room_check
    from tfx.serve.http import ApiError

    prepared = SimpleNamespace(name=CHAT, config={"n_positions": 96}, family="decoder-only", generation_defaults={})
    sizes = {reply_tokens(n, prepared, Settings()) for n in range(1, 96)}
    assert sizes == {1, 2, 4, 8, 16, 32, 64}  # each the largest power of two that fits: batches by size, not by length
    assert all(reply_tokens(n, prepared, Settings()) <= 96 - n for n in range(1, 96))
    assert reply_tokens(10, prepared, Settings(max_tokens_cap=20)) == 20
    assert reply_tokens(10, SimpleNamespace(**{**vars(prepared), "generation_defaults": {"max_new_tokens": 12}}), Settings()) == 12
    room_check(ChatRequest.model_validate(chat_body(max_tokens=7)), 10, prepared, "messages")  # fits: no error
    with pytest.raises(ApiError, match="context"):
        reply_tokens(96, prepared, Settings())
    for body, name in ((chat_body(max_tokens=7), "max_tokens"), (chat_body(max_completion_tokens=7), "max_completion_tokens")):
        with pytest.raises(ApiError, match=f"context.*ask for at most 6|{name}") as caught:
            room_check(ChatRequest.model_validate(body), 90, prepared, "messages")
        assert caught.value.param == name


def test_a_model_without_a_chat_template_gets_a_400_pointing_at_completions(server):
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(model=GPT2, messages=conversation("Hello!"))
    assert caught.value.status_code == 400 and caught.value.code == "no_chat_template"
    message = caught.value.body["message"]
    assert "no chat template" in message and "/v1/completions" in message


def chat_body(**fields) -> dict:
    return {"model": CHAT, "messages": [{"role": "user", "content": "Hello!"}], **fields}


HOSTILE = [
    ("not json", b"{nope", 400),
    ("no messages", {"model": CHAT}, 400),
    ("messages empty", chat_body(messages=[]), 400),
    ("messages not a list", chat_body(messages="Hello!"), 400),
    ("message not an object", chat_body(messages=["Hello!"]), 400),
    ("role unknown", chat_body(messages=[{"role": "tool", "content": "x"}]), 400),
    ("role not a string", chat_body(messages=[{"role": 1, "content": "x"}]), 400),
    ("no content", chat_body(messages=[{"role": "user"}]), 400),
    ("content null", chat_body(messages=[{"role": "user", "content": None}]), 400),
    ("content a number", chat_body(messages=[{"role": "user", "content": 5}]), 400),
    ("an image part", chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]), 400),
    ("too many parts", chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}] * 65}]), 400),
    ("all empty", chat_body(messages=[{"role": "user", "content": "  "}]), 400),
    ("too many messages", chat_body(messages=[{"role": "user", "content": "a"}] * 1025), 400),
    ("past the context", chat_body(messages=[{"role": "user", "content": "Hello! " * 200}]), 400),
    ("far past the context", chat_body(messages=[{"role": "user", "content": "x" * 40000}]), 400),
    ("max_tokens past the room", chat_body(max_tokens=95), 400),
    ("max_tokens past the cap", chat_body(max_tokens=10**6), 400),
    ("max_tokens zero", chat_body(max_tokens=0), 400),
    ("n too large", chat_body(n=1000), 400),
    ("temperature a string", chat_body(temperature="hot"), 400),
    ("too many stops", chat_body(stop=["a", "b", "c", "d", "e"]), 400),
    ("tools", chat_body(tools=[{"type": "function", "function": {"name": "f"}}]), 400),
    ("top_logprobs without logprobs", chat_body(top_logprobs=2), 400),
    ("top_logprobs past 20", chat_body(logprobs=True, top_logprobs=21), 400),
    ("an unknown response_format", chat_body(response_format={"type": "yaml"}), 400),
    ("a json_schema without a schema", chat_body(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), 400),
    ("a role of no template", chat_body(messages=[{"role": "function", "content": "x"}]), 400),
    ("unknown model", chat_body(model="tfx-test/no-such-model"), 404),
    ("a model of another family", chat_body(model="tfx-test/tiny-bert"), 400),
]


@pytest.mark.parametrize("body,status", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_get_a_4xx_json_error(server, body, status):
    got, _, data = server.request("POST", "/v1/chat/completions", body)
    assert got == status, data
    assert isinstance(data, dict) and data["error"]["message"], data
    assert got == 404 or "--" not in data["error"]["message"], data  # a body's field, never a CLI flag (404: the server's --allow-pull)


def test_the_server_still_chats_after_the_hostile_bodies(server):
    user, reply = CHAT_CASES[0]
    assert server.client().chat.completions.create(model=CHAT, messages=conversation(user)).choices[0].message.content == reply
    assert server.health()["status"] == "ok"


# --- the CLI --------------------------------------------------------------------------------------------


def test_generate_chat_replies_to_each_record(tfx_env):
    users = [u for u, _ in CHAT_CASES]
    r = tfx("generate", "--chat", "-m", CHAT, env=tfx_env, stdin="\n".join(users) + "\n")
    assert r.code == 0, r.err
    assert r.lines == [reply for _, reply in CHAT_CASES]


def test_generate_chat_through_the_server(env, server):
    remote = {**env, "TFX_SERVER": server.url, "TFX_API_KEY": KEY}
    r = tfx("generate", "--chat", "-m", CHAT, "--format", "jsonl", env=remote, stdin=CHAT_CASES[1][0] + "\n")
    assert r.code == 0, r.err
    (record,) = [json.loads(line) for line in r.lines]
    assert (record["input"], record["output"]) == CHAT_CASES[1]


def test_generate_chat_without_a_template_is_a_one_line_error(tfx_env):
    assert_clean_error(tfx("generate", "--chat", "-m", GPT2, "Hello!", env=tfx_env), 2, "no chat template", "without --chat")


def test_chat_piped_keeps_the_history_and_reset_clears_it(tfx_env, hub_cache, tokenizer):
    (u1, r1), (u2, r2), _ = CHAT_CASES
    r = tfx("chat", "-m", CHAT, "--max-new-tokens", "12", env=tfx_env, stdin=f"{u1}\n\n/reset\n{u2}\n{u1}\n/exit\n{u2}\n")
    assert r.code == 0, r.err
    first, second, third = r.lines  # blank lines and commands get no reply; /exit ends the conversation
    assert first == r1[: len(first)] and second == r2[: len(second)]
    # The third turn's prompt holds the second turn (the history), not the first (reset): what
    # transformers makes of that conversation is the reply.
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(snapshot(hub_cache, CHAT))
    history = [{"role": "user", "content": u2}, {"role": "assistant", "content": second}, {"role": "user", "content": u1}]
    ids = tokenizer.apply_chat_template(history, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert third == tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).replace("\n", "\\n")


def test_chat_without_a_template_is_a_one_line_error(tfx_env):
    assert_clean_error(tfx("chat", "-m", GPT2, env=tfx_env, stdin="Hello!\n"), 2, "no chat template")


def test_chat_on_a_terminal_streams_replies_and_exits_on_slash_exit(tfx_env):
    import pty

    (u1, r1), (u2, r2), _ = CHAT_CASES
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tfx", "chat", "-m", CHAT], stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=tfx_env)
    os.close(slave)
    os.write(master, f"{u1}\n/reset\n{u2}\n/exit\nnever read\n".encode())
    shown = b"".join(read_pty(master)).decode("utf-8", "replace")
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert out.splitlines() == [r1, r2]  # the replies on stdout, the prompts and notes on the terminal's stderr
    assert ">>> " in shown and "/exit" in shown and "history cleared" in shown and "Traceback" not in shown
