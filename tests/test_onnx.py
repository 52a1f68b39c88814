"""The ONNX Runtime backend (--backend onnx) for the encoder tasks on the tiny models: export into the
converted-copy store, fp32 equal to the transformers backend within 1e-4 for classify (softmax, sigmoid,
zero-shot), ner (each aggregation), qa (windows with a stride over a long context: answers, scores and spans),
fill-mask, embed and rank (bi- and cross-encoder); qa's windows equal to transformers' tokenizer's; embed
equal to SentenceTransformer.encode; int8 agreement; no torch or transformers import on a converted run; a crash
mid-export leaves no half copy; the copies listed and removed with the cache's; --backend auto."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import tiny_encoders as te  # noqa: E402
import tiny_models as tm  # noqa: E402
import tiny_retrieval as tr  # noqa: E402
from clihelp import tfx  # noqa: E402

from tfx import copies, spec, tasks  # noqa: E402
from tfx import onnx as backend  # noqa: E402

TOLERANCE = 1e-4
LONG = " ".join(["word"] * 300)  # past every tiny model's limit: truncated the same way
SENTIMENT = [t for t, _ in te.SENTIMENT_CASES] + ["ok", LONG]
CASES = {  # name -> (task, model, settings, texts)
    "sst2": ("classify", "tfx-test/tiny-sst2", {}, SENTIMENT),
    "emotion-top3": ("classify", "tfx-test/tiny-emotion", {"top_k": 3}, [t for t, _ in te.EMOTION_CASES]),
    "multilabel": ("classify", "tfx-test/tiny-emotion-multilabel", {"top_k": 7}, [t for t, _ in te.EMOTION_CASES]),
    "zero-shot": ("classify", "tfx-test/tiny-nli", {"labels": te.TOPIC_LABELS}, [p for p, _, _ in te.ZERO_SHOT_CASES]),
    "zero-shot-multi": ("classify", "tfx-test/tiny-nli", {"labels": te.TICKET_LABELS, "multi_label": True}, [p for p, _, _ in te.ZERO_SHOT_CASES]),
    "ner": ("ner", "tfx-test/tiny-ner", {}, [*te.NER_SENTENCES, "Zebra café über Paris"]),
    "ner-first": ("ner", "tfx-test/tiny-ner", {"aggregate": "first"}, te.NER_SENTENCES),
    "ner-bpe-average": ("ner", "tfx-test/tiny-ner-bpe", {"aggregate": "average"}, te.NER_SENTENCES),
    "ner-none": ("ner", "tfx-test/tiny-ner-bpe", {"aggregate": "none"}, te.NER_SENTENCES),
    "qa": ("qa", tr.REPOS["squad"][0], {"top_k": 2}, [*[(q, c) for q, c, _ in tr.QA_CASES], tr.QA_UNANSWERABLE]),
    "qa-long": ("qa", tr.REPOS["squad"][0], {"context": tr.LONG_CONTEXT, "top_k": 3}, [tr.QA_CASES[2][0], "Who planted apple trees?", "Where did the children swim?"]),
    "fill-mask": ("fill-mask", "tfx-test/tiny-bert", {"top_k": 3}, [c for c, _ in tm.FILL_MASK_CASES + tm.FILL_MASK_MULTI_CASES]),
    "fill-mask-bpe": ("fill-mask", "tfx-test/tiny-roberta", {"targets": ("cat", "mat", "capital")}, [c for c, _ in tm.FILL_MASK_CASES]),
    "embed": ("embed", "tfx-test/tiny-minilm", {}, [*tr.FAQ_DOCS, "a", LONG]),
    "embed-cut": ("embed", "tfx-test/tiny-minilm", {"dimensions": 16}, tr.FAQ_DOCS),
    "embed-raw": ("embed", "tfx-test/tiny-minilm", {"normalize": False}, tr.FAQ_DOCS),
    "rank": ("rank", "tfx-test/tiny-minilm", {"query": tr.FAQ[0][0]}, tr.FAQ_DOCS),
    "rank-cross": ("rank", "tfx-test/tiny-cross-encoder", {"query": tr.FAQ[1][0], "cross_encoder": True}, [*tr.FAQ_DOCS, LONG]),
}


def _spec(case: str, backend_name: str, compute_type: str = "auto"):
    task, model, settings, _ = CASES[case]
    return spec.build(task, spec.SETTINGS[task](**settings), model=model, backend=backend_name, compute_type=compute_type)


def _records(task, texts):
    return [r.record() for r in task.run(list(texts))]


def _close(a, b, path="") -> None:
    """Equal records, floats within TOLERANCE (vectors element-wise)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple, np.ndarray)) and not isinstance(a, str):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, (float, np.floating)) and not isinstance(a, bool):
        assert abs(float(a) - float(b)) <= TOLERANCE, (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.fixture(scope="module")
def opened(hub_cache):
    """Each case on onnx (exported once per model and head into the session's HF_HOME) and on transformers."""
    import torch

    torch.set_num_threads(1)
    return {(case, name): tasks.open_task(_spec(case, name)) for case in CASES for name in ("onnx", "transformers")}


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_equals_transformers(opened, case):
    texts = CASES[case][3]
    mine = opened[case, "onnx"]
    assert type(mine).__name__.startswith("Onnx")
    _close(_records(mine, texts), _records(opened[case, "transformers"], texts))


def test_embed_equals_sentence_transformers_encode(opened, hub_cache):
    from sentence_transformers import SentenceTransformer

    from tfx import hub

    texts = CASES["embed"][3]
    model = SentenceTransformer(str(hub.resolve("tfx-test/tiny-minilm").path), device="cpu", local_files_only=True)
    theirs = model.encode(texts, convert_to_numpy=True)
    ours = np.stack([r.embedding for r in opened["embed", "onnx"].run(texts)])
    assert np.abs(ours - theirs).max() <= TOLERANCE
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.999999


def test_qa_windows_are_transformers_windows(opened, hub_cache):
    """The onnx copy's tokenizer (tokenizers only) cuts (question, context) pairs into the windows transformers'
    fast tokenizer cuts: ids, type ids, masks, offsets, sequence ids and which pair each window came from;
    the long context really takes several windows."""
    from transformers import AutoTokenizer

    from tfx import hub

    task = opened["qa-long", "onnx"]
    ref = AutoTokenizer.from_pretrained(str(hub.resolve(CASES["qa"][1]).path))
    pairs = [(q, tr.LONG_CONTEXT) for q in CASES["qa-long"][3]] + [(q, c) for q, c, _ in tr.QA_CASES]
    questions, contexts = [q for q, _ in pairs], [c for _, c in pairs]
    for stride in (task.stride, 5):
        args = dict(truncation="only_second", max_length=task.window, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=True)
        mine, theirs = task.tokenizer(questions, contexts, **args), ref(questions, contexts, **args)
        assert set(mine) == set(theirs)
        for key in theirs:
            assert [list(map(tuple, r)) if key == "offset_mapping" else r for r in mine[key]] == [list(map(tuple, r)) if key == "offset_mapping" else r for r in theirs[key]], (stride, key)
        assert [mine.sequence_ids(i) for i in range(len(mine["input_ids"]))] == [theirs.sequence_ids(i) for i in range(len(theirs["input_ids"]))]
        assert mine["overflow_to_sample_mapping"].count(0) > 1  # the long context: more than one window
    assert [r.output for r in task.run(CASES["qa-long"][3][:1])] == [tr.QA_CASES[2][2]]  # found past the first window


def test_int8_agreement(opened):
    """Dynamic int8 quantization: the labels of the trained tiny classifiers and tagger, and qa's answer spans
    (in one window or several), stay those of fp32 on at least 99 % of the texts, and embeddings keep a cosine
    of 0.99 (bench/ measures real models)."""
    agree = {}
    for case in ("sst2", "emotion-top3", "ner"):
        int8 = tasks.open_task(_spec(case, "onnx", "int8"))
        texts = CASES[case][3]
        ours, ref = _records(int8, texts), _records(opened[case, "transformers"], texts)
        agree[case] = sum(a["output"] == b["output"] for a, b in zip(ours, ref)) / len(texts)
    for case in ("qa", "qa-long"):  # qa: the same answer span
        texts = CASES[case][3]
        ours, ref = _records(tasks.open_task(_spec(case, "onnx", "int8")), texts), _records(opened[case, "transformers"], texts)
        agree[case] = sum((a["output"], a["start"], a["end"]) == (b["output"], b["start"], b["end"]) for a, b in zip(ours, ref)) / len(texts)
    print(f"int8 agreement with fp32 transformers: {agree}")  # the figures; bench/ measures real models
    assert min(agree.values()) >= 0.99, agree
    int8 = tasks.open_task(_spec("embed", "onnx", "int8"))
    a = np.stack([r.embedding for r in int8.run(tr.FAQ_DOCS)])
    b = np.stack([r.embedding for r in opened["embed", "transformers"].run(tr.FAQ_DOCS)])
    assert ((a * b).sum(1)).min() >= 0.99  # unit vectors


def test_copies_are_listed_and_removed_with_the_cache(opened):
    from tfx import loading
    from tfx.tasks import onnx as onnx_tasks

    path = onnx_tasks.converted_path(loading.prepare("tfx-test/tiny-emotion", "classify"), "classify", "int8")
    found = copies.converted({"TFX-test/tiny-emotion"})  # every backend's copies, case-insensitive
    assert {(c.backend, c.head, c.quantization) for c in found} == {("onnx", "classify", "float32"), ("onnx", "classify", "int8")}
    assert all(c.version == backend.version() and c.size > 0 for c in found)
    assert {c.head for c in copies.converted({"tfx-test/tiny-minilm"})} == {"embed"}
    int8 = [c for c in found if c.quantization == "int8"]
    assert copies.remove(int8) == int8[0].size and not path.exists()
    assert [c.quantization for c in copies.converted({"tfx-test/tiny-emotion"})] == ["float32"]


def test_a_crash_mid_export_leaves_no_half_copy(hub_cache, monkeypatch):
    from tfx import loading
    from tfx.onnx import export
    from tfx.tasks import onnx as onnx_tasks

    prepared = loading.prepare("tfx-test/tiny-sst2", "classify")
    copies.remove([c for c in copies.converted({"tfx-test/tiny-sst2"}) if c.quantization == "int8"])  # made by another test
    real = export.export

    def crash(source, out, head, quantization, trust_remote_code=False):
        real(source, out, head, quantization, trust_remote_code)
        raise KeyboardInterrupt  # after the graph is written, before the copy is complete

    monkeypatch.setattr(export, "export", crash)
    with pytest.raises(KeyboardInterrupt):
        onnx_tasks.converted_path(prepared, "classify", "int8")
    path = copies.folder("onnx", prepared.resolved.repo_id, prepared.resolved.path, "classify", "int8")
    assert not path.exists() and not list(path.parent.glob(f".tmp-{path.name}-*"))
    assert not any(c.quantization == "int8" and c.head == "classify" for c in copies.converted({"tfx-test/tiny-sst2"}))
    monkeypatch.setattr(export, "export", real)
    assert copies.complete(onnx_tasks.converted_path(prepared, "classify", "int8"), "onnx")


NO_TORCH_RUNS = {  # case -> (the CLI's arguments for that case's settings, its texts)
    "sst2": (["classify", "-m", "tfx-test/tiny-sst2"], SENTIMENT[:2]),
    "qa-long": (["qa", "-m", CASES["qa-long"][1], "-c", tr.LONG_CONTEXT, "-k", "3"], CASES["qa-long"][3][:2]),
}


@pytest.mark.parametrize("case", list(NO_TORCH_RUNS))
def test_a_converted_run_never_imports_torch_or_transformers(opened, tfx_env, case):
    args, texts = NO_TORCH_RUNS[case]
    probe = "\n".join([  # the CLI ends with os._exit: report the modules there
        "import os, sys",
        "real_exit = os._exit",
        "def report(code):",
        "    sys.stderr.write(f'HEAVY={sorted(m for m in (\"torch\", \"transformers\", \"sentence_transformers\") if m in sys.modules)}\\n'); sys.stderr.flush(); real_exit(code)",
        "os._exit = report",
        f"sys.argv = ['tfx', *{args!r}, '--backend', 'onnx', '--format', 'jsonl', *sys.argv[1:]]",
        "from tfx.cli import main",
        "main()",
    ])  # fmt: skip
    r = subprocess.run([sys.executable, "-c", probe, *texts], capture_output=True, text=True, env=tfx_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY=[]" in r.stderr, r.stderr
    import json

    expected = _records(opened[case, "transformers"], texts)
    got = [json.loads(line) for line in r.stdout.splitlines()]
    _close([{k: g[k] for k in expected[0]} for g in got], expected)


def test_backend_auto_takes_onnx_at_float32_and_falls_back_with_a_note(opened, capsys, monkeypatch):
    task = tasks.open_task(_spec("sst2", "auto"))
    assert type(task).__name__ == "OnnxClassify" and task.model.quantization == "float32"
    qa = tasks.open_task(_spec("qa", "auto"))
    assert type(qa).__name__ == "OnnxQa" and qa.model.quantization == "float32"
    with pytest.raises(backend.Unsupported, match="not generate"):
        tasks.open_task(spec.build("generate", spec.SETTINGS["generate"](), model="tfx-test/tiny-gpt2", backend="onnx"))
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed: auto runs transformers and says why
    assert type(tasks.open_task(_spec("qa", "auto"))).__name__ == "Qa"
    err = capsys.readouterr().err
    assert "running transformers" in err and "onnxruntime" in err, err
    with pytest.raises(backend.Unsupported) as info:
        tasks.open_task(_spec("qa", "onnx"))
    assert 'pip install "tfx-cli[onnx]"' in str(info.value) and "\n" not in str(info.value)


def test_cli_backend_onnx_equals_transformers(opened, tfx_env):
    args = ["ner", "-m", "tfx-test/tiny-ner", "--format", "jsonl", *te.NER_SENTENCES[:2]]
    onnx_run = tfx(*args, "--backend", "onnx", env=tfx_env)
    plain = tfx(*args, env=tfx_env)
    assert onnx_run.code == 0 and plain.code == 0, (onnx_run.err, plain.err)
    import json

    _close([json.loads(x) for x in onnx_run.lines], [json.loads(x) for x in plain.lines])
    assert len(onnx_run.lines) == 2


def test_cache_ls_and_rm_show_and_remove_onnx_copies(hub_cache, tfx_env, tmp_path):
    """`tfx cache ls` lists every backend's copies beside the model; `tfx cache rm` removes them with it."""
    import json
    import shutil

    hub = tmp_path / "hub"
    hub.mkdir()
    shutil.copytree(hub_cache / "models--tfx-test--tiny-sst2", hub / "models--tfx-test--tiny-sst2", symlinks=True)
    env = {**tfx_env, "HF_HUB_CACHE": str(hub), "HF_HOME": str(tmp_path / "home")}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS")  # as a user runs it: transformers' own bars must stay off too
    run = tfx("classify", "-m", "tfx-test/tiny-sst2", "--backend", "onnx", "I loved it.", env=env)
    assert run.code == 0, run.err
    notes = [line for line in run.err.splitlines() if line.strip()]  # the conversion says so, once, and nothing else
    assert len(notes) == 2 and "converting tfx-test/tiny-sst2 to ONNX" in notes[0] and "converted" in notes[1], run.err
    listing = json.loads(tfx("cache", "ls", "--format", "json", env=env).out)
    (model,) = listing
    (copy,) = model["converted"]
    assert copy["backend"] == "onnx" and copy["head"] == "classify" and copy["quantization"] == "float32"
    assert "onnx classify float32" in tfx("cache", "ls", env=env).out
    removed = tfx("cache", "rm", "--yes", "tfx-test/tiny-sst2", env=env)
    assert removed.code == 0, removed.err
    assert "classify--float32" in removed.err  # the copy is named among what was deleted
    assert not [p for p in (tmp_path / "home" / "onnx").iterdir() if not p.name.startswith(".")]  # a lock file may stay


def test_serve_backend_onnx_answers_as_transformers(hub_cache, tfx_env, tmp_path):
    """`tfx serve --backend onnx`: the encoder tasks run on the onnx copy (tfx ps says so) and answer what
    the transformers server answers; a task onnx does not run (generate) stays on transformers."""
    from test_serve import Server

    texts = [t for t, _ in te.SENTIMENT_CASES][:3]
    env = {**tfx_env, "HF_HOME": str(tmp_path / "home")}
    answers = {}
    for backend in ("onnx", "transformers"):
        server = Server(["--backend", backend, "--api-key", "k"], env)
        try:
            status, _, body = server.request("POST", "/v1/classify", {"model": "tfx-test/tiny-sst2", "inputs": texts, "top_k": 2}, key="k")
            assert status == 200, body
            answers[backend] = body["results"]
            status, _, ps = server.request("GET", "/v1/ps", key="k")
            assert [row["backend"] for row in ps["data"]] == [backend]
            if backend == "onnx":
                status, _, gen = server.request("POST", "/v1/generate", {"model": "tfx-test/tiny-gpt2", "input": "Hi", "max_new_tokens": 2}, key="k")
                assert status == 200, gen
                _, _, ps = server.request("GET", "/v1/ps", key="k")
                assert sorted(row["backend"] for row in ps["data"]) == ["onnx", "transformers"]
        finally:
            server.stop()
    for mine, theirs in zip(answers["onnx"], answers["transformers"]):
        assert [c["label"] for c in mine["labels"]] == [c["label"] for c in theirs["labels"]]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(mine["labels"], theirs["labels"])) < TOLERANCE
