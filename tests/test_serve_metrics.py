"""tfx serve's GET /metrics (parsed with prometheus-client's own parser: the numbers move as requests are
made), /v1/ps and /v1/unload with the `tfx ps` / `tfx stop` commands, and `tfx serve --engine ct2|auto`
answering as the transformers path does (issue 15 items 3 and 5; issue 13's `tfx serve --engine ct2`)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

GPT2 = "tfx-test/tiny-gpt2"
BERT = "tfx-test/tiny-bert"
MARIAN = "tfx-test/tiny-marian-en-de"
KEY = "metrics-key-7"
AUTH = {"authorization": f"Bearer {KEY}"}
MASK_INPUT = tm.FILL_MASK_CASES[1][0]
EN = [s for s, _ in tm.TRANSLATIONS[("en", "de")]]


def make_app(**options):
    import torch

    from tfx.serve.app import create_app
    from tfx.serve.config import Settings
    from tfx.serve.models import Manager

    torch.set_num_threads(1)
    server = Settings(keep_alive_s=None, **{"allowed_hosts": ["testserver"], **options})
    manager = Manager(server, "cpu", torch.float32)
    for name in server.models:
        manager.preload(name)
    return create_app(server, manager), manager


@pytest.fixture(scope="module")
def client(hub_cache):
    from fastapi.testclient import TestClient

    app, manager = make_app(api_key=KEY, max_tokens_cap=48)
    with TestClient(app) as c:
        c.manager = manager
        yield c


def post(c, path: str, body, key: bool = True):
    return c.post(path, content=json.dumps(body), headers={"content-type": "application/json", **(AUTH if key else {})})


def scrape(c) -> dict[str, dict[tuple, float]]:
    """/metrics parsed by prometheus-client's parser: sample name -> {sorted labels: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    response = c.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    """The sum of a sample's values over the series whose labels include these."""
    return sum(v for key, v in samples.get(name, {}).items() if set(labels.items()) <= set(key))


# --- /metrics -------------------------------------------------------------------------------------------


def test_metrics_is_behind_the_key_and_parses(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    samples = scrape(client)
    assert "tfx_models_loaded" in samples and "tfx_batch_size_count" in samples


def test_requests_status_tokens_and_latency_move(client):
    before = scrape(client)
    answers = [post(client, "/v1/completions", {"model": GPT2, "prompt": p, "max_tokens": 6}) for p, _ in tm.GPT2_CASES[:2]]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    # (a model is a label value once the server has it: here, after the first answer)
    assert post(client, "/v1/completions", {"model": GPT2, "prompt": ""}).status_code == 400
    assert post(client, "/v1/completions", {"model": GPT2}).status_code == 400  # validation: no prompt
    streamed = post(client, "/v1/completions", {"model": GPT2, "prompt": tm.GPT2_CASES[0][0], "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}})
    assert streamed.status_code == 200
    events = [json.loads(line[5:]) for line in streamed.text.splitlines() if line.startswith("data:") and "[DONE]" not in line]
    usages = [a.json()["usage"] for a in answers] + [e["usage"] for e in events if e.get("usage")]
    assert len(usages) == 3
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    endpoint = "/v1/completions"
    assert moved("tfx_requests_total", endpoint=endpoint, model=GPT2, status="400") == 1
    assert moved("tfx_requests_total", endpoint=endpoint, model="", status="400") == 1
    assert moved("tfx_requests_total", endpoint=endpoint, model=GPT2, status="200") == 3
    assert moved("tfx_prompt_tokens_total", model=GPT2) == sum(u["prompt_tokens"] for u in usages)
    assert moved("tfx_generated_tokens_total", model=GPT2) == sum(u["completion_tokens"] for u in usages)
    # one latency per request, whatever its status; a time to first token for the stream alone
    assert value(after, "tfx_request_duration_seconds_count", endpoint=endpoint) == value(after, "tfx_requests_total", endpoint=endpoint)
    assert moved("tfx_request_duration_seconds_count", endpoint=endpoint) == 5
    assert moved("tfx_time_to_first_token_seconds_count", endpoint=endpoint, model=GPT2) == 1
    assert moved("tfx_batch_size_count") == 3 and moved("tfx_batch_size_sum") == 3  # three batches of one
    assert value(after, "tfx_queue_depth", model=GPT2) == 0
    assert value(after, "tfx_models_loaded") >= 1


def test_task_endpoint_tokens_401_and_unknown_paths_are_counted(client):
    before = scrape(client)
    answer = post(client, "/v1/generate", {"model": GPT2, "inputs": [tm.GPT2_CASES[0][0]], "max_new_tokens": 4})
    assert answer.status_code == 200, answer.text
    assert client.get("/v1/models").status_code == 401
    assert client.get("/no/such/path", headers=AUTH).status_code == 404
    assert post(client, "/v1/completions", {"model": "nobody/none", "prompt": "x"}).status_code == 404
    after = scrape(client)
    generated = answer.json()["results"][0]["generated_tokens"]
    assert value(after, "tfx_generated_tokens_total", model=GPT2) - value(before, "tfx_generated_tokens_total", model=GPT2) == generated
    assert value(after, "tfx_requests_total", endpoint="/v1/models", status="401") == value(before, "tfx_requests_total", endpoint="/v1/models", status="401") + 1
    assert value(after, "tfx_requests_total", endpoint="other", status="404") == value(before, "tfx_requests_total", endpoint="other", status="404") + 1
    # a made-up model name is not a label value (clients cannot grow the series without end)
    assert not any(dict(k).get("model") == "nobody/none" for k in after["tfx_requests_total"])
    assert value(after, "tfx_requests_total", endpoint="/v1/completions", model="", status="404") >= 1


def test_memory_gauge_is_the_models_parameters_and_buffers(client):
    """BERT runs on transformers: the gauge is the bytes transformers' own get_memory_footprint counts."""
    import transformers

    assert post(client, "/v1/fill-mask", {"model": BERT, "input": MASK_INPUT}).status_code == 200
    samples = scrape(client)
    (slot,) = [s for s in client.manager.slots.values() if BERT in s.names]
    reference = transformers.AutoModelForMaskedLM.from_pretrained(slot.prepared.resolved.path).get_memory_footprint(return_buffers=True)
    assert value(samples, "tfx_model_memory_bytes", model=BERT, device="cpu") == reference
    gpt2 = value(samples, "tfx_model_memory_bytes", model=GPT2)  # the fast GPT-2 path's own tensors
    config = next(s for s in client.manager.slots.values() if GPT2 in s.names).prepared.config
    assert gpt2 >= 4 * config["vocab_size"] * config["n_embd"]  # at least the token embeddings in fp32


# --- /v1/ps, /v1/unload -------------------------------------------------------------------------------


def test_ps_lists_models_and_unload_frees_one_until_the_next_request(client):
    assert client.get("/v1/ps").status_code == 401
    assert post(client, "/v1/completions", {"model": GPT2, "prompt": "Hi", "max_tokens": 2}).status_code == 200
    rows = {r["id"]: r for r in client.get("/v1/ps", headers=AUTH).json()["data"]}
    row = rows[GPT2]
    assert row["loaded"] and row["device"] == "cpu" and row["backend"] == "transformers" and "generate" in row["tasks"]
    assert row["memory_bytes"] > 0 and row["idle_s"] >= 0
    slot = next(s for s in client.manager.slots.values() if GPT2 in s.names)
    assert row["requests"] == slot.served >= 1

    assert post(client, "/v1/unload", {"model": "nobody/none"}).status_code == 404
    assert post(client, "/v1/unload", {}).status_code == 400
    answer = post(client, "/v1/unload", {"model": GPT2})
    assert answer.status_code == 200 and answer.json()["unloaded"] is True
    assert slot.loaded is None
    row = {r["id"]: r for r in client.get("/v1/ps", headers=AUTH).json()["data"]}[GPT2]
    assert not row["loaded"] and row["memory_bytes"] == 0
    assert value(scrape(client), "tfx_model_memory_bytes", model=GPT2) == 0
    assert post(client, "/v1/unload", {"model": GPT2}).json()["unloaded"] is False  # 200: it was not loaded
    again = post(client, "/v1/completions", {"model": GPT2, "prompt": "Hi", "max_tokens": 2})
    assert again.status_code == 200 and slot.loaded is not None  # loaded again by the next request


class Threaded:
    """The app under uvicorn on a thread of this process (a real port for the CLI)."""

    def __init__(self, app):
        import uvicorn

        from tfx.serve.server import bind

        sock = bind("127.0.0.1", 0)
        self.url = "http://127.0.0.1:%d" % sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def test_tfx_ps_and_stop_commands(hub_cache, tfx_env):
    app, manager = make_app(api_key=KEY, models=[BERT])
    server = Threaded(app)
    try:
        env = {**tfx_env, "TFX_SERVER": server.url, "TFX_API_KEY": KEY}
        listed = tfx("ps", env=env)
        assert listed.code == 0, listed.err
        header, *lines = listed.out.splitlines()
        assert header.split() == ["MODEL", "TASKS", "BACKEND", "DEVICE", "MEMORY", "IDLE", "REQUESTS"]
        (line,) = [x for x in lines if x.startswith(BERT)]
        assert "fill-mask" in line and "cpu" in line and ("MB" in line or "KB" in line), line
        as_json = tfx("ps", "--format", "json", env=env)
        (row,) = [r for r in json.loads(as_json.out)["data"] if r["id"] == BERT]
        assert row["loaded"] and row["memory_bytes"] > 0

        stopped = tfx("stop", BERT, env=env)
        assert stopped.code == 0 and stopped.out == "" and "unloaded" in stopped.err, stopped.err
        assert all(s.loaded is None for s in manager.slots.values())
        assert "(unloaded)" in tfx("ps", env=env).out

        assert_clean_error(tfx("stop", "nobody/none", env=env), 1, "404")
        assert_clean_error(tfx("ps", env={**env, "TFX_API_KEY": "wrong"}), 1, "401")
        assert_clean_error(tfx("ps", "--format", "yaml", env=env), 2, "--format")
    finally:
        server.stop()
    gone = tfx("ps", "--server", server.url, env=tfx_env)  # nobody listens there now
    assert_clean_error(gone, gone.code, server.url)
    assert gone.code != 0


# --- tfx serve --engine ct2 | auto ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(hub_cache):
    """What the transformers path answers (a plain server), to compare the ct2 servers with."""
    from fastapi.testclient import TestClient

    app, _ = make_app()
    with TestClient(app) as c:
        yield c


def test_serve_engine_ct2_translates_as_transformers(hub_cache, reference):
    pytest.importorskip("ctranslate2")
    from fastapi.testclient import TestClient

    body = {"model": MARIAN, "inputs": EN, "to": "de"}
    expected = reference.post("/v1/translate", json=body).json()["results"]
    app, manager = make_app(engine="ct2", compute_type="float32", models=[MARIAN])
    with TestClient(app) as c:
        answer = c.post("/v1/translate", json=body)
        assert answer.status_code == 200, answer.text
        assert [r["output"] for r in answer.json()["results"]] == [r["output"] for r in expected]
        assert [r["output"] for r in expected] == [de for _, de in tm.TRANSLATIONS[("en", "de")]]
        (row,) = c.get("/v1/ps").json()["data"]
        assert row["backend"] == "ct2" and row["tasks"] == ["translate"] and row["loaded"]
        (slot,) = manager.slots.values()
        on_disk = sum(f.stat().st_size for f in slot.loaded.model.runner.path.iterdir() if f.is_file())
        assert row["memory_bytes"] == on_disk > 0
        assert type(slot.loaded.model.runner.model).__module__.startswith("ctranslate2")


def test_tfx_serve_engine_ct2_subprocess(hub_cache, tfx_env, reference):
    """The command line: `tfx serve --engine ct2 -m MARIAN` answers /v1/translate as the transformers path."""
    pytest.importorskip("ctranslate2")
    import http.client
    import re
    import subprocess
    import sys

    body = {"model": MARIAN, "inputs": EN, "to": "de"}
    expected = [r["output"] for r in reference.post("/v1/translate", json=body).json()["results"]]
    args = ["serve", "--port", "0", "--engine", "ct2", "--compute-type", "float32", "-m", MARIAN, "--keep-alive", "-1"]
    proc = subprocess.Popen([sys.executable, "-m", "tfx", *args], env=tfx_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        log = []
        for raw in proc.stderr:  # the line it prints once it listens
            log.append(raw.decode())
            if (found := re.search(r"serving on http://127\.0\.0\.1:(\d+)", log[-1])) is not None:
                break
        assert found is not None, "".join(log)
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
        conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=60)
        conn.request("POST", "/v1/translate", body=json.dumps(body), headers={"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        assert [r["output"] for r in answer["results"]] == expected, answer
        listed = tfx("ps", "--server", f"http://127.0.0.1:{found.group(1)}", "--format", "json", env=tfx_env)
        (row,) = json.loads(listed.out)["data"]
        assert row["id"] == MARIAN and row["backend"] == "ct2" and row["loaded"] and row["memory_bytes"] > 0
    finally:
        proc.terminate()
        proc.wait(30)


def test_serve_engine_ct2_and_auto_on_settings_ct2_cannot_run(hub_cache, reference):
    """no_repeat_ngram_size 1 on a decoder-only model is one CTranslate2 does not reproduce: --engine ct2
    answers 400 naming it; --engine auto runs that request on transformers, with transformers' answer."""
    pytest.importorskip("ctranslate2")
    from fastapi.testclient import TestClient

    plain = {"model": GPT2, "inputs": [p for p, _ in tm.GPT2_CASES[:2]], "max_new_tokens": 5}
    odd = {**plain, "no_repeat_ngram_size": 1}
    expected = {k: reference.post("/v1/generate", json=b).json()["results"] for k, b in (("plain", plain), ("odd", odd))}
    for engine in ("ct2", "auto"):
        app, manager = make_app(engine=engine, compute_type="float32")
        with TestClient(app) as c:
            answer = c.post("/v1/generate", json=plain)
            assert answer.status_code == 200 and answer.json()["results"] == expected["plain"], answer.text
            answer = c.post("/v1/generate", json=odd)
            if engine == "ct2":
                assert answer.status_code == 400 and "no-repeat-ngram-size 1" in answer.json()["error"]["message"], answer.text
                assert {s.backend for s in manager.slots.values()} == {"ct2"}
            else:
                assert answer.status_code == 200 and answer.json()["results"] == expected["odd"], answer.text
                assert {s.backend for s in manager.slots.values()} == {"ct2", "transformers"}


def test_serve_cli_engine_options(hub_cache, tfx_env):
    assert_clean_error(tfx("serve", "--engine", "ray", env=tfx_env), 2, "--engine")
    assert_clean_error(tfx("serve", "--compute-type", "int8", env=tfx_env), 2, "--backend ct2")
    assert_clean_error(tfx("serve", "--backend", "ct2", "--compute-type", "int3", env=tfx_env), 2, "--compute-type")
    old_spelling = tfx("serve", "--engine", "ct2", "--compute-type", "int3", env=tfx_env)  # still read, with a note
    assert old_spelling.code == 2 and "is now --backend ct2" in old_spelling.err and "--compute-type" in old_spelling.err
