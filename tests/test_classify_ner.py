"""tfx classify (a model's own labels, zero-shot through NLI) and tfx ner on the tiny encoders of
tests/tiny_encoders.py: parity with transformers' pipelines, the CLI's output forms, long inputs, bad
records, wrong models, --server and compare."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import tiny_encoders as te
from clihelp import assert_clean_error, tfx

SST2, EMOTION, EMOTION_ML = "tfx-test/tiny-sst2", "tfx-test/tiny-emotion", "tfx-test/tiny-emotion-multilabel"
NLI, NER, NER_BPE = "tfx-test/tiny-nli", "tfx-test/tiny-ner", "tfx-test/tiny-ner-bpe"
# Unseen, oddly spaced or cased text, for parity beyond the memorised cases (batched with them: padding).
OTHER = [
    "an unseen sentence about nothing in particular",
    "WHAT a film!!  Really,   truly.",
    "Ünïcödé wörds and émojis 🙂 sit here",
    "x",
    "The staff in London were kind but the food in Paris was cold, and I hated the long wait for the bill.",
]
TOL = 1e-5


def snapshot(repo: str):
    from huggingface_hub import snapshot_download

    return snapshot_download(repo, local_files_only=True)


def run_tfx(task: str, model: str, texts: list[str], allow_errors: bool = False, **params):
    """tfx's task in this process: the spec -> open_task -> pipeline path every engine takes. Results (or,
    with allow_errors, the outcomes, errors included)."""
    from tfx import pipeline, spec
    from tfx.tasks import open_task

    run = spec.build(task, spec.SETTINGS[task].from_params(params), model=model, device="cpu", quiet=True)
    runner = open_task(run)
    try:
        done = pipeline.run_texts(runner, texts)
    finally:
        runner.close()
    if allow_errors:
        return done
    assert all(d.error is None for d in done), [d.error for d in done]
    return [d.result for d in done]


@pytest.fixture(scope="module")
def pipes(hub_cache):
    import transformers

    transformers.logging.set_verbosity_error()
    made = {}

    def get(task: str, repo: str, **kwargs):
        key = (task, repo, tuple(sorted(kwargs.items())))
        if key not in made:
            made[key] = transformers.pipeline(task, model=snapshot(repo), device="cpu", **kwargs)
        return made[key]

    return get


def assert_labels_match(results, expected: list[list[dict]]):
    for got, want in zip(results, expected, strict=True):
        assert [c["label"] for c in got.labels] == [w["label"] for w in want]
        assert [c["score"] for c in got.labels] == pytest.approx([w["score"] for w in want], abs=TOL)
        assert got.output == want[0]["label"]


# --- parity with transformers' pipelines ---------------------------------------------------------------


@pytest.mark.parametrize("model,top_k", [(SST2, None), (SST2, 2), (EMOTION, None), (EMOTION, 3), (EMOTION_ML, 7)])
def test_classify_equals_the_text_classification_pipeline(pipes, model, top_k):
    cases = te.SENTIMENT_CASES if model == SST2 else te.EMOTION_CASES
    texts = [t for t, _ in cases] + OTHER
    pipe = pipes("text-classification", model)
    expected = [pipe(t, top_k=top_k or 1) for t in texts]  # one at a time: no padding on its side
    assert_labels_match(run_tfx("classify", model, texts, top_k=top_k), expected)


def test_memorised_labels_and_the_sigmoid_of_a_multi_label_model(hub_cache):
    for model, cases in ((SST2, te.SENTIMENT_CASES), (EMOTION, te.EMOTION_CASES)):
        results = run_tfx("classify", model, [t for t, _ in cases])
        assert [r.output for r in results] == [label for _, label in cases]
    # The same weights with problem_type multi_label_classification: independent sigmoids, not a softmax.
    (soft,) = run_tfx("classify", EMOTION, [te.EMOTION_CASES[0][0]], top_k=7)
    (sig,) = run_tfx("classify", EMOTION_ML, [te.EMOTION_CASES[0][0]], top_k=7)
    assert sum(c["score"] for c in soft.labels) == pytest.approx(1.0, abs=1e-5)
    assert sum(c["score"] for c in sig.labels) > 1.5


@pytest.mark.parametrize(
    "params",
    [{}, {"multi_label": True}, {"hypothesis_template": "This text is about {}."}, {"top_k": 2}, {"only": "politics"}],
    ids=["single-label", "multi-label", "template", "top-k", "one-label"],
)
def test_zero_shot_equals_the_zero_shot_pipeline(pipes, params):
    params = dict(params)
    pipe = pipes("zero-shot-classification", NLI)
    texts = [p for p, _, _ in te.ZERO_SHOT_CASES] + OTHER
    labels = [params.pop("only")] if "only" in params else list(te.TOPIC_LABELS + te.TICKET_LABELS[:1])
    ours = run_tfx("classify", NLI, texts, labels=",".join(labels), **params)
    kwargs = {k: v for k, v in params.items() if k != "top_k"}
    k = params.get("top_k") or (len(labels) if params.get("multi_label") else 1)
    for got, text in zip(ours, texts, strict=True):
        want = pipe(text, candidate_labels=labels, **kwargs)
        assert [c["label"] for c in got.labels] == want["labels"][:k]
        assert [c["score"] for c in got.labels] == pytest.approx(want["scores"][:k], abs=TOL)


def test_zero_shot_memorised_topics_and_tickets(hub_cache):
    topics = [p for p, labels, _ in te.ZERO_SHOT_CASES if labels == te.TOPIC_LABELS]
    results = run_tfx("classify", NLI, topics, labels=",".join(te.TOPIC_LABELS))
    assert [r.output for r in results] == [next(iter(t)) for _, labels, t in te.ZERO_SHOT_CASES if labels == te.TOPIC_LABELS]
    tickets = [(p, t) for p, labels, t in te.ZERO_SHOT_CASES if labels == te.TICKET_LABELS]
    results = run_tfx("classify", NLI, [p for p, _ in tickets], labels=",".join(te.TICKET_LABELS), multi_label=True)
    for result, (_, true) in zip(results, tickets):
        assert len(result.labels) == 3  # multi-label lists every label by default
        assert {c["label"] for c in result.labels if c["score"] > 0.5} == true


def pipeline_entities(pipe, text: str, strategy: str) -> list[dict]:
    out = pipe(text, aggregation_strategy=strategy)
    return [{"label": e.get("entity_group", e.get("entity")), "score": float(e["score"]), "start": e["start"], "end": e["end"]} for e in out]


@pytest.mark.parametrize("model", [NER, NER_BPE])
@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max", "none"])
def test_ner_equals_the_token_classification_pipeline(pipes, model, strategy):
    pipe = pipes("token-classification", model)
    texts = te.NER_SENTENCES + OTHER + ["Hugging Face and Microsoft met Angela Merkel in Tokyo and London last week."]
    ours = run_tfx("ner", model, texts, aggregate=strategy)
    for got, text in zip(ours, texts, strict=True):
        want = pipeline_entities(pipe, text, strategy)
        assert [(e["label"], e["start"], e["end"]) for e in got.entities] == [(w["label"], w["start"], w["end"]) for w in want]
        assert [e["score"] for e in got.entities] == pytest.approx([w["score"] for w in want], abs=TOL)
        assert all(e["word"] == text[e["start"] : e["end"]] for e in got.entities)
    if model == NER_BPE and strategy == "simple":
        assert sum(len(r.entities) for r in ours) > 10  # the untrained model labels plenty: a real comparison


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_ner_finds_the_memorised_entities(hub_cache, strategy):
    results = run_tfx("ner", NER, te.NER_SENTENCES, aggregate=strategy)
    for result, case in zip(results, te.NER_CASES):
        assert [(e["word"], e["label"]) for e in result.entities] == te.ner_entities(case)


# --- the command line ----------------------------------------------------------------------------------


def test_classify_default_model_text_and_top_k(tfx_env):
    r = tfx("classify", "I loved every minute of it.", "I hated every minute of it.", env=tfx_env)
    assert r.code == 0, r.err
    assert [line.split("\t")[0] for line in r.lines] == ["POSITIVE", "NEGATIVE"]
    assert all(re.fullmatch(r"[A-Z]+\t[01]\.\d{4}", line) for line in r.lines)
    r = tfx("classify", "-m", EMOTION, "--top-k", "3", env=tfx_env, stdin="".join(t + "\n" for t, _ in te.EMOTION_CASES))
    assert r.code == 0, r.err
    rows = [line.split("\t") for line in r.lines]
    assert len(rows) == len(te.EMOTION_CASES) and all(len(row) == 6 for row in rows)
    assert [row[0] for row in rows] == [label for _, label in te.EMOTION_CASES]


def test_zero_shot_jsonl_with_the_default_nli_model(tfx_env, tmp_path):
    tickets = tmp_path / "tickets.jsonl"
    cases = [(i, p) for i, (p, labels, _) in enumerate(te.ZERO_SHOT_CASES) if labels == te.TICKET_LABELS]
    tickets.write_text("".join(json.dumps({"id": i, "text": p}) + "\n" for i, p in cases))
    r = tfx("classify", "--labels", "urgent,billing,spam", "--multi-label", "--format", "jsonl", "--input", str(tickets), "--input-format", "jsonl", env=tfx_env)
    assert r.code == 0, r.err
    records = [json.loads(line) for line in r.lines]
    assert [x["id"] for x in records] == [i for i, _ in cases] and all(len(x["labels"]) == 3 for x in records)
    assert set(records[0]["labels"][0]) == {"label", "score"} and records[0]["output"] == records[0]["labels"][0]["label"]
    assert {c["label"] for c in records[0]["labels"] if c["score"] > 0.5} == {"urgent", "billing"}
    assert records[0]["model"] == "facebook/bart-large-mnli"  # --labels with no -m: the NLI default


def test_ner_piped_lines_and_jsonl_entities(tfx_env):
    stdin = "".join(s + "\n" for s in te.NER_SENTENCES[:2]) + "\n" + te.NER_SENTENCES[4] + "\n"  # the last: no entity
    r = tfx("ner", env=tfx_env, stdin=stdin)  # default model: dslim/bert-base-NER
    assert r.code == 0, r.err
    assert len(r.lines) == 4  # one line per input line, the empty one and the one without entities kept
    first = r.lines[0].split("\t")
    assert first[0::3] == ["Hugging Face", "New York City"] and first[1::3] == ["ORG", "LOC"]
    assert all(re.fullmatch(r"0\.\d{4}|1\.0000", s) for s in first[2::3])
    assert r.lines[1].split("\t")[0::3] == ["Angela Merkel", "Paris"]
    assert r.lines[2] == "" and r.lines[3] == ""
    r = tfx("ner", "-m", NER, "--format", "jsonl", "--aggregate", "first", te.NER_SENTENCES[2], env=tfx_env)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert [set(e) for e in record["entities"]] == [{"word", "label", "score", "start", "end"}] * 3
    assert [(e["word"], e["label"]) for e in record["entities"]] == te.ner_entities(te.NER_CASES[2])
    assert all(te.NER_SENTENCES[2][e["start"] : e["end"]] == e["word"] for e in record["entities"])
    assert record["output"] == "Sarah/PER  Microsoft/ORG  London/LOC"


def long_text(words: int = 300) -> str:
    return " ".join(["the food was cold"] * (words // 4))


def test_long_input_is_cut_and_marked_or_refused_with_no_truncate(tfx_env):
    for task, model, limit, extra in (("classify", SST2, 128, {}), ("ner", NER, 128, {}), ("classify", NLI, 1024, {"labels": "sports,politics"})):
        text = long_text(limit * 2)
        (result,) = run_tfx(task, model, [text], **extra)
        assert result.truncated is True and result.dropped_tokens > limit // 2, (model, result)
        (refused,) = run_tfx(task, model, [text], no_truncate=True, allow_errors=True, **extra)
        assert refused.error.startswith("input is") and f"over the model's input limit of {limit}" in refused.error
    r = tfx("classify", "-m", SST2, "--format", "jsonl", long_text(), env=tfx_env)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert record["truncated"] is True and record["dropped_tokens"] > 100
    assert "argument 1: input longer than the model takes: 174 tokens dropped" in r.err


def test_keep_going_writes_one_line_per_input(tfx_env):
    stdin = "I loved every minute of it.\n" + long_text() + "\nI hated every minute of it.\n"
    r = tfx("classify", "-m", SST2, "--no-truncate", "--keep-going", env=tfx_env, stdin=stdin)
    assert r.code == 1
    assert len(r.lines) == 3 and r.lines[1] == ""
    assert r.lines[0].startswith("POSITIVE\t") and r.lines[2].startswith("NEGATIVE\t")
    assert "line 2" in r.err and "--no-truncate" in r.err
    stdin = te.NER_SENTENCES[2] + "\n" + long_text() + "\n" + te.NER_SENTENCES[1] + "\n"
    stopped = tfx("ner", "-m", NER, "--no-truncate", env=tfx_env, stdin=stdin)
    assert_clean_error(stopped, 1, "line 2", "over the model's input limit")
    assert len(stopped.lines) == 1 and stopped.lines[0].startswith("Sarah\tPER\t")


def test_wrong_models_fail_fast_with_the_fix(tfx_env):
    started = time.monotonic()
    r = tfx("classify", "-m", "tfx-test/tiny-bert", "some text", env=tfx_env)
    assert_clean_error(r, 1, "encoder-only", "no sequence-classification head", "distilbert/distilbert-base-uncased-finetuned-sst-2-english")
    r = tfx("ner", "-m", "tfx-test/tiny-bert", "some text", env=tfx_env)
    assert_clean_error(r, 1, "no token-classification head", "dslim/bert-base-NER")
    r = tfx("ner", "-m", "tfx-test/tiny-gpt2", "some text", env=tfx_env)
    assert_clean_error(r, 1, "decoder-only")
    assert time.monotonic() - started < 30  # three processes, none loads a model
    r = tfx("classify", "-m", SST2, "--labels", "a,b", "some text", env=tfx_env)
    assert_clean_error(r, 2, "no entailment label", "facebook/bart-large-mnli")
    r = tfx("classify", "--labels", "a,b", "--hypothesis-template", "no slot", "x", env=tfx_env)
    assert_clean_error(r, 2, "{}")
    r = tfx("classify", "--multi-label", "x", env=tfx_env)
    assert_clean_error(r, 2, "--labels")
    r = tfx("ner", "--aggregate", "mean", "x", env=tfx_env)
    assert_clean_error(r, 2, "simple, first, average, max, none")


def test_compare_runs_classify_and_ner(tfx_env):
    r = tfx("compare", "classify", "The chef won the election.", "-m", NLI, "--labels", "sports,politics,cooking", "--format", "jsonl", env=tfx_env)
    assert r.code == 0, r.err
    assert json.loads(r.out)["output"] == "politics"
    r = tfx("compare", "ner", te.NER_SENTENCES[0], "-m", NER, "-m", NER_BPE, "--aggregate", "first", env=tfx_env)
    assert r.code == 0, r.err
    assert "Hugging Face\tORG" in r.out and NER_BPE in r.out


# --- --server ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(hub_cache):
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    proc = subprocess.Popen([sys.executable, "-m", "tfx", "serve", "--port", "0"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log, ready = [], threading.Event()

    def drain() -> None:
        for raw in proc.stderr:
            log.append(raw.decode("utf-8", "replace"))
            if "serving on http://" in log[-1]:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(90)
    found = [m.group(1) for line in log if (m := re.search(r"serving on (http://\S+)", line))]
    try:
        assert found, "tfx serve did not start:\n" + "".join(log)
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def local_jsonl(task: str, model: str, texts: list[str], **params) -> str:
    """What a local `tfx TASK -m MODEL --format jsonl` writes, made in this process (no CLI start-up)."""
    import io

    from tfx import io as tio, pipeline, spec
    from tfx.tasks import open_task

    run = spec.build(task, spec.SETTINGS[task].from_params(params), model=model, device="cpu", quiet=True)
    runner = open_task(run)
    out = io.StringIO()
    pipeline.run(tio.read_records(texts, None, "text"), runner, tio.Writer("jsonl", out=out, model=model))
    runner.close()
    return out.getvalue()


@pytest.mark.parametrize(
    "task,model,params,flags",
    [
        ("classify", EMOTION, {"top_k": 2}, ["--top-k", "2"]),
        ("classify", te.REPOS["nli"][1], {"labels": "urgent,billing,spam", "multi_label": True}, ["--labels", "urgent,billing,spam", "--multi-label"]),
        ("ner", NER, {"aggregate": "average"}, ["--aggregate", "average"]),
    ],
    ids=["classify", "zero-shot", "ner"],
)
def test_through_the_server_equals_local(tfx_env, server_url, task, model, params, flags):
    texts = [*te.NER_SENTENCES[:2], te.EMOTION_CASES[2][0], *OTHER[:2]]
    stdin = "".join(t + "\n" for t in texts)
    model_flag = [] if task == "classify" and "labels" in params else ["-m", model]  # the server picks the NLI default
    remote = tfx(task, *model_flag, *flags, "--format", "jsonl", env={**tfx_env, "TFX_SERVER": server_url}, stdin=stdin)
    assert remote.code == 0, remote.err
    assert remote.out == local_jsonl(task, model, texts, **params)
    if task == "ner":
        text = tfx(task, *model_flag, *flags, "--server", server_url, env=tfx_env, stdin=stdin)
        assert text.code == 0 and len(text.lines) == 5
        assert [line.split("\t")[0::3] for line in text.lines[:2]] == [["Hugging Face", "New York City"], ["Angela Merkel", "Paris"]]


def test_raw_requests_pick_the_variant_default_and_refuse_bad_settings(server_url):
    import http.client
    from urllib.parse import urlsplit

    def post(path: str, body: dict):
        parts = urlsplit(server_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    status, answer = post("/v1/classify", {"input": "The chef won the election.", "labels": ["sports", "politics", "cooking"]})
    assert status == 200, answer
    (record,) = answer["results"]
    assert record["output"] == "politics" and record["model"] == "facebook/bart-large-mnli"
    status, answer = post("/v1/ner", {"inputs": [te.NER_SENTENCES[1]], "model": NER})
    assert status == 200 and [e["word"] for e in answer["results"][0]["entities"]] == ["Angela Merkel", "Paris"]
    for body in ({"input": "x", "aggregate": "mean"}, {"input": "x", "labels": "a,b", "hypothesis_template": "no slot"}, {"input": "x", "top_k": 0}, {"input": "x", "labels": 3}):
        status, answer = post("/v1/ner" if "aggregate" in body else "/v1/classify", body)
        assert 400 <= status < 500, (body, status, answer)


# --- --engine ray --------------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_ner_on_ray_gives_the_local_records(tfx_env, tmp_path):
    pytest.importorskip("ray.data")
    env = {k: v for k, v in tfx_env.items() if k not in ("RAY_ADDRESS", "TFX_SERVER")}
    lines = [(te.NER_SENTENCES + OTHER)[i % 9] for i in range(120)]
    src = tmp_path / "news.txt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    args = ["ner", "-m", NER, "--input", str(src), "--format", "jsonl"]
    local = tfx(*args, env=env)
    assert local.code == 0, local.err
    out = tmp_path / "out"
    r = tfx(*args, "--engine", "ray", "--replicas", "2", "--output", str(out), env=env, timeout=200)
    assert r.code == 0, r.err
    assert "".join(p.read_text(encoding="utf-8") for p in sorted(out.glob("part-*.jsonl"))) == local.out
