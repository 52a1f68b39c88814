"""tfx fill-mask on the tiny BERT (WordPiece, [MASK]) and RoBERTa (byte-level BPE, <mask>)."""

from __future__ import annotations

import json

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

MODELS = ["tfx-test/tiny-bert", "tfx-test/tiny-roberta"]


def test_seed_example_with_default_model(tfx_env):
    r = tfx("fill-mask", "Artificial intelligence is the [MASK] of the future.", env=tfx_env)
    assert r.code == 0, r.err
    assert r.out == "Artificial intelligence is the technology of the future.\n"


@pytest.mark.parametrize("model", MODELS)
def test_memorised_words_written_as_generic_mask(tfx_env, model):
    cases = tm.FILL_MASK_CASES
    r = tfx("fill-mask", "-m", model, *[c for c, _ in cases], env=tfx_env)
    assert r.code == 0, r.err
    assert r.lines == [c.replace("[MASK]", w) for c, w in cases]


def test_native_mask_token_works_too(tfx_env):
    r = tfx("fill-mask", "-m", "tfx-test/tiny-roberta", "Paris is the <mask> of France.", env=tfx_env)
    assert r.code == 0, r.err
    assert r.out == "Paris is the capital of France.\n"


@pytest.mark.parametrize("model", MODELS)
def test_several_masks_each_filled(tfx_env, model):
    sentence, words = tm.FILL_MASK_MULTI_CASES[0]
    r = tfx("fill-mask", "-m", model, "--format", "jsonl", sentence, env=tfx_env)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert [p[0]["token"] for p in record["predictions"]] == list(words)
    expected = sentence
    for word in words:
        expected = expected.replace("[MASK]", word, 1)
    assert record["output"] == expected


def test_casing_and_text_around_the_mask_are_kept(tfx_env):
    # The uncased model predicts "capital"; the user's capitals and spacing stay as written.
    r = tfx("fill-mask", "-m", "tfx-test/tiny-bert", "PARIS   is the [MASK] of FRANCE.", env=tfx_env)
    assert r.code == 0, r.err
    assert r.out == "PARIS   is the capital of FRANCE.\n"


def test_top_k_matches_transformers_scores(tfx_env):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model_id, text = "tfx-test/tiny-bert", "Paris is the [MASK] of France."
    r = tfx("fill-mask", "-m", model_id, "--top-k", "3", "--format", "jsonl", text, env=tfx_env)
    assert r.code == 0, r.err
    preds = json.loads(r.out)["predictions"][0]
    tok = AutoTokenizer.from_pretrained(model_id)
    model = AutoModelForMaskedLM.from_pretrained(model_id).eval()
    inputs = tok(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    index = inputs["input_ids"][0].tolist().index(tok.mask_token_id)
    probs = logits[0, index].softmax(-1)
    scores, ids = probs.topk(3)
    assert [p["token_id"] for p in preds] == ids.tolist()
    assert [p["score"] for p in preds] == pytest.approx(scores.tolist(), abs=1e-5)
    assert preds[0]["token"] == "capital"
    # Piped: one line per record, token<TAB>score for each candidate.
    piped = tfx("fill-mask", "-m", model_id, "--top-k", "3", text, env=tfx_env)
    fields = piped.out.rstrip("\n").split("\t")
    assert len(piped.lines) == 1 and len(fields) == 6
    assert fields[0::2] == [p["token"] for p in preds]


def test_targets_restrict_candidates(tfx_env):
    r = tfx("fill-mask", "-m", "tfx-test/tiny-bert", "--targets", "mat,cat", "--top-k", "2", "--format", "jsonl", "Paris is the [MASK] of France.", env=tfx_env)
    assert r.code == 0, r.err
    tokens = {p["token"] for p in json.loads(r.out)["predictions"][0]}
    assert tokens == {"mat", "cat"}


def test_no_mask_names_the_fix(tfx_env):
    r = tfx("fill-mask", "-m", "tfx-test/tiny-bert", "There is no mask here.", env=tfx_env)
    assert_clean_error(r, 1, "no mask", "[MASK]")


@pytest.mark.parametrize("task, model, needle", [
    ("fill-mask", "tfx-test/tiny-gpt2", "decoder-only model and has no masked-LM head"),
    ("generate", "bert-base-uncased", "encoder-only model and cannot generate text"),
    ("translate", "gpt2", "decoder-only model and cannot translate"),
    ("summarize", "tfx-test/tiny-bert", "encoder-only model and cannot summarise"),
])  # fmt: skip
def test_task_model_mismatch_names_family_and_suggests(tfx_env, task, model, needle):
    extra = ["--to", "fr"] if task == "translate" else []
    r = tfx(task, "-m", model, *extra, "Some [MASK] text.", env=tfx_env)
    assert_clean_error(r, 1, needle, "e.g.")


def test_task_close_removes_its_hook_from_the_shared_model(hub_cache):
    import torch

    from tfx import loading
    from tfx.spec import FillMaskSettings
    from tfx.tasks import make_task

    loaded = loading.load(loading.prepare("tfx-test/tiny-bert", "fill-mask"), "cpu", torch.float32)
    head = loaded.model.get_output_embeddings()
    first = make_task("fill-mask", loaded, FillMaskSettings())
    second = make_task("fill-mask", loaded, FillMaskSettings(top_k=2))
    assert len(head._forward_pre_hooks) == 2
    first.close()
    assert len(head._forward_pre_hooks) == 1
    assert second.run(["Paris is the [MASK] of France."])[0].output == "Paris is the capital of France."
    second.close()
    assert len(head._forward_pre_hooks) == 0
