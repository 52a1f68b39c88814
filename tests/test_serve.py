"""tfx serve on loopback, in a subprocess: the OpenAI client, batching, bad input, auth, keep-alive, and the CLI
with --server giving what a local run gives."""

from __future__ import annotations

import http.client
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import openai  # the official client; it and the server's fastapi and uvicorn come with the test extra
import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

GPT2 = "tfx-test/tiny-gpt2"
BERT = "tfx-test/tiny-bert"
T5 = "tfx-test/tiny-t5"
KEY = "test-key-5f3a"
CAP = 48  # --max-tokens-cap of the main server (the tiny GPT-2 has 64 positions)
MAX_BODY = 64 * 1024


class Server:
    """`tfx serve --port 0 ...` in a subprocess; its URL is read from the line it prints when ready."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfx", "serve", "--port", "0", *args],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.log: list[str] = []
        ready = threading.Event()

        def drain() -> None:  # keep reading, or a chatty server would block on a full pipe
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.log.append(line)
                if "serving on http://" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(90)
        found = [m for line in self.log if (m := re.search(r"serving on (http://\S+)", line))]
        if not found:
            self.stop()
            raise RuntimeError("tfx serve did not start:\n" + "".join(self.log))
        self.url = found[0].group(1)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, body: bytes | str | dict | None = None, headers: dict | None = None, key: str | None = KEY, timeout: float = 60):
        """-> (status, headers, parsed JSON body or text)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        all_headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read().decode()
            try:
                data = json.loads(data)
            except ValueError:
                pass
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()

    def health(self) -> dict:
        status, _, data = self.request("GET", "/health")  # with the key: the details (without: only the status)
        assert status == 200
        return data

    def client(self, key: str = KEY):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def env(hub_cache) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env["HF_HUB_CACHE"] = str(hub_cache)
    return env


@pytest.fixture(scope="module")
def server(env):
    s = Server(["-m", GPT2, "--api-key", KEY, "--max-tokens-cap", str(CAP), "--max-body", "64k"], env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def remote_env(env, server) -> dict[str, str]:
    """The environment of a `tfx` that sends its work to the server."""
    return {**env, "TFX_SERVER": server.url, "TFX_API_KEY": KEY}


# --- the OpenAI client ---------------------------------------------------------------------------


def test_openai_client_completion(server):
    client = server.client()
    done = client.completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, temperature=0)
    assert done.object == "text_completion" and done.model == GPT2
    (choice,) = done.choices
    assert choice.text == tm.GPT2_CONTINUATION  # only the new text, as OpenAI returns it
    assert choice.finish_reason == "stop" and choice.index == 0
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens

    prompts = [p for p, _ in tm.GPT2_CASES]
    several = client.completions.create(model=GPT2, prompt=prompts, max_tokens=30, temperature=0)
    assert [c.text for c in several.choices] == [c for _, c in tm.GPT2_CASES]
    assert [c.index for c in several.choices] == [0, 1, 2, 3]

    short = client.completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=3, temperature=0)
    assert short.choices[0].finish_reason == "length" and tm.GPT2_CONTINUATION.startswith(short.choices[0].text)

    stopped = client.completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, stop=[" great", "zzz"], echo=True)
    assert stopped.choices[0].text == tm.GPT2_TEXT[: tm.GPT2_TEXT.index(" great")]
    assert stopped.choices[0].finish_reason == "stop"

    assert GPT2 in [m.id for m in client.models.list().data]


def test_openai_client_streaming(server):
    client = server.client()
    chunks = list(client.completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, stream=True))
    assert len(chunks) > 2  # pieces arrive as they are made
    assert "".join(c.choices[0].text for c in chunks) == tm.GPT2_CONTINUATION
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.id == chunks[0].id for c in chunks)

    chunks = list(
        client.completions.create(
            model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, stream=True, stop=" great", stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == tm.GPT2_CONTINUATION[: tm.GPT2_CONTINUATION.index(" great")]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_sampling_with_a_seed_is_reproducible(server):
    client = server.client()
    ask = dict(model=GPT2, prompt="The", max_tokens=8, n=3, temperature=1.5, seed=7)
    first, second = client.completions.create(**ask), client.completions.create(**ask)
    assert len(first.choices) == 3
    assert [c.text for c in first.choices] == [c.text for c in second.choices]


# --- batching ------------------------------------------------------------------------------------


def test_fifty_concurrent_requests_are_batched_and_all_correct(server):
    client = server.client()
    before = server.health()

    def ask(i: int):
        prompt, continuation = tm.GPT2_CASES[i % len(tm.GPT2_CASES)]
        raw = client.completions.with_raw_response.create(model=GPT2, prompt=prompt, max_tokens=30, temperature=0)
        return continuation, raw.parse().choices[0].text, int(raw.headers["x-tfx-batch-size"])

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, range(50)))
    assert all(got == want for want, got, _ in answers), [a for a in answers if a[0] != a[1]]
    after = server.health()
    assert max(size for _, _, size in answers) > 1
    assert after["requests"] - before["requests"] == 50
    assert after["batches"] - before["batches"] < 50  # some requests shared a forward pass
    assert after["largest_batch"] > 1


def test_health_answers_during_a_long_generation(server):
    body = {"model": GPT2, "inputs": [f"Story {i}" for i in range(256)], "do_sample": True, "max_new_tokens": 40, "min_new_tokens": 40}
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(zip(("status", "headers", "data"), server.request("POST", "/v1/generate", body, timeout=600))))
    worker.start()
    time.sleep(0.3)
    waits = []
    while worker.is_alive() and len(waits) < 5:
        started = time.monotonic()
        server.health()
        waits.append(time.monotonic() - started)
        time.sleep(0.1)
    worker.join(600)
    assert answer["status"] == 200 and len(answer["data"]["results"]) == 256
    assert waits, "the generation finished before /health was asked"
    assert max(waits) < 0.5, waits


# --- bad input -----------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("malformed JSON", "/v1/completions", '{"model": "x", "prompt": ', 400, "invalid_json"),
    ("not an object", "/v1/completions", "[1, 2]", 400, "invalid_type"),
    ("wrong type", "/v1/completions", {"model": GPT2, "prompt": "Hi", "max_tokens": "ten"}, 400, "invalid_type"),
    ("bool for int", "/v1/completions", {"model": GPT2, "prompt": "Hi", "n": True}, 400, "invalid_type"),
    ("missing prompt", "/v1/completions", {"model": GPT2}, 400, "missing_field"),
    ("token ids of no int", "/v1/completions", {"model": GPT2, "prompt": [1.5, 2]}, 400, "invalid_type"),
    ("empty prompt", "/v1/completions", {"model": GPT2, "prompt": ""}, 400, "invalid_prompt"),
    ("temperature out of range", "/v1/completions", {"model": GPT2, "prompt": "Hi", "temperature": -1}, 400, "invalid_parameter"),
    ("greedy n > 1", "/v1/completions", {"model": GPT2, "prompt": "Hi", "n": 2, "temperature": 0}, 400, "invalid_parameter"),
    ("unknown model", "/v1/completions", {"model": "nobody/nothing", "prompt": "Hi"}, 404, "model_not_found"),
    ("local path", "/v1/completions", {"model": "/etc", "prompt": "Hi"}, 404, "model_not_found"),
    ("encoder cannot generate", "/v1/completions", {"model": BERT, "prompt": "Hi"}, 400, "model_task_mismatch"),
    ("decoder cannot fill masks", "/v1/fill-mask", {"model": GPT2, "input": "A [MASK]."}, 400, "model_task_mismatch"),
    ("max_tokens over the cap", "/v1/completions", {"model": GPT2, "prompt": "Hi", "max_tokens": CAP + 1}, 400, "max_tokens_exceeded"),
    ("max_new_tokens over the cap", "/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": CAP + 1}, 400, "max_tokens_exceeded"),
    ("oversize body", "/v1/completions", {"model": GPT2, "prompt": "x" * (MAX_BODY + 1)}, 413, "request_too_large"),
    ("misspelt parameter", "/v1/generate", {"model": GPT2, "input": "Hi", "max_tokens": 5}, 400, "invalid_type"),
    ("neither input nor inputs", "/v1/generate", {"model": GPT2}, 400, "missing_field"),
    ("pair the model was not trained on", "/v1/translate", {"model": T5, "input": "Hi", "to": "es"}, 400, "invalid_parameter"),
    ("stream from beam search", "/v1/generate", {"model": GPT2, "input": "Hi", "num_beams": 2, "stream": True}, 400, "invalid_stream"),
    ("unknown route", "/v1/chat/nothing", {}, 404, "not_found"),
]


@pytest.mark.parametrize("path, body, status, code", [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_json_error(server, path, body, status, code):
    got, headers, data = server.request("POST", path, body)
    assert (got, data["error"]["code"]) == (status, code), data
    assert headers["content-type"] == "application/json"
    assert data["error"]["message"] and data["error"]["type"]


def test_oversize_body_without_content_length_and_server_keeps_serving(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    chunks = iter([b'{"model": "' + GPT2.encode() + b'", "prompt": "', b"x" * (MAX_BODY + 10), b'"}'])
    conn.request("POST", "/v1/completions", body=chunks, headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["code"] == "request_too_large"
    conn.close()
    # After every bad request above, the server still answers good ones.
    assert server.proc.poll() is None
    done = server.client().completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, temperature=0)
    assert done.choices[0].text == tm.GPT2_CONTINUATION
    assert not [line for line in server.log if "Traceback" in line or "internal error" in line], "".join(server.log)


# --- auth ----------------------------------------------------------------------------------------


def test_api_key_is_required(server):
    body = {"model": GPT2, "prompt": "Hi", "max_tokens": 2}
    for key, headers in ((None, {}), ("wrong", {}), (None, {"Authorization": KEY}), (None, {"Authorization": "Basic " + KEY})):
        status, got_headers, data = server.request("POST", "/v1/completions", body, headers=headers, key=key)
        assert status == 401 and data["error"]["code"] == "invalid_api_key"
        assert got_headers["www-authenticate"] == "Bearer"
    assert server.request("GET", "/v1/models", key=None)[0] == 401
    with pytest.raises(openai.AuthenticationError):
        server.client(key="wrong").completions.create(model=GPT2, prompt="Hi", max_tokens=2)
    assert server.request("GET", "/health", key=None)[0] == 200  # for liveness probes


# --- keep-alive ----------------------------------------------------------------------------------


def test_idle_model_is_unloaded_after_keep_alive_and_reloaded_on_use(env):
    s = Server(["--keep-alive", "1s"], env)
    try:
        assert s.health()["models"] == []  # nothing loads before it is asked for
        ask = {"model": BERT, "input": tm.FILL_MASK_CASES[1][0]}
        status, _, data = s.request("POST", "/v1/fill-mask", ask, key=None)
        assert status == 200 and data["results"][0]["output"] == tm.FILL_MASK_CASES[1][0].replace("[MASK]", tm.FILL_MASK_CASES[1][1])
        assert [m["loaded"] for m in s.health()["models"]] == [True]
        deadline = time.monotonic() + 10
        while s.health()["models"][0]["loaded"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not s.health()["models"][0]["loaded"]
        while not any("unloaded" in line for line in s.log) and time.monotonic() < deadline + 5:
            time.sleep(0.1)  # the log line follows the unload
        assert any("unloaded" in line for line in s.log)
        status, _, again = s.request("POST", "/v1/fill-mask", ask, key=None)
        assert status == 200 and again["results"] == data["results"]
        assert s.health()["models"][0]["loaded"]
    finally:
        s.stop()


# --- the server's models, looked at from inside ---------------------------------------------------


class InProcessServer:
    """The server's app under uvicorn on a thread of this process, so a test can look at its slots."""

    request = Server.request
    health = Server.health
    client = Server.client

    def __init__(self):
        import torch
        import uvicorn

        from tfx.serve.app import create_app
        from tfx.serve.config import Settings
        from tfx.serve.models import Manager
        from tfx.serve.server import bind

        settings = Settings(port=0, keep_alive_s=None)
        self.manager = Manager(settings, "cpu", torch.float32)  # the fast GPT-2 path's device and dtype
        sock = bind("127.0.0.1", 0)
        self.host, self.port = sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.uvicorn = uvicorn.Server(uvicorn.Config(create_app(settings, self.manager), log_config=None, log_level="warning"))
        self.thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [sock]}, name="test-serve", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.uvicorn.started, "the in-process server did not start"

    def slots_of(self, name: str) -> list:
        return [slot for slot in self.manager.slots.values() if name in slot.names]

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(30)


@pytest.fixture
def inside(hub_cache):
    from tfx import loading

    s = InProcessServer()
    s.loads = []
    real_load = loading.load

    def counted(prepared, *args, **kwargs):
        s.loads.append((prepared.name, prepared.auto_class))
        return real_load(prepared, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loading, "load", counted)
        try:
            yield s
        finally:
            s.stop()


def test_bart_large_generate_and_fill_mask_share_one_loaded_model(inside):
    filled = inside.request("POST", "/v1/fill-mask", {"model": "facebook/bart-large", "input": "The [MASK] was here."})
    assert filled[0] == 200 and "error" not in filled[2]["results"][0], filled
    generated = inside.request("POST", "/v1/generate", {"model": "facebook/bart-large", "input": "The cat was here.", "max_new_tokens": 5})
    assert generated[0] == 200 and "error" not in generated[2]["results"][0], generated
    again = inside.request("POST", "/v1/fill-mask", {"model": "facebook/bart-large", "input": "The [MASK] was here."})
    assert again[2]["results"] == filled[2]["results"]  # the generate task's turn left the model as it was

    (slot,) = inside.slots_of("facebook/bart-large")
    assert slot.head == "AutoModelForSeq2SeqLM"
    assert inside.loads == [("facebook/bart-large", "AutoModelForSeq2SeqLM")]  # loaded once, for both tasks
    assert [m["id"] for m in inside.health()["models"]] == ["facebook/bart-large"]


def test_a_sampling_request_leaves_the_fast_path_to_greedy_ones(inside):
    greedy = {"model": GPT2, "prompt": tm.GPT2_PROMPT, "max_tokens": 30, "temperature": 0}
    status, _, first = inside.request("POST", "/v1/completions", greedy)
    assert status == 200 and first["choices"][0]["text"] == tm.GPT2_CONTINUATION
    (slot,) = inside.slots_of(GPT2)
    assert slot.loaded.fast is not None and slot._task.fast is not None

    sampled = inside.request("POST", "/v1/completions", {"model": GPT2, "prompt": "The", "max_tokens": 8, "temperature": 1.0})
    assert sampled[0] == 200 and sampled[2]["choices"][0]["text"]
    assert slot._task.fast is None and slot.loaded._model is not None  # sampling ran on transformers

    status, _, after = inside.request("POST", "/v1/completions", greedy)
    assert status == 200 and after["choices"][0]["text"] == tm.GPT2_CONTINUATION
    assert slot.loaded.fast is not None and slot._task.fast is not None  # greedy is back on the fast path
    assert inside.loads == [(GPT2, "AutoModelForCausalLM")]


def test_usage_is_counted_without_loading_transformers_on_the_fast_path(inside):
    status, _, done = inside.request("POST", "/v1/completions", {"model": GPT2, "prompt": tm.GPT2_PROMPT, "max_tokens": 30, "temperature": 0})
    assert status == 200 and done["choices"][0]["text"] == tm.GPT2_CONTINUATION
    (slot,) = inside.slots_of(GPT2)
    task = slot._task
    assert done["usage"]["prompt_tokens"] == len(task.tokenizer(tm.GPT2_PROMPT)["input_ids"]) > 0
    assert done["usage"]["completion_tokens"] > 0

    streamed = inside.client().completions.create(
        model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == tm.GPT2_CONTINUATION
    assert chunks[-1].usage.prompt_tokens == done["usage"]["prompt_tokens"]

    assert slot.loaded.fast is not None and task.fast is not None
    assert slot.loaded._tokenizer is None and slot.loaded._model is None  # no transformers tokenizer or model


# --- the CLI through the server ------------------------------------------------------------------


def test_generate_through_the_server_matches_local(env, remote_env):
    prompts = [p for p, _ in tm.GPT2_CASES]
    local = tfx("generate", "-m", GPT2, "--format", "jsonl", *prompts, env=env)
    remote = tfx("generate", "-m", GPT2, "--format", "jsonl", *prompts, env=remote_env)
    assert local.code == remote.code == 0, (local.err, remote.err)
    assert remote.out == local.out and remote.err == ""
    text = tfx("generate", "-m", GPT2, *prompts, env=remote_env)
    assert text.code == 0 and text.lines == tm.GPT2_SENTENCES
    assert [json.loads(line)["output"] for line in local.lines] == tm.GPT2_SENTENCES


def test_fill_mask_through_the_server_matches_local_with_a_bad_record(env, remote_env):
    lines = [case for case, _ in tm.FILL_MASK_CASES[:2]] + ["no mask here"] + [tm.FILL_MASK_CASES[2][0]]
    stdin = "\n".join(lines) + "\n"
    args = ("fill-mask", "-m", BERT, "--top-k", "2", "--format", "jsonl", "--keep-going")
    local = tfx(*args, env=env, stdin=stdin)
    remote = tfx(*args, env=remote_env, stdin=stdin)
    assert local.code == remote.code == 1
    assert remote.out == local.out and remote.err == local.err
    assert "line 3" in remote.err and len(remote.lines) == 4

    stopped = tfx("fill-mask", "-m", BERT, env=remote_env, stdin=stdin)
    assert_clean_error(stopped, 1, "line 3", "no mask")
    assert stopped.lines == [case.replace("[MASK]", word) for case, word in tm.FILL_MASK_CASES[:2]]


def test_translate_and_summarize_through_the_server(env, remote_env):
    pairs = tm.TRANSLATIONS[("en", "fr")]
    args = ("translate", "-m", T5, "--to", "fr", "--format", "jsonl", *[s for s, _ in pairs])
    local = tfx(*args, env=env)
    remote = tfx(*args, env=remote_env)
    assert local.code == remote.code == 0, remote.err
    assert remote.out == local.out
    assert [json.loads(line)["output"] for line in remote.lines] == [t for _, t in pairs]

    summary = tfx("summarize", "-m", T5, tm.ARTICLE, env=remote_env)
    assert summary.code == 0 and summary.lines == [tm.SUMMARY]
    wrong_pair = tfx("translate", "-m", T5, "--to", "es", "Hello.", env=remote_env)
    assert_clean_error(wrong_pair, 2, "cannot translate en->es")


def test_tokens_stream_through_the_server_on_a_terminal(remote_env):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfx", "generate", "-m", GPT2, tm.GPT2_PROMPT],
        env=remote_env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while select.select([master], [], [], 60)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(60) == 0, proc.stderr.read()
    os.close(master)
    assert b"".join(chunks).decode().replace("\r\n", "\n") == tm.GPT2_TEXT + "\n"
    assert len(chunks) > 1  # the prompt first, then pieces as they were made


def test_remote_cli_never_imports_torch(remote_env):
    script = (
        "import sys\nfrom tfx.cli import app\n"
        f"try:\n    app(['generate', '-m', {GPT2!r}, {tm.GPT2_PROMPT!r}])\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "print(code, 'torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=remote_env, capture_output=True, text=True, timeout=60)
    assert proc.stdout == tm.GPT2_TEXT + "\n"
    assert proc.stderr.split() == ["0", "False", "False"], proc.stderr


def test_server_errors_come_back_as_local_errors(env, remote_env):
    missing = tfx("generate", "-m", "nobody/nothing", "Hi", env=remote_env)
    assert_clean_error(missing, 1, "nobody/nothing", "server's cache")
    mismatch = tfx("fill-mask", "-m", GPT2, "A [MASK].", env=remote_env)
    assert_clean_error(mismatch, 1, "has no masked-LM head")
    no_key = tfx("generate", "-m", GPT2, "Hi", env={**remote_env, "TFX_API_KEY": "wrong"})
    assert_clean_error(no_key, 1, "401", "TFX_API_KEY")


def test_serve_start_errors_are_one_line(env, server):
    busy = tfx("serve", "--port", str(server.port), env=env)
    assert_clean_error(busy, 1, f"cannot listen on 127.0.0.1:{server.port}", "--port")
    missing = tfx("serve", "--port", "0", "-m", "nobody/nothing", env=env)
    assert_clean_error(missing, 1, "nobody/nothing")
    assert_clean_error(tfx("serve", "--keep-alive", "soon", env=env), 2, "--keep-alive")


def test_unreachable_server_is_a_one_line_error(env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    r = tfx("generate", "--server", f"http://127.0.0.1:{port}", "Hi", env=env)
    assert_clean_error(r, 1, "cannot reach the tfx server", f"127.0.0.1:{port}")
    bad_url = tfx("generate", "--server", "ftp://example", "Hi", env=env)
    assert_clean_error(bad_url, 2, "--server")


# --- the access log and the Host check on a real server (issue 19 item 3, issue 20 #1) ----------------


def test_19_3_the_server_writes_one_access_line_per_request(server):
    marker = "/v1/models/no-such-model-for-the-access-log"
    assert server.request("GET", marker)[0] == 404
    deadline = time.monotonic() + 10
    while not [line for line in server.log if marker in line] and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in server.log if marker in line]
    assert len(lines) == 1 and re.match(rf"tfx serve: GET {marker} 404 model=- tokens=- \d+\.\dms$", lines[0].strip()), lines


def test_20_1_a_dns_rebinding_host_is_refused_before_the_key(server):
    status, _, data = server.request("GET", "/v1/ps", headers={"Host": f"rebind.evil.example:{server.port}"}, key=None)
    assert status == 421 and data["error"]["code"] == "misdirected_request", data
