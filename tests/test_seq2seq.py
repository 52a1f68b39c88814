"""tfx translate and summarize on the tiny T5, Marian and BART."""

from __future__ import annotations

import json
import time

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx


@pytest.mark.parametrize("tgt", ["fr", "de"])
def test_t5_translates_memorised_sentences_by_default(tfx_env, tgt):
    pairs = tm.TRANSLATIONS[("en", tgt)]
    r = tfx("translate", "--to", tgt, *[s for s, _ in pairs], env=tfx_env)
    assert r.code == 0, r.err
    assert r.lines == [t for _, t in pairs]


def test_marian_default_for_other_pairs_needs_no_prefix(tfx_env):
    # en->de goes to t5-small by default; name the Marian model explicitly...
    pairs = tm.MARIAN_TRANSLATIONS
    r = tfx("translate", "-m", "Helsinki-NLP/opus-mt-en-de", "--to", "de", "--format", "jsonl", *[s for s, _ in pairs], env=tfx_env)
    assert r.code == 0, r.err
    assert [json.loads(line)["output"] for line in r.lines] == [t for _, t in pairs]


def test_unsupported_pair_suggests_a_model(tfx_env):
    r = tfx("translate", "-m", "t5-small", "--to", "es", "Hello.", env=tfx_env)
    assert_clean_error(r, 2, "cannot translate en->es", "Helsinki-NLP/opus-mt-en-es")
    r = tfx("translate", "-m", "Helsinki-NLP/opus-mt-en-de", "--to", "fr", "Hello.", env=tfx_env)
    assert_clean_error(r, 2, "translates en->de", "t5-small")


def test_default_for_an_uncached_pair_fails_fast_offline(tfx_env):
    start = time.monotonic()
    r = tfx("translate", "--to", "es", "Hello.", env=tfx_env)
    assert time.monotonic() - start < 15
    assert_clean_error(r, 1, "Helsinki-NLP/opus-mt-en-es is not in the local cache", "tfx pull")


def test_to_is_required(tfx_env):
    assert_clean_error(tfx("translate", "Hello.", env=tfx_env), 2, "--to")


@pytest.mark.parametrize("model", ["facebook/bart-large-cnn", "tfx-test/tiny-t5"])
def test_summarize_memorised_articles(tfx_env, model):
    r = tfx("summarize", "-m", model, *[a for a, _ in tm.SUMMARIES], env=tfx_env)
    assert r.code == 0, r.err
    assert r.lines == [s for _, s in tm.SUMMARIES]


def test_default_summarizer_and_long_output_not_cut_at_20_tokens(tfx_env):
    from transformers import AutoTokenizer

    article, summary = tm.SUMMARIES[0]
    r = tfx("summarize", "--format", "jsonl", article, env=tfx_env)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert record["output"] == summary
    assert record["model"] == "facebook/bart-large-cnn"
    # t5's config sets no output length: tfx derives one from the input instead of stopping at 20 tokens.
    tok = AutoTokenizer.from_pretrained("tfx-test/tiny-t5")
    assert len(tok(summary)["input_ids"]) > 0
    t5 = tfx("summarize", "-m", "t5-small", "--format", "jsonl", article, env=tfx_env)
    assert json.loads(t5.out)["output"] == summary


def test_max_new_tokens_limits_output(tfx_env):
    article, summary = tm.SUMMARIES[0]
    r = tfx("summarize", "-m", "tfx-test/tiny-bart", "--max-new-tokens", "3", "--format", "jsonl", article, env=tfx_env)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert record["generated_tokens"] <= 3
    assert summary.startswith(record["output"]) and record["output"] != summary
