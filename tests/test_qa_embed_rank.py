"""qa, embed and rank on the tiny models of tiny_retrieval.py: parity with sentence-transformers (encode,
cos_sim, CrossEncoder.predict) and with a plain mean pooling, the memorised answers of the QA model
(one in the second window of a long context, one unanswerable), the CLI's formats and files, --server
against local, and the OpenAI / rerank endpoints."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import numpy as np
import pytest
import tiny_models as tm
import tiny_retrieval as tr
from clihelp import assert_clean_error, tfx

SQUAD = "tfx-test/tiny-squad"
MINILM = "tfx-test/tiny-minilm"
CROSS = "tfx-test/tiny-cross-encoder"
BERT = "tfx-test/tiny-bert"  # a plain transformers model: no modules.json
TEXTS = ["hello", "how do I reset my password", tr.FAQ_DOCS[1], tr.LONG_CONTEXT, "a " * 200 + "end"]  # the last: > 128 tokens
QUERY = "how do I reset my password"


def snapshot(hub_cache, repo: str):
    from tfx import hub

    return hub.resolve(repo).path


def open_runner(task: str, model: str, **settings):
    from tfx import spec
    from tfx.tasks import open_task

    return open_task(spec.build(task, spec.SETTINGS[task](**settings), model=model, device="cpu"))


def run(runner, inputs: list):
    from tfx import pipeline

    done = pipeline.run_texts(runner, inputs)
    assert all(d.error is None for d in done), [d.error for d in done]
    return [d.result for d in done]


@pytest.fixture(scope="module")
def st_model(hub_cache):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(snapshot(hub_cache, MINILM)), device="cpu")


def mean_pooled(path, texts: list[str]) -> np.ndarray:
    """The model's token vectors averaged over the mask, straight from transformers: no sentence-transformers."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


# --- embed ---------------------------------------------------------------------------------------


def test_embed_equals_sentence_transformers_encode(hub_cache, st_model):
    got = np.stack([r.embedding for r in run(open_runner("embed", MINILM), TEXTS)])
    np.testing.assert_allclose(got, st_model.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the model's Normalize module

    results = run(open_runner("embed", MINILM, dimensions=8), TEXTS)
    cut = np.stack([r.embedding for r in results])
    np.testing.assert_allclose(cut, st_model.encode(TEXTS, truncate_dim=8, normalize_embeddings=True), atol=1e-5)
    assert [r.truncated for r in results] == [False] * 4 + [True] and results[-1].dropped_tokens > 0


def test_embed_no_normalize_is_the_plain_mean_and_normalize_makes_it_unit(hub_cache):
    path = snapshot(hub_cache, MINILM)
    raw = np.stack([r.embedding for r in run(open_runner("embed", MINILM, normalize=False), TEXTS)])
    np.testing.assert_allclose(raw, mean_pooled(path, TEXTS), atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    raw8 = np.stack([r.embedding for r in run(open_runner("embed", MINILM, normalize=False, dimensions=8), TEXTS)])
    np.testing.assert_allclose(raw8, mean_pooled(path, TEXTS)[:, :8], atol=1e-5)


def test_a_plain_transformers_model_gets_mean_pooling_and_a_note(hub_cache, caplog):
    from sentence_transformers import SentenceTransformer

    path = snapshot(hub_cache, BERT)
    with caplog.at_level(logging.WARNING, logger="tfx"):
        runner = open_runner("embed", BERT, normalize=True)
    assert any("no sentence-transformers modules" in r.getMessage() for r in caplog.records)
    got = np.stack([r.embedding for r in run(runner, TEXTS[:3])])
    np.testing.assert_allclose(got, SentenceTransformer(str(path), device="cpu").encode(TEXTS[:3], normalize_embeddings=True), atol=1e-5)


def local_output(capsys, task: str, model: str, inputs=(), path=None, input_format="text", fmt="text", output=None, output_format="jsonl", **settings) -> str:
    """What the local engine writes for a spec (pipeline.run_spec, its writer and finish), in this process."""
    from tfx import pipeline, spec
    from tfx.tasks import open_task

    run_spec = spec.build(
        task, spec.SETTINGS[task](**settings), model=model, device="cpu", inputs=spec.Inputs(tuple(inputs), path, input_format),
        output=spec.Output(fmt, None, output, output_format), keep_going=True, quiet=True,
    )  # fmt: skip
    capsys.readouterr()
    pipeline.run_spec(run_spec, open_task(run_spec))
    return capsys.readouterr().out


def test_embed_formats_and_vector_files(hub_cache, tmp_path, capsys):
    rows = [json.dumps({"id": i, "text": t}) for i, t in enumerate(TEXTS[:3])] + [json.dumps({"id": 3, "text": ""})]
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(rows) + "\n")
    base = dict(path=str(src), input_format="jsonl")
    records = [json.loads(line) for line in local_output(capsys, "embed", MINILM, fmt="jsonl", **base).splitlines()]
    assert [r["id"] for r in records] == [0, 1, 2, 3] and len(records[0]["embedding"]) == 64
    vectors = np.array([r["embedding"] for r in records[:3]], dtype=np.float32)

    assert local_output(capsys, "embed", MINILM, output=str(tmp_path / "vecs") + "/", output_format="npy", **base) == ""
    matrix = np.load(tmp_path / "vecs" / "embeddings.npy")
    assert matrix.shape == (4, 64) and matrix.dtype == np.float32 and np.isnan(matrix[3]).all()
    np.testing.assert_array_equal(matrix[:3], vectors)

    local_output(capsys, "embed", MINILM, output=str(tmp_path / "v.parquet"), output_format="parquet", **base)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "v.parquet").to_pylist()
    assert [r["id"] for r in table] == [0, 1, 2, 3] and table[3]["embedding"] is None
    np.testing.assert_array_equal(np.array([r["embedding"] for r in table[:3]], dtype=np.float32), vectors)

    tsv = local_output(capsys, "embed", MINILM, ["a\tb"], fmt="tsv", dimensions=4)
    assert tsv.count("\t") == 4 and tsv.startswith("a\\tb\t")
    text = local_output(capsys, "embed", MINILM, ["a\tb"], fmt="text", dimensions=4)
    assert [float(x) for x in text.split()] == [float(x) for x in tsv.split("\t")[1:]]


def test_embed_cli_and_its_usage_errors(tfx_env, tmp_path, st_model):
    stdin = "\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(TEXTS[:2])) + "\n"
    r = tfx("embed", "-m", MINILM, "--input-format", "jsonl", env=tfx_env, stdin=stdin)
    assert r.code == 0, r.err
    records = [json.loads(line) for line in r.lines]
    assert [x["id"] for x in records] == [0, 1] and records[0]["model"] == MINILM
    np.testing.assert_allclose([x["embedding"] for x in records], st_model.encode(TEXTS[:2]), atol=1e-5)
    for args, needle in [(("--output-format", "npy"), "--output"), (("--output-format", "csv", "--output", "x"), "csv"), (("--dimensions", "0"), "--dimensions")]:
        assert_clean_error(tfx("embed", "-m", MINILM, *args, "text", env=tfx_env), 2, needle)
    assert_clean_error(tfx("qa", "--output", str(tmp_path / "o"), "-c", "x", "q", env=tfx_env), 2, "--engine ray")


# --- rank ----------------------------------------------------------------------------------------


def test_rank_scores_are_sentence_transformers_cosines_and_cross_encoder_predictions(hub_cache, st_model):
    from sentence_transformers import CrossEncoder
    from sentence_transformers.util import cos_sim

    got = [r.score for r in run(open_runner("rank", MINILM, query=QUERY), tr.FAQ_DOCS)]
    want = cos_sim(st_model.encode_query([QUERY]), st_model.encode_document(tr.FAQ_DOCS))[0].tolist()
    np.testing.assert_allclose(got, want, atol=1e-5)

    cross = [r.score for r in run(open_runner("rank", CROSS, query=QUERY, cross_encoder=True), tr.FAQ_DOCS)]
    reference = CrossEncoder(str(snapshot(hub_cache, CROSS)), device="cpu").predict([(QUERY, d) for d in tr.FAQ_DOCS])
    np.testing.assert_allclose(cross, reference, atol=1e-5)


def test_rank_puts_the_lines_best_first(tfx_env, st_model, capsys):
    from sentence_transformers.util import cos_sim

    docs = tr.FAQ_DOCS[::-1]
    stdin = "\n".join(docs) + "\n\n"  # a blank line is not a document
    query = tr.FAQ[1][0]
    r = tfx("rank", "-m", MINILM, query, env=tfx_env, stdin=stdin)
    assert r.code == 0, r.err
    scores = cos_sim(st_model.encode_query([query]), st_model.encode_document(docs))[0].tolist()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    assert [line.split("\t")[1] for line in r.lines] == [docs[i] for i in order]
    assert r.lines[0].split("\t")[1] == dict(tr.FAQ)[query]  # the model learnt its FAQ
    np.testing.assert_allclose([float(line.split("\t")[0]) for line in r.lines], [scores[i] for i in order], atol=1e-4)

    out = local_output(capsys, "rank", CROSS, docs, fmt="jsonl", query="how do I delete my account", cross_encoder=True, top_k=2)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2 and records[0]["input"] == tr.FAQ_DOCS[2] and records[0]["index"] == docs.index(tr.FAQ_DOCS[2])
    assert records[0]["score"] >= records[1]["score"]
    tsv = local_output(capsys, "rank", MINILM, docs, fmt="tsv", query=query, top_k=1)
    assert tsv == f"{scores[order[0]]:.6f}\t{docs[order[0]]}\n"
    assert_clean_error(tfx("rank", "--cross-encoder", "-m", MINILM, "q", env=tfx_env, stdin=stdin), 1, "cross-encoder")


# --- qa ------------------------------------------------------------------------------------------


def test_qa_finds_the_memorised_answers_in_any_window(hub_cache):
    runner = open_runner("qa", SQUAD, top_k=2)
    windows = runner.tokenizer(tr.QA_CASES[2][0], tr.LONG_CONTEXT, truncation="only_second", max_length=runner.window, stride=runner.stride, return_overflowing_tokens=True)
    assert len(windows["input_ids"]) >= 2 and "green" not in runner.tokenizer.decode(windows["input_ids"][0])  # the answer is in window 2
    results = run(runner, [(q, c) for q, c, _ in tr.QA_CASES] + [tr.QA_UNANSWERABLE])
    for (question, context, answer), r in zip(tr.QA_CASES, results):
        assert r.output == answer and context[r.start : r.end] == answer and r.score > 0.5
        assert len(r.answers) == 2 and r.answers[0]["answer"] == answer and r.answers[0]["score"] >= r.answers[1]["score"]
    assert results[-1].output == "" and results[-1].start is None  # SQuAD 2's "no answer": the null score wins

    one = run(open_runner("qa", SQUAD, context=tr.LONG_CONTEXT, max_answer_length=1), [tr.QA_CASES[2][0]])[0]
    assert one.output == "green" and one.answers is None


def test_qa_cli_context_file_jsonl_pairs_and_errors(tfx_env, tmp_path):
    from tfx import pipeline

    article = tmp_path / "article.txt"
    article.write_text(tr.LONG_CONTEXT)
    rows = [json.dumps({"id": i, "question": q, "context": c}) for i, (q, c, _) in enumerate(tr.QA_CASES[:2])]
    rows.append(json.dumps({"id": 2, "text": tr.QA_CASES[2][0]}))  # no context of its own: --context's
    r = tfx("qa", "-m", SQUAD, "--context", str(article), "--input-format", "jsonl", "--format", "jsonl", env=tfx_env, stdin="\n".join(rows) + "\n")
    assert r.code == 0, r.err
    records = [json.loads(line) for line in r.lines]
    assert [(x["id"], x["output"]) for x in records] == [(0, "New York City"), (1, "Alice Smith"), (2, "green")]
    assert records[0]["start"] == tr.QA_CASES[0][1].index("New York City") and "context" not in records[0]

    (done,) = pipeline.run_texts(open_runner("qa", SQUAD), ["Who?"])  # no context anywhere: an error record
    assert done.error is not None and "no context" in done.error
    from tfx.errors import UsageError

    with pytest.raises(UsageError, match="--stride 40 is too large"):  # the tiny model's windows are 64 tokens
        open_runner("qa", SQUAD, stride=40)


# --- the server ----------------------------------------------------------------------------------


class InProcessServer:
    """The app under uvicorn on a thread of this process (the models are already imported here)."""

    def __init__(self):
        import torch
        import uvicorn

        from tfx.serve.app import create_app
        from tfx.serve.config import Settings
        from tfx.serve.models import Manager
        from tfx.serve.server import bind

        settings = Settings(port=0, keep_alive_s=None)
        sock = bind("127.0.0.1", 0)
        self.url = "http://%s:%d" % sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings, Manager(settings, "cpu", torch.float32)), log_config=None, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def post(self, path: str, body: dict):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def server(hub_cache):
    s = InProcessServer()
    yield s
    s.stop()


def test_server_equals_local_for_qa_embed_and_rank(tfx_env, server, capsys, tmp_path):
    """`tfx ... --server` (which imports no torch) writes what the local engine writes."""
    remote_env = {**tfx_env, "TFX_SERVER": server.url}
    remote_env.pop("TFX_API_KEY", None)
    rows = "\n".join(json.dumps({"question": q, "context": c}) for q, c, _ in tr.QA_CASES) + "\n"
    faq = "\n".join(tr.FAQ_DOCS) + "\n"
    runs = [
        (("qa", "-m", SQUAD, "--input-format", "jsonl", "--format", "jsonl"), rows, dict(task="qa", model=SQUAD, input_format="jsonl", fmt="jsonl")),
        (("qa", "-m", SQUAD, "-c", tr.LONG_CONTEXT, "-k", "2", tr.QA_CASES[2][0]), None, dict(task="qa", model=SQUAD, inputs=[tr.QA_CASES[2][0]], context=tr.LONG_CONTEXT, top_k=2)),
        (("embed", "-m", MINILM, "--dimensions", "16", *TEXTS[:3]), None, dict(task="embed", model=MINILM, inputs=TEXTS[:3], fmt="jsonl", dimensions=16)),
        (("rank", "-m", MINILM, "--format", "jsonl", QUERY), faq, dict(task="rank", model=MINILM, fmt="jsonl", query=QUERY)),
        (("rank", "--cross-encoder", "-m", CROSS, "-k", "3", QUERY), faq, dict(task="rank", model=CROSS, query=QUERY, cross_encoder=True, top_k=3)),
    ]
    for args, stdin, local in runs:
        remote = tfx(*args, env=remote_env, stdin=stdin)
        assert remote.code == 0, (args, remote.err)
        if stdin is not None:
            source = tmp_path / "stdin.txt"
            source.write_text(stdin, encoding="utf-8")
            local["path"] = str(source)
        assert remote.out == local_output(capsys, **local), args


def test_openai_client_embeddings_float_and_base64(server, st_model):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)
    texts = TEXTS[:3]
    answer = client.embeddings.create(model=MINILM, input=texts, encoding_format="float")
    assert answer.model == MINILM and [d.index for d in answer.data] == [0, 1, 2]
    np.testing.assert_allclose(np.array([d.embedding for d in answer.data]), st_model.encode(texts), atol=1e-5)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == sum(len(st_model.tokenizer(t)["input_ids"]) for t in texts)

    packed = client.embeddings.create(model=MINILM, input=texts[0], dimensions=8)  # the client asks for base64 and decodes it
    np.testing.assert_allclose(packed.data[0].embedding, st_model.encode(texts[:1], truncate_dim=8, normalize_embeddings=True)[0], atol=1e-5)
    status, raw = server.post("/v1/embeddings", {"model": MINILM, "input": "hello", "encoding_format": "base64"})
    assert status == 200 and np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4").shape == (64,)
    for body, code in [({"model": MINILM, "input": [1, 2]}, 400), ({"model": MINILM, "input": ""}, 400), ({"model": MINILM, "input": "x", "encoding_format": "hex"}, 400)]:
        status, error = server.post("/v1/embeddings", body)
        assert status == code and "error" in error, (body, error)


def test_rerank_endpoint_shape(server, hub_cache):
    from sentence_transformers import CrossEncoder

    docs = tr.FAQ_DOCS
    status, answer = server.post("/v1/rerank", {"model": CROSS, "query": QUERY, "documents": docs, "top_n": 2, "return_documents": True})
    assert status == 200, answer
    scores = CrossEncoder(str(snapshot(hub_cache, CROSS)), device="cpu").predict([(QUERY, d) for d in docs])
    best = np.argsort(-scores)[:2].tolist()
    assert [r["index"] for r in answer["results"]] == best and answer["model"] == CROSS
    assert [r["document"]["text"] for r in answer["results"]] == [docs[i] for i in best]
    np.testing.assert_allclose([r["relevance_score"] for r in answer["results"]], scores[best], atol=1e-5)
    assert answer["usage"]["total_tokens"] > 0

    status, cosine = server.post("/rerank", {"model": MINILM, "query": QUERY, "documents": [{"text": d} for d in docs]})
    assert status == 200 and len(cosine["results"]) == len(docs) and "document" not in cosine["results"][0]
    assert cosine["results"][0]["index"] == 0  # the reset-password answer
    assert server.post("/v1/rerank", {"model": CROSS, "query": QUERY, "documents": []})[0] == 400


def test_a_sentence_transformers_repository_brings_its_modules():
    """`tfx pull` fetches modules.json and the modules' folders: without them pooling and normalisation are lost."""
    from tfx.hub import select_files

    names = ["config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json",
             "2_Dense/config.json", "2_Dense/model.safetensors", "model.safetensors", "tokenizer.json", "onnx/model.onnx",
             "openvino/openvino_model.xml", "train_script.py"]  # fmt: skip
    assert sorted(select_files(names)) == sorted(names[:9])
    assert select_files(["config.json", "1_Pooling/config.json", "model.safetensors"]) == ["config.json", "model.safetensors"]  # no modules.json
