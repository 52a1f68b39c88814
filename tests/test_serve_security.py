"""tfx serve's structure and its guards (issue 19 item 2 and the serve parts of issue 20): serve/ untied and
checked inside, errors in OpenAI's shape, the browser as attacker (Host, Origin, CORS, JSON bodies), aliases
and models.retrieve, the task check before anything loads, cancellation per token, the access log, and a
bounded schemathesis run over the published schema. In-process apps (TestClient, or uvicorn on a thread)."""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import time
from pathlib import Path

import openai
import pytest
from clihelp import assert_clean_error, tfx
from test_serve_hardening import Threaded, make_app, post, wait_for

GPT2 = "tfx-test/tiny-gpt2"
CHAT = "tfx-test/tiny-chat"  # a GPT-2 with a chat template: no sentence-transformers pooling
BERT = "tfx-test/tiny-bert"
KEY = "security-key-1"
ORIGIN = "http://front.example:3000"
SERVE = Path(__file__).resolve().parents[1] / "src" / "tfx" / "serve"
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed(hub_cache):
    """A keyed app with an alias and one allowed origin; the chat model loaded (as -m would)."""
    from fastapi.testclient import TestClient

    app, manager = make_app(api_key=KEY, aliases={"tiny": GPT2}, allowed_origins=[ORIGIN], models=[CHAT], max_tokens_cap=16)
    manager.preload(CHAT)
    with TestClient(app) as c:
        c.manager = manager
        yield c


def body_of(response) -> dict:
    assert response.headers["content-type"] == "application/json", response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    return error


# --- issue 19 item 2: serve/ untied ---------------------------------------------------------------


def test_19_2_serve_has_no_cycle_importlib_or_type_checking_imports_and_the_contract_looks_inside():
    import tomllib

    sources = {p.name: p.read_text() for p in SERVE.glob("*.py")}
    offenders = {name for name, text in sources.items() if "import_module" in text or "TYPE_CHECKING" in text}
    assert not offenders, offenders
    deferred = {name for name, text in sources.items() if name != "server.py" and re.search(r"^[ \t]+from tfx\.serve\b", text, re.M)}
    assert not deferred, f"imports of tfx.serve deferred into functions: {deferred}"
    contracts = tomllib.loads((SERVE.parents[2] / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    inside = [c for c in contracts if c.get("containers") == ["tfx.serve"] or c.get("ancestors") == ["tfx.serve"]]
    assert {c["type"] for c in inside} == {"layers", "acyclic_siblings"}, inside
    # the suite's lint-imports run (tests/test_redesign.py) checks them


def test_19_2_transformers_private_state_is_used_in_one_module_and_still_there():
    from tfx.serve import continuous_private

    missing = continuous_private.check()
    assert not missing, (
        "transformers (or tfx.tasks.generate) no longer has what serve/continuous_private.py uses: "
        + ", ".join(missing) + ". Update that module (continuous batching) for this release."
    )  # fmt: skip
    private = re.compile(r"\._lock\b|result_handlers|batch_processor|cb_logits_processors|\._prompt_limit|\._decode\(|\._hold|slot\._stream")
    users = {p.name for p in SERVE.glob("*.py") if p.name != "continuous_private.py" and private.search(p.read_text())}
    assert not users, users


def test_19_2_the_server_loads_through_the_one_load_decision_of_tfx_tasks(hub_cache, monkeypatch):
    from fastapi.testclient import TestClient

    from tfx import tasks
    from tfx.serve import backends

    calls = []
    real = tasks.load_model

    def spy(prepared, backend, *args, **kwargs):
        calls.append((prepared.name, backend))
        return real(prepared, backend, *args, **kwargs)

    monkeypatch.setattr(backends, "load_model", spy)
    app, _ = make_app()
    with TestClient(app) as c:
        r = post(c, "/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2})
    assert r.status_code == 200, r.text
    assert calls == [(GPT2, "transformers")]


# --- errors ---------------------------------------------------------------------------------------


def test_19_3_validation_errors_are_400_in_openais_shape_naming_the_http_field(keyed):
    r = post(keyed, "/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": "ten"}, **AUTH)
    assert r.status_code == 400
    error = body_of(r)
    assert error["param"] == "max_tokens" and "max_tokens" in error["message"] and "--" not in error["message"], error
    r = post(keyed, "/v1/generate", {"model": GPT2}, **AUTH)
    assert r.status_code == 400 and body_of(r)["param"] == "inputs"
    r = post(keyed, "/v1/embeddings", {"model": BERT, "input": "x", "encoding_format": "hex"}, **AUTH)
    assert r.status_code == 400 and body_of(r)["param"] == "encoding_format"


def test_20_6_a_405_keeps_starlettes_allow_header(keyed):
    r = keyed.get("/v1/completions", headers=AUTH)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert body_of(r)["code"] == "method_not_allowed"


def test_20_5_a_client_leaving_while_sending_its_body_is_a_499_and_no_traceback(hub_cache, caplog):
    caplog.set_level(logging.DEBUG)
    server = Threaded()
    try:
        with socket.create_connection((server.host, server.port)) as s:
            s.sendall(f"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode() + b'{"model": ')
            time.sleep(0.3)

        def scraped() -> str:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()

        assert wait_for(lambda: 'endpoint="/v1/generate",model="",status="499"' in scraped()), scraped()
    finally:
        server.stop()
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


# --- issue 20 #1: the browser as attacker ---------------------------------------------------------


def test_20_1_a_host_the_server_does_not_answer_to_is_421_before_the_key(keyed):
    r = keyed.get("/v1/ps", headers={"host": "rebind.evil.example:8000"})  # no key: the Host check comes first
    assert r.status_code == 421 and body_of(r)["code"] == "misdirected_request"
    assert keyed.get("/v1/ps", headers={"host": "127.0.0.1:8000", **AUTH}).status_code == 200
    assert keyed.get("/v1/ps", headers={"host": "[::1]:8000", **AUTH}).status_code == 200
    from tfx.serve.security import allowed_hosts

    assert allowed_hosts("0.0.0.0", [], keyed=True) is None  # a wildcard --host with a key takes any name
    assert "box.lan" in allowed_hosts("127.0.0.1", ["box.lan:8000"], keyed=False)


def test_20_1_post_bodies_are_json_only_so_simple_cross_origin_posts_fail(keyed):
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {**AUTH, **({"content-type": kind} if kind else {})}
        r = keyed.post("/v1/unload", content=json.dumps({"model": GPT2}), headers=headers)
        assert r.status_code == 415 and body_of(r)["code"] == "unsupported_media_type", (kind, r.text)


def test_20_1_a_foreign_origin_is_refused_before_any_work(keyed):
    before = keyed.manager.stats["requests"]
    r = post(keyed, "/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 2}, origin="http://evil.example", **AUTH)
    assert r.status_code == 403 and body_of(r)["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    assert keyed.manager.stats["requests"] == before
    r = keyed.options("/v1/completions", headers={"origin": "http://evil.example", "access-control-request-method": "POST"})
    assert r.status_code == 403


def test_19_3_cors_preflight_is_answered_before_the_key_and_the_key_is_still_required(keyed):
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type"}
    r = keyed.options("/v1/completions", headers=preflight)  # no key
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    r = post(keyed, "/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 2}, origin=ORIGIN)
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN
    r = post(keyed, "/v1/completions", {"model": "tiny", "prompt": "Hi", "max_tokens": 2}, origin=ORIGIN, **AUTH)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN


def test_19_3_no_cors_headers_without_allowed_origins_and_the_playground_works_from_its_own_origin(hub_cache):
    from fastapi.testclient import TestClient

    app, _ = make_app(api_key=KEY)
    with TestClient(app) as c:
        r = c.options("/v1/models", headers={"origin": "http://testserver", "access-control-request-method": "GET"})
        assert not any(k.startswith("access-control-") for k in r.headers), dict(r.headers)
        page = c.get("/", headers={"origin": "http://testserver"})
        assert page.status_code == 200 and "<html" in page.text.lower()
        r = post(c, "/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 2}, origin="http://testserver", **AUTH)  # as the page posts
        assert r.status_code == 200, r.text
        assert not any(k.startswith("access-control-") for k in r.headers)


def test_20_6_a_whitespace_api_key_is_refused_at_start(tfx_env):
    assert_clean_error(tfx("serve", "--api-key", "   ", "--port", "0", env=tfx_env), 2, "--api-key")
    assert_clean_error(tfx("serve", "--allowed-origins", "front.example", "--port", "0", env=tfx_env), 2, "--allowed-origins")
    assert_clean_error(tfx("serve", "--alias", "nomodel", "--port", "0", env=tfx_env), 2, "--alias")


def test_20_7_openapi_json_is_published_behind_the_key_with_the_request_models(keyed):
    assert keyed.get("/openapi.json").status_code == 401
    schema = keyed.get("/openapi.json", headers=AUTH).json()
    for path in ("/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/generate", "/v1/models/{model}", "/v1/unload"):
        assert path in schema["paths"], sorted(schema["paths"])
    body = schema["paths"]["/v1/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    named = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert "max_new_tokens" in named["properties"]


# --- aliases and models.retrieve -------------------------------------------------------------------


def test_19_3_an_alias_answers_and_is_listed_under_its_name_and_models_retrieve_works(keyed):
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=keyed, max_retries=0)
    assert "tiny" in [m.id for m in client.models.list()]
    done = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0)
    assert done.model == "tiny" and done.choices[0].text
    ids = [m.id for m in client.models.list()]
    assert "tiny" in ids and GPT2 not in ids, ids
    assert client.models.retrieve("tiny").id == "tiny"
    assert client.models.retrieve(CHAT).id == CHAT  # an id with a slash
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"


def test_resolve_alias_is_a_plain_function_of_a_dict():
    from tfx.serve.config import parse_aliases
    from tfx.serve.models import resolve_alias

    aliases = parse_aliases(["a=org/model", "b = other "])
    assert aliases == {"a": "org/model", "b": "other"}
    assert resolve_alias("a", aliases) == "org/model" and resolve_alias("org/model", aliases) == "org/model"


# --- issue 20 #4: a task the model cannot do -------------------------------------------------------


def test_20_4_embeddings_of_a_chat_gpt2_are_a_400_before_loading_and_no_second_copy(keyed):
    def state():
        ps = keyed.get("/v1/ps", headers=AUTH).json()["data"]
        models = [m["id"] for m in keyed.get("/v1/models", headers=AUTH).json()["data"]]
        loaded = re.search(r"^tfx_models_loaded (\S+)", keyed.get("/metrics", headers=AUTH).text, re.M).group(1)
        return len(ps), sorted(models), loaded

    before = state()
    for path, body in (("/v1/embeddings", {"model": CHAT, "input": "Hi"}), ("/v1/embed", {"model": CHAT, "input": "Hi"}), ("/v1/rerank", {"model": CHAT, "query": "q", "documents": ["d"]})):
        started = time.monotonic()
        r = post(keyed, path, body, **AUTH)
        assert r.status_code == 400, (path, r.text)
        assert body_of(r)["param"] == "model" and "sentence" in body_of(r)["message"], r.text
        assert time.monotonic() - started < 2
    assert state() == before


def test_20_4_the_cli_gives_the_same_one_line_error(tfx_env):
    assert_clean_error(tfx("embed", "--model", CHAT, "Hi", env=tfx_env), 1, "sentence-transformers")


def test_20_4_every_task_checks_the_head_in_milliseconds():
    from tfx import registry
    from tfx.errors import TaskMismatch

    with pytest.raises(TaskMismatch, match="language-model head"):
        registry.check_model("m", "generate", registry.ENCODER_DECODER, {"architectures": ["BartForSequenceClassification"]})
    with pytest.raises(TaskMismatch, match="language-model head"):
        registry.check_model("m", "fill-mask", registry.ENCODER_ONLY, {"architectures": ["BertForTokenClassification"]})
    registry.check_model("m", "embed", registry.DECODER_ONLY, {"architectures": ["Qwen2Model"]}, sentence_transformer=True)
    registry.check_model("m", "classify", registry.ENCODER_DECODER, {"architectures": ["BartForSequenceClassification"]}, "zero-shot")


# --- issue 20 #3: cancellation per token -----------------------------------------------------------


@pytest.fixture
def slow_silent_gpt2(hub_cache):
    """uvicorn on a thread with the tiny GPT-2 on transformers' path, its forward made slow (50 ms) and
    its every token ".": a generation that yields no visible text for seconds (punctuation, no space, no newline)."""
    server = Threaded()
    body = {"model": GPT2, "input": "Hi", "max_new_tokens": 2, "repetition_penalty": 1.0}  # not the fast path
    assert server.request("/v1/generate", body)[0] == 200
    loaded = server.slot(GPT2).loaded
    token = loaded.tokenizer(".", add_special_tokens=False)["input_ids"][0]
    calls = []

    def hook(module, args, output):
        calls.append(time.monotonic())
        time.sleep(0.05)
        output.logits.fill_(-1e4)
        output.logits[..., token] = 1e4

    handle = loaded.model.register_forward_hook(hook)
    server.calls = calls
    yield server
    handle.remove()
    server.stop()


def _raw(server, body: dict, read_headers: bool) -> None:
    data = json.dumps(body).encode()
    with socket.create_connection((server.host, server.port)) as s:
        s.sendall(f"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        if read_headers:
            s.settimeout(30)
            assert s.recv(64).startswith(b"HTTP/1.1 200")
        assert wait_for(lambda: len(server.calls) >= 3, 30)  # generating


def test_20_3_a_stream_dropped_before_any_text_stops_its_generation(slow_silent_gpt2):
    server = slow_silent_gpt2
    _raw(server, {"model": GPT2, "input": "Hi", "max_new_tokens": 40, "min_new_tokens": 40, "repetition_penalty": 1.0, "stream": True}, True)
    left = len(server.calls)
    time.sleep(1.0)  # 20 more tokens if it ran on
    assert len(server.calls) - left <= 4, (left, len(server.calls))
    assert len(server.calls) < 30


def test_20_3_a_running_batch_stops_when_its_client_has_left(slow_silent_gpt2):
    server = slow_silent_gpt2
    _raw(server, {"model": GPT2, "inputs": ["Hi", "Hello"], "max_new_tokens": 40, "min_new_tokens": 40, "repetition_penalty": 1.0}, False)
    left = len(server.calls)
    time.sleep(1.0)
    assert len(server.calls) - left <= 4, (left, len(server.calls))


def test_20_3_the_fast_gpt2_path_stops_at_the_next_token_too(hub_cache):
    """Greedy GPT-2 on CPU runs on the fast path (no model.generate, no stopping criteria): serve.cancel
    hands it a hook of its own, asked after every token, and takes it off after the block."""
    from tfx import spec
    from tfx.serve import cancel
    from tfx.tasks import open_task

    task = open_task(spec.build("generate", spec.GenerateSettings(max_new_tokens=40), model=GPT2, device="cpu"))
    assert task.fast is not None, "the tiny GPT-2 should take the fast path here"
    eos = task.fast.eos_ids()
    ids = [task.tokenizer("Hi")["input_ids"]]
    kwargs = {**task.kwargs, "max_new_tokens": 40}
    task.fast.eos_ids = lambda: []  # never stop by itself: only the hook can end it early
    try:
        asked = []

        def wanted() -> bool:
            asked.append(1)
            return len(asked) < 3

        with cancel.watching(task, wanted):
            assert task.fast.stop_when is not None
            out = task.fast.generate(ids, kwargs)
        assert task.fast.stop_when is None  # a kept task carries no old request's check
        assert out.shape[1] - len(ids[0]) == 3, out.shape  # three tokens, then nobody wanted the rest
        full = task.fast.generate(ids, kwargs)
        assert full.shape[1] - len(ids[0]) == 40
    finally:
        task.fast.eos_ids = lambda: eos


# --- issue 19 item 3: the access log ---------------------------------------------------------------


def test_19_3_one_access_log_line_per_request_and_none_with_quiet(hub_cache, caplog):
    from fastapi.testclient import TestClient

    from tfx.serve.config import Settings
    from tfx.serve.server import setup_access_log

    caplog.set_level(logging.INFO, logger="tfx.access")
    app, _ = make_app()
    with TestClient(app) as c:
        assert post(c, "/v1/generate", {"model": GPT2, "input": "Hi", "max_new_tokens": 3}).status_code == 200
        assert c.get("/nowhere").status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "tfx.access"]
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"POST /v1/generate 200 model={GPT2} tokens=3 \d+\.\dms", lines[0]), lines[0]
    assert re.fullmatch(r"GET /nowhere 404 model=- tokens=- \d+\.\dms", lines[1]), lines[1]
    access = logging.getLogger("tfx.access")
    try:
        setup_access_log(Settings(quiet=True))
        assert not access.isEnabledFor(logging.INFO)
        setup_access_log(Settings())
        assert access.isEnabledFor(logging.INFO) and len(access.handlers) == 1
    finally:
        access.handlers, access.propagate = [], True
        access.setLevel(logging.NOTSET)


# --- issue 20 #7: the published schema, fuzzed -----------------------------------------------------

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

CASES_PER_OPERATION = 20  # a few hundred in all; bench/ or a nightly run can raise it


def error_in_openai_shape(ctx, response, case):
    """Every error a client gets is OpenAI's {"error": {message, type, param, code}}."""
    if response.status_code >= 400:
        error = json.loads(response.content)["error"]
        assert {"message", "type", "param", "code"} <= set(error), error


def test_20_7_every_operation_of_the_published_schema_fuzzed_gets_no_5xx(hub_cache):
    app, _ = make_app(max_tokens_cap=4, max_inputs=4, max_request_tokens=32, max_top_k=5, allowed_hosts=["testserver", "localhost"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    ran = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=CASES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            ran.append(case.call_and_validate(checks=[not_a_server_error], additional_checks=[error_in_openai_shape]).status_code)

        fuzz()
    assert len(ran) >= 200 and max(ran) < 500, len(ran)  # a few hundred cases (operations without inputs give one each)


def test_21_6_the_users_aliases_are_the_servers_too_and_serve_alias_wins(hub_cache, tmp_path, monkeypatch):
    """One resolution: `tfx alias set` names a model for the CLI and for `tfx serve`; --alias wins over it."""
    from test_serve_hardening import make_app

    from tfx import userconfig

    config = tmp_path / "tfx.toml"
    monkeypatch.setenv("TFX_CONFIG", str(config))
    config.write_text('[aliases]\nstory = "mine"\nmine = "%s"\nboth = "%s"\n' % (GPT2, CHAT))
    assert userconfig.resolve("story") == GPT2
    _, manager = make_app(aliases={"both": GPT2})
    assert manager.name_of("story") == GPT2 and manager.name_of("mine") == GPT2  # followed through, as the CLI does
    assert manager.name_of("both") == GPT2  # the server's own --alias wins
    assert manager.name_of(BERT) == BERT
