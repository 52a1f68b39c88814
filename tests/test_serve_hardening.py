"""tfx serve against hostile clients (issue 11, the server items): every numbered hole is a named test, the
request schemas get random JSON bodies (hypothesis), and a loopback abuse test runs well-formed clients
while every hostile kind of request is sent."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx
from hypothesis import HealthCheck, given, settings, strategies as st

GPT2 = "tfx-test/tiny-gpt2"
BERT = "tfx-test/tiny-bert"
KEY = "hardening-key-1"
MASK_INPUT = tm.FILL_MASK_CASES[1][0]


# --- helpers: the app in this process -------------------------------------------------------------


def make_app(**options):
    import torch

    from tfx.serve.app import create_app
    from tfx.serve.config import Settings
    from tfx.serve.models import Manager

    server = Settings(keep_alive_s=None, **{"allowed_hosts": ["testserver"], **options})
    manager = Manager(server, "cpu", torch.float32)
    return create_app(server, manager), manager


@pytest.fixture
def client(hub_cache):
    from fastapi.testclient import TestClient

    app, manager = make_app(max_tokens_cap=48)
    with TestClient(app) as c:
        c.manager = manager
        yield c


def post(c, path: str, body, **headers):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return c.post(path, content=data, headers={"content-type": "application/json", **headers})


def error_of(response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/json", response.text
    return response.status_code, response.json()["error"]["code"]


class Threaded:
    """The app under uvicorn on a thread of this process (real sockets, so a client can disconnect), with
    the manager at hand to look at its slots."""

    def __init__(self, **options):
        import uvicorn

        from tfx.serve.server import bind

        app, self.manager = make_app(**options)
        sock = bind("127.0.0.1", 0)
        self.host, self.port = sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def request(self, path: str, body: dict, timeout: float = 60):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), json.loads(response.read())
        finally:
            conn.close()

    def send_and_leave(self, path: str, body: dict) -> None:
        """A client that sends its request and disconnects without reading the answer."""
        data = json.dumps(body).encode()
        with socket.create_connection((self.host, self.port)) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
            time.sleep(0.2)

    def slot(self, name: str):
        (slot,) = [s for s in self.manager.slots.values() if name in s.names]
        return slot

    def block(self, name: str) -> threading.Event:
        """Occupy the model's thread until the returned event is set: whatever comes next waits in its queue."""
        release, started = threading.Event(), threading.Event()
        self.slot(name).executor.submit(lambda: (started.set(), release.wait(60)))
        assert started.wait(10)
        return release

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def wait_for(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


# --- 2. stop strings ------------------------------------------------------------------------------


def test_2_stop_strings_are_capped_in_count_and_length(client):
    base = {"model": GPT2, "prompt": "Hi", "max_tokens": 4}
    assert error_of(post(client, "/v1/completions", {**base, "stop": ["a", "b", "c", "d", "e"]})) == (400, "invalid_stop")
    assert error_of(post(client, "/v1/completions", {**base, "stop": "x" * 65})) == (400, "invalid_stop")
    assert error_of(post(client, "/v1/completions", {**base, "stop": "x" * 200_000})) == (400, "invalid_stop")
    assert post(client, "/v1/completions", {**base, "stop": ["x" * 64] * 4}).status_code == 200


def test_2_held_back_stop_check_is_linear_and_right():
    from tfx.serve.stops import StopScanner

    stop = "a" * 200_000 + "b"  # quadratic before: minutes per piece
    scanner = StopScanner([stop])
    started = time.monotonic()
    out = "".join(scanner.feed("a" * 1000) for _ in range(50))
    assert time.monotonic() - started < 2.0
    assert out == "" and len(scanner.held) == 50_000  # all of it may be the stop's start
    assert scanner.feed("c") == "a" * 50_000 + "c"

    scanner = StopScanner(["</s>", "ab"])
    pieces = [scanner.feed(p) for p in ["x<", "/s", "y a", "a", "b tail"]]
    assert "".join(pieces) == "x</sy a" and scanner.hit


@given(st.text("ab", max_size=12), st.text("ab", min_size=1, max_size=6))
@settings(max_examples=300, deadline=None)
def test_2_held_back_length_is_the_longest_stop_prefix_the_text_ends_with(text, stop):
    from tfx.serve.stops import _failure, held_length

    naive = max((k for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)
    assert held_length(text, stop, _failure(stop)) == naive


def test_2_stop_ends_generation_and_usage_counts_only_tokens_up_to_it(client):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tfx import hub

    body = {"model": GPT2, "prompt": tm.GPT2_PROMPT, "max_tokens": 30, "temperature": 0}
    full = post(client, "/v1/completions", body).json()
    stopped = post(client, "/v1/completions", {**body, "stop": [" great"]}).json()
    assert stopped["choices"][0]["text"] == tm.GPT2_CONTINUATION[: tm.GPT2_CONTINUATION.index(" great")]
    assert stopped["choices"][0]["finish_reason"] == "stop"

    path = hub.resolve(GPT2).path  # transformers' own stop_strings give the reference count
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    ids = tok(tm.GPT2_PROMPT, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=30, do_sample=False, stop_strings=[" great"], tokenizer=tok, pad_token_id=tok.eos_token_id)
    reference = out.shape[1] - ids["input_ids"].shape[1]
    assert stopped["usage"]["completion_tokens"] == reference < full["usage"]["completion_tokens"]

    (slot,) = [s for s in client.manager.slots.values() if GPT2 in s.names]
    assert slot.loaded.fast is not None and slot._task.fast is None  # the fast path does not take stop strings
    post(client, "/v1/completions", body)
    assert slot._task.fast is not None  # without them, greedy is back on it


# --- 3. one request budget ------------------------------------------------------------------------


def test_3_every_request_is_on_one_budget_checked_before_any_work(hub_cache):
    from fastapi.testclient import TestClient

    app, manager = make_app(max_inputs=8, max_request_tokens=200, max_top_k=5, max_masks=2)
    with TestClient(app) as c:
        cases = [
            ("/v1/completions", {"model": GPT2, "prompt": ["Hi"] * 9, "max_tokens": 2}, 413, "too_many_inputs"),
            ("/v1/generate", {"model": GPT2, "inputs": ["Hi"] * 9, "max_new_tokens": 2}, 413, "too_many_inputs"),
            ("/v1/fill-mask", {"model": BERT, "input": MASK_INPUT, "top_k": 6}, 400, "top_k_exceeded"),
            ("/v1/fill-mask", {"model": BERT, "input": "[MASK] [MASK] [MASK]."}, 400, "too_many_masks"),
            # zero-shot runs one forward pass per input and label: the labels count is capped (and budgeted)
            ("/v1/classify", {"model": "tfx-test/tiny-nli", "input": "x", "labels": [f"l{i}" for i in range(6)]}, 400, "too_many_labels"),
            # inputs x sequences x new tokens: 4 x 4 x 20 = 320 > 200
            ("/v1/completions", {"model": GPT2, "prompt": ["Hi"] * 4, "n": 4, "temperature": 1.0, "max_tokens": 20}, 413, "request_budget_exceeded"),
            ("/v1/generate", {"model": GPT2, "inputs": ["Hi"] * 4, "num_beams": 4, "max_new_tokens": 20}, 413, "request_budget_exceeded"),
            # inputs x masks x top_k: 8 x 2 x 5 = 80 is fine; the budget counts without running anything
        ]
        for path, body, status, code in cases:
            response = post(c, path, body)
            assert error_of(response) == (status, code), (path, body, response.text)
            assert "--max-" in response.json()["error"]["message"]  # the limit and its option are named
        assert manager.stats["batches"] == 0 and manager.stats["requests"] == 0  # nothing was queued
        ok = post(c, "/v1/fill-mask", {"model": BERT, "inputs": [MASK_INPUT] * 8, "top_k": 5})
        assert ok.status_code == 200 and len(ok.json()["results"][0]["predictions"][0]) == 5
        assert post(c, "/v1/completions", {"model": GPT2, "prompt": ["Hi"] * 4, "n": 2, "temperature": 1.0, "max_tokens": 20}).status_code == 200


def test_3_a_model_batch_counts_sequences_not_inputs(hub_cache):
    from tfx.serve.batcher import sequences
    from tfx.spec import GenerateSettings

    app, manager = make_app(max_batch_size=32)
    slot = manager.slot(manager.prepare(GPT2, "generate"))
    assert slot.batch_limit("generate", GenerateSettings()) == 32
    assert slot.batch_limit("generate", GenerateSettings(num_beams=32, num_return_sequences=32)) == 1
    assert sequences(GenerateSettings(num_return_sequences=4, do_sample=True)) == 4


def test_3_limits_are_serve_options_checked_at_start(tfx_env):
    assert_clean_error(tfx("serve", "--max-request-tokens", "0", env=tfx_env), 2, "--max-request-tokens")
    assert_clean_error(tfx("serve", "-m", GPT2, "-m", BERT, "--max-models", "1", env=tfx_env), 2, "--max-models")


# --- 4. client values that gave 500s ---------------------------------------------------------------


def test_4_max_new_tokens_past_the_context_is_a_4xx_not_a_cut_prompt(hub_cache):
    from fastapi.testclient import TestClient

    context = tm.GPT2_N_POSITIONS
    app, manager = make_app(max_tokens_cap=1024)
    with TestClient(app) as c:
        for path, body in (
            ("/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": context, "min_new_tokens": context}),
            ("/v1/generate", {"model": GPT2, "input": "Hi", "max_length": context + 1}),
            ("/v1/completions", {"model": GPT2, "prompt": "Hi", "max_tokens": 100}),
        ):
            response = post(c, path, body)
            assert error_of(response) in ((400, "invalid_parameter"), (400, "context_length_exceeded")), response.text  # the latter: OpenAI's code
            assert f"context is {context}" in response.json()["error"]["message"] or f"context of {context}" in response.json()["error"]["message"]
            assert "--" not in response.json()["error"]["message"], response.text  # the body's field, never a CLI flag (issue 20 #6)
        assert manager.stats["requests"] == 0  # refused before anything was queued
        done = post(c, "/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": context - 1})
        assert done.status_code == 200 and "error" not in done.json()["results"][0]


def test_4_the_cli_refuses_max_new_tokens_past_the_context_in_one_line(tfx_env):
    result = tfx("generate", "-m", GPT2, "--max-new-tokens", str(tm.GPT2_N_POSITIONS), "Hi", env=tfx_env)
    assert_clean_error(result, 2, "--max-new-tokens", str(tm.GPT2_N_POSITIONS))


def test_4_tiny_temperatures_nan_and_long_names_are_4xx(client):
    sample = {"model": GPT2, "input": "Hi", "do_sample": True, "max_new_tokens": 3}
    assert error_of(post(client, "/v1/completions", {"model": GPT2, "prompt": "Hi", "temperature": 1e-45})) == (400, "invalid_parameter")
    assert error_of(post(client, "/v1/generate", {**sample, "temperature": 1e-45})) == (400, "invalid_parameter")
    assert error_of(post(client, "/v1/generate", {**sample, "repetition_penalty": 1e-45})) == (400, "invalid_parameter")
    for field in ("temperature", "repetition_penalty", "top_p"):
        for literal in ("NaN", "Infinity", "-Infinity"):
            for path, body in (("/v1/completions", {"model": GPT2, "prompt": "Hi"}), ("/v1/generate", sample)):
                raw = json.dumps(body)[:-1] + f', "{field}": {literal}}}'
                assert error_of(post(client, path, raw)) == (400, "invalid_type"), (path, field, literal)
    for name in ("a" * 300, "b/" + "c" * 5000):
        assert error_of(post(client, "/v1/completions", {"model": name, "prompt": "Hi"})) == (404, "model_not_found")
    assert post(client, "/v1/completions", {"model": GPT2, "prompt": "Hi", "temperature": 0.01, "max_tokens": 2}).status_code == 200


# --- 5. abandoned work, queues, resident models ----------------------------------------------------


@pytest.fixture
def threaded(hub_cache):
    s = Threaded(max_queue=3)
    yield s
    s.stop()


def test_5_queued_work_of_a_disconnected_client_is_dropped(threaded):
    assert threaded.request("/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2})[0] == 200
    before = dict(threaded.manager.stats)
    release = threaded.block(GPT2)
    threaded.send_and_leave("/v1/generate", {"model": GPT2, "inputs": ["A story", "Another"], "max_new_tokens": 40, "min_new_tokens": 40})
    slot = threaded.slot(GPT2)
    assert wait_for(lambda: slot.pending == 0)  # the watcher saw the disconnect and cancelled its inputs
    release.set()
    assert threaded.request("/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2})[0] == 200
    stats = threaded.manager.stats
    assert stats["cancelled"] - before["cancelled"] == 2
    assert stats["inputs"] - before["inputs"] == 1  # only the later request ran


def test_5_a_full_queue_answers_503_with_retry_after(threaded):
    assert threaded.request("/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2})[0] == 200
    release = threaded.block(GPT2)
    waiting = ThreadPoolExecutor(2)
    futures = [waiting.submit(threaded.request, "/v1/generate", {"model": GPT2, "inputs": ["Hi"] * n, "max_new_tokens": 2}) for n in (1, 2)]
    slot = threaded.slot(GPT2)
    assert wait_for(lambda: slot.pending == 3)
    status, headers, body = threaded.request("/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2})
    assert (status, body["error"]["code"]) == (503, "queue_full") and headers["retry-after"] == "1"
    assert "--max-queue" in body["error"]["message"]
    release.set()
    assert [f.result(60)[0] for f in futures] == [200, 200]
    waiting.shutdown()
    assert threaded.request("/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2})[0] == 200


def test_5_max_models_unloads_the_least_recently_used(hub_cache):
    from fastapi.testclient import TestClient

    app, manager = make_app(max_models=1)
    with TestClient(app) as c:
        assert post(c, "/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2}).status_code == 200
        assert post(c, "/v1/fill-mask", {"model": BERT, "input": MASK_INPUT}).status_code == 200
        loaded = {name: slot.loaded is not None for slot in manager.slots.values() for name in slot.names}
        assert loaded == {GPT2: False, BERT: True} and manager.stats["evicted"] == 1
        again = post(c, "/v1/generate", {"model": GPT2, "input": tm.GPT2_PROMPT, "max_new_tokens": 30, "continuation_only": True})
        assert again.json()["results"][0]["output"] == tm.GPT2_CONTINUATION
        assert [slot.loaded is not None for slot in manager.slots.values()].count(True) == 1


# --- 7. what the server tells, and how it starts -----------------------------------------------------


def test_7_health_without_the_key_says_only_ok(hub_cache):
    from fastapi.testclient import TestClient

    app, _ = make_app(api_key=KEY)
    with TestClient(app) as c:
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/health", headers={"Authorization": "Bearer wrong"}).json() == {"status": "ok"}
        detailed = c.get("/health", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert detailed["status"] == "ok" and "models" in detailed and "requests" in detailed


def test_7_a_relative_name_does_not_tell_which_directories_exist(client, tmp_path, monkeypatch):
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "config.json").write_text('{"model_type": "gpt2"}')
    (tmp_path / "plain").mkdir()
    monkeypatch.chdir(tmp_path)
    answers = {}
    for name in ("saved", "plain", "absent"):
        response = post(client, "/v1/completions", {"model": name, "prompt": "Hi"})
        answers[name] = (response.status_code, response.json()["error"]["message"].replace(name, "NAME"))
    assert answers["saved"] == answers["plain"] == answers["absent"]
    assert answers["absent"][0] == 404


def test_7_unsafe_starts_are_refused(tfx_env):
    assert_clean_error(tfx("serve", "--host", "0.0.0.0", env=tfx_env), 2, "--api-key", "--insecure")
    assert_clean_error(tfx("serve", "--allow-pull", "--trust-remote-code", env=tfx_env), 2, "--allow-pull", "--trust-remote-code")
    from tfx.serve.config import Settings, check

    check(Settings(host="0.0.0.0", insecure=True))
    check(Settings(host="0.0.0.0", api_key=KEY))
    check(Settings(host="::1"))


def test_7_a_seed_is_the_requests_own_not_the_process(client):
    import torch

    seeded = {"model": GPT2, "prompt": "The", "max_tokens": 8, "temperature": 1.5, "seed": 7}
    state = torch.get_rng_state()
    first = post(client, "/v1/completions", seeded).json()["choices"][0]["text"]
    assert torch.equal(torch.get_rng_state(), state)  # the process's generator was not reseeded
    post(client, "/v1/completions", {**seeded, "seed": None})  # unseeded sampling in between
    assert post(client, "/v1/completions", seeded).json()["choices"][0]["text"] == first

    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from tfx import hub

    path = hub.resolve(GPT2).path
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    ids = tok("The", return_tensors="pt")
    set_seed(7)
    out = model.generate(**ids, do_sample=True, temperature=1.5, max_new_tokens=8, pad_token_id=tok.eos_token_id)
    full = tok.decode(out[0], skip_special_tokens=True)
    assert full == tok.decode(ids["input_ids"][0], skip_special_tokens=True) + first  # what set_seed gives


# --- hypothesis: random bodies never get a 500 ---------------------------------------------------------

FIELDS = {
    "/v1/completions": ["model", "prompt", "max_tokens", "temperature", "top_p", "n", "seed", "stop", "stream", "echo", "logprobs", "best_of", "top_k", "num_beams", "repetition_penalty"],
    "/v1/generate": ["model", "input", "inputs", "max_new_tokens", "max_length", "min_new_tokens", "num_return_sequences", "do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty", "seed", "stream", "revision"],
    "/v1/fill-mask": ["model", "input", "inputs", "top_k", "targets", "revision", "no_truncate"],
}
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 2), st.text(max_size=30),
    st.sampled_from([GPT2, BERT, "gpt2", "../x", "/etc", "a" * 300, "Hi [MASK].", MASK_INPUT, "[MASK]" * 40]),
)  # fmt: skip
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=5), st.dictionaries(st.text(max_size=5), SCALARS, max_size=3))


@st.composite
def bodies(draw, path: str):
    keys = draw(st.lists(st.sampled_from(FIELDS[path] + ["extra"]), unique=True, max_size=8))
    body = {key: draw(VALUES) for key in keys}
    if draw(st.booleans()):  # often a plausible core, so the checks past the schema run too
        body.setdefault("model", GPT2 if path != "/v1/fill-mask" else BERT)
        body.setdefault("prompt" if path == "/v1/completions" else "input", MASK_INPUT if path == "/v1/fill-mask" else "Hi")
    return body


@pytest.fixture(scope="module")
def fuzz_client(hub_cache):
    from fastapi.testclient import TestClient

    app, _ = make_app(max_tokens_cap=8, max_inputs=4, max_request_tokens=64, max_top_k=5)
    with TestClient(app) as c:
        yield c


def _assert_answered(response) -> None:
    assert response.status_code < 500, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        return
    data = response.json()
    assert ("error" in data) == (response.status_code >= 400), data


@pytest.mark.parametrize("path", list(FIELDS))
@given(data=st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_random_json_bodies_never_get_a_500(fuzz_client, path, data):
    body = data.draw(bodies(path))
    _assert_answered(post(fuzz_client, path, json.dumps(body, allow_nan=True)))


@given(raw=st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_bytes_never_get_a_500(fuzz_client, raw):
    for path in FIELDS:
        _assert_answered(post(fuzz_client, path, raw))


# --- the abuse test: a real server on loopback --------------------------------------------------------

HOSTILE = [  # (kind, path, body, status)
    ("long stop", "/v1/completions", {"model": GPT2, "prompt": "Hi", "stop": "x" * 200_000}, 400),
    ("five stops", "/v1/completions", {"model": GPT2, "prompt": "Hi", "stop": ["a", "b", "c", "d", "e"]}, 400),
    ("5000 prompts", "/v1/completions", {"model": GPT2, "prompt": ["Hi"] * 5000}, 413),
    ("huge top_k", "/v1/fill-mask", {"model": BERT, "input": MASK_INPUT, "top_k": 10**6}, 400),
    ("1000 masks", "/v1/fill-mask", {"model": BERT, "input": "[MASK] " * 1000}, 400),
    ("n x beams x inputs", "/v1/generate", {"model": GPT2, "inputs": ["Hi"] * 64, "num_beams": 32, "num_return_sequences": 32, "max_new_tokens": 32}, 413),
    ("past the context", "/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 64}, 400),
    ("tiny temperature", "/v1/completions", {"model": GPT2, "prompt": "Hi", "temperature": 1e-45}, 400),
    ("NaN", "/v1/completions", '{"model": "%s", "prompt": "Hi", "temperature": NaN}' % GPT2, 400),
    ("long model name", "/v1/completions", {"model": "a" * 300, "prompt": "Hi"}, 404),
    ("relative path", "/v1/completions", {"model": "tests", "prompt": "Hi"}, 404),
    ("revision traversal", "/v1/fill-mask", {"model": BERT, "revision": "../../../../tmp/x/ref", "input": MASK_INPUT}, 400),
    ("oversize body", "/v1/completions", {"model": GPT2, "prompt": "x" * (300 << 10)}, 413),
]
ABUSE_SECONDS = 10.0
LATENCY_BOUND_S = 10.0  # generous: CI is a loaded 2-core box
RSS_BOUND_MB = 2048


def _rss_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_abuse_on_loopback_well_formed_clients_keep_their_answers(tfx_env):
    from test_serve import Server

    env = {k: v for k, v in tfx_env.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    server = Server(["-m", GPT2, "-m", BERT, "--api-key", KEY, "--max-body", "256k", "--max-queue", "512"], env)
    latencies, hostile_got, counts, peak = [], [], {"sent": 0, "answered": 0}, [0]
    lock = threading.Lock()
    stop = threading.Event()

    def tally(key: str) -> None:
        with lock:
            counts[key] += 1

    def well_formed(i: int) -> None:
        cases = [
            ("/v1/completions", {"model": GPT2, "prompt": tm.GPT2_PROMPT, "max_tokens": 30, "temperature": 0}, lambda d: d["choices"][0]["text"] == tm.GPT2_CONTINUATION),
            ("/v1/fill-mask", {"model": BERT, "input": MASK_INPUT}, lambda d: d["results"][0]["output"] == MASK_INPUT.replace("[MASK]", tm.FILL_MASK_CASES[1][1])),
        ]
        n = 0
        while not stop.is_set():
            path, body, right = cases[(i + n) % 2]
            n += 1
            tally("sent")
            started = time.monotonic()
            status, _, data = server.request("POST", path, body, key=KEY)
            with lock:
                latencies.append(time.monotonic() - started)
            assert status == 200 and right(data), (path, status, data)
            tally("answered")

    def hostile() -> None:
        while not stop.is_set():
            for kind, path, body, status in HOSTILE:
                tally("sent")
                got, _, data = server.request("POST", path, body, key=KEY)
                hostile_got.append((kind, status, got, data["error"]["code"] if isinstance(data, dict) and "error" in data else data))
                tally("answered")
            tally("sent")  # a client that leaves its queued work behind
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            conn.request("POST", "/v1/generate", json.dumps({"model": GPT2, "inputs": ["Story"] * 8, "do_sample": True, "max_new_tokens": 40, "min_new_tokens": 40}), {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            conn.close()
            tally("sent")
            got, _, data = server.request("GET", "/health", key=None)
            hostile_got.append(("health without key", 200, got, data))
            assert data == {"status": "ok"}
            tally("answered")

    def watch_rss() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_kb(server.proc.pid, "VmRSS"))
            time.sleep(0.1)

    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(well_formed, i) for i in range(3)] + [pool.submit(hostile), pool.submit(hostile), pool.submit(watch_rss)]
            time.sleep(ABUSE_SECONDS)
            stop.set()
            for f in futures:
                f.result(120)
        peak_mb = max(peak[0], _rss_kb(server.proc.pid, "VmHWM")) / 1024
        stats = server.request("GET", "/health", key=KEY)[2]
        wrong = [h for h in hostile_got if h[1] != h[2]]
        figures = (
            f"requests sent {counts['sent']}, answered {counts['answered']} (hostile answered {len(hostile_got)}, "
            f"{len(HOSTILE) + 1} kinds, plus one disconnecting client per round; the server dropped "
            f"{stats['cancelled']} inputs of gone clients), well-formed {len(latencies)}: worst latency "
            f"{max(latencies):.2f} s, median {sorted(latencies)[len(latencies) // 2]:.3f} s; peak RSS {peak_mb:.0f} MB"
        )
        print("\nserver abuse test:", figures)
        assert not wrong, wrong[:5]
        assert len(latencies) >= 6 and max(latencies) < LATENCY_BOUND_S, figures
        assert peak_mb < RSS_BOUND_MB, figures
        assert server.proc.poll() is None
        assert not [line for line in server.log if "Traceback" in line or "internal error" in line], "".join(server.log)
    finally:
        server.stop()
