"""Long documents (issue 14) and the text cut before tokenizing (issue 11 #6): translate splits into
sentences and joins them back, summarize reads a document several contexts long by map-reduce, and
nothing is cut without a word on stderr and "truncated" in the record."""

from __future__ import annotations

import io as stdio
import json
import logging
import threading

import pytest
import tiny_long as tl
import tiny_models as tm
from clihelp import tfx

from tfx import io, pipeline, spec, split
from tfx.results import Result, Seq2SeqResult
from tfx.tasks import open_task

MARIAN = "tfx-test/tiny-marian-en-de"
T5 = "tfx-test/tiny-t5"
BART_LONG = "tfx-test/tiny-bart-long"
GPT2 = "tfx-test/tiny-gpt2"
BERT = "tfx-test/tiny-bert"
PAIRS = tm.TRANSLATIONS[("en", "de")]
PARAGRAPH = f"{PAIRS[0][0]} {PAIRS[1][0]}\n{PAIRS[2][0]}"  # three memorised sentences, a line break inside
JOINED = f"{PAIRS[0][1]} {PAIRS[1][1]}\n{PAIRS[2][1]}"

_tasks: dict = {}


def task(hub_cache, name: str, settings, model: str):
    key = (name, settings, model)
    if key not in _tasks:
        _tasks[key] = open_task(spec.build(name, settings, model=model, device="cpu"))
    return _tasks[key]


def run(runner, texts=None, stdin: bytes | None = None, fmt: str = "jsonl", keep_going: bool = True, quiet: bool = False):
    """A run through the one pipeline in this process: (exit status, output lines, stderr of the writer)."""
    out, err = stdio.StringIO(), stdio.StringIO()
    records = io.read_records(list(texts or []), None, "text", stdin=stdio.BytesIO(stdin or b""))
    code = pipeline.run(records, runner, io.Writer(fmt, out=out, err=err), keep_going, quiet=quiet)
    lines = out.getvalue().splitlines()
    return code, [json.loads(line) for line in lines] if fmt == "jsonl" else lines, err.getvalue()


# --- sentence segmentation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("Dr. Smith went home. He was tired.", ["Dr. Smith went home.", "He was tired."]),
        ("Use a tool, e.g. a hammer. Then stop.", ["Use a tool, e.g. a hammer.", "Then stop."]),
        ("It costs 3.50 euros. Version 2.0.1 is out!", ["It costs 3.50 euros.", "Version 2.0.1 is out!"]),
        ("Mr. and Mrs. Jones live in the U.S. They like it.", ["Mr. and Mrs. Jones live in the U.S.", "They like it."]),
        ("No punctuation at all", ["No punctuation at all"]),
    ],
)
def test_sentences_keep_abbreviations_and_decimals(text, sentences):
    assert split.sentences(text, "en")[0] == sentences
    assert "".join(split.segment(text)) == text


def test_segmentation_is_lossless_and_never_raises():
    # sentencex panics (a Rust PanicException, a BaseException) on a capital, non-ASCII whitespace and a
    # period: mapped to ASCII spaces first, the original text is still what comes back.
    for text in ("M\u00a0. Next one.", "D\u2029.ü.bb", "Grüße aus München. Ça va?\u3000Oui.", "\n\n", " a. b. "):
        assert "".join(split.segment(text)) == text
    texts, gaps = split.sentences("  One.\n\nTwo.  Three.  ", "en")
    assert texts == ["One.", "Two.", "Three."] and gaps == ["  ", "\n\n", "  ", "  "]


def test_pack_fills_chunks_and_overlaps_whole_sentences():
    assert split.pack([5, 5, 5, 5], 10) == [(0, 2), (2, 4)]
    # an overlap of up to 2 tokens: the previous chunk's last sentence when it is that short
    assert split.pack([3, 2, 3, 2, 3], 6, overlap=2) == [(0, 2), (1, 3), (3, 5)]
    assert split.pack([8, 8, 8], 8, overlap=4) == [(0, 1), (1, 2), (2, 3)]  # no room for overlap
    assert split.pack([4, 4, 4], 8, fits=lambda a, b: b - a < 2) == [(0, 1), (1, 2), (2, 3)]


# --- translate: split, batch, join -------------------------------------------------------------


@pytest.mark.parametrize("model", [MARIAN, T5])
def test_a_paragraph_translates_to_every_sentence_joined(hub_cache, model):
    split_task = task(hub_cache, "translate", spec.TranslateSettings(tgt="de"), model)
    code, out, _ = run(split_task, [PARAGRAPH])
    assert code == 0 and out[0]["output"] == JOINED
    whole = task(hub_cache, "translate", spec.TranslateSettings(tgt="de", split=False), model)
    _, unsplit, _ = run(whole, [PARAGRAPH])
    assert unsplit[0]["output"] != JOINED  # the model alone drops sentences of a paragraph
    assert sum(t in unsplit[0]["output"] for _, t in PAIRS) < 3


class Upper:
    """A runner that splits like translate and records its batches."""

    batch_size = 4
    max_chars = None

    def __init__(self):
        self.batches: list[list[str]] = []

    def parts(self, text):
        texts, gaps = split.sentences(text, "en")
        return split.Parts(texts, gaps)

    def check(self, text):
        pass

    def cost(self, text):
        return len(text)

    def run(self, texts):
        self.batches.append(list(texts))
        return [Seq2SeqResult(output=t.upper(), generated_tokens=1) for t in texts]


def test_the_sentences_of_a_window_are_batched_together_by_length():
    runner = Upper()
    records = [io.Record(0, 1, "A long first sentence here. B."), io.Record(1, 2, "C. Another long one, yes."), io.Record(2, 3, "")]
    done, stop = pipeline.process(runner, records, True)
    assert stop is None and [d.result.output for d in done] == ["A LONG FIRST SENTENCE HERE. B.", "C. ANOTHER LONG ONE, YES.", ""]
    assert done[0].result.generated_tokens == 2
    assert runner.batches == [["B.", "C.", "Another long one, yes.", "A long first sentence here."]]


def test_a_sentence_longer_than_the_context_is_cut_with_a_warning(hub_cache, caplog):
    runner = task(hub_cache, "translate", spec.TranslateSettings(tgt="de"), MARIAN)
    long_one = " ".join(["the house is small and the boy eats an apple"] * 20)  # one sentence, ~200 tokens
    with caplog.at_level(logging.WARNING, logger="tfx"):
        code, out, _ = run(runner, [PAIRS[0][0] + " " + long_one + "."])
    assert code == 0 and out[0]["output"].startswith(PAIRS[0][1] + " ")
    assert out[0]["cut_sentences"] == 1 and "truncated" not in out[0]
    assert "argument 1: 1 sentence longer than the model's context cut at token boundaries" in caplog.text


def test_bad_records_between_paragraphs_keep_the_line_count(hub_cache):
    runner = task(hub_cache, "translate", spec.TranslateSettings(tgt="de"), MARIAN)
    stdin = b"\n".join([PARAGRAPH.replace("\n", " ").encode(), b"bad \xff utf-8", b"", PAIRS[1][0].encode(), b"\xfe"]) + b"\n"
    code, out, err = run(runner, stdin=stdin, fmt="text")
    assert code == 1 and len(out) == 5
    assert out[0] == JOINED.replace("\n", " ") and out[1] == out[2] == out[4] == "" and out[3] == PAIRS[1][1]
    assert "line 2: invalid UTF-8" in err and "line 5: invalid UTF-8" in err


def test_translate_through_the_server_equals_local(hub_cache, tfx_env):
    from test_serve import KEY, Server

    args = ("translate", "-m", MARIAN, "--to", "de", "--format", "jsonl", "--input", "-")
    stdin = (PARAGRAPH.replace("\n", " ") + "\n" + PAIRS[2][0] + "\n").encode()
    server = Server(["-m", MARIAN, "--api-key", KEY], tfx_env)
    try:
        remote = tfx(*args, env={**tfx_env, "TFX_SERVER": server.url, "TFX_API_KEY": KEY}, stdin=stdin)
    finally:
        server.stop()
    local = tfx(*args, env=tfx_env, stdin=stdin)
    assert local.code == remote.code == 0, remote.err
    assert remote.out == local.out
    assert json.loads(local.lines[0])["output"] == JOINED.replace("\n", " ")


# --- summarize: map-reduce ---------------------------------------------------------------------


def test_a_document_four_contexts_long_is_summarised_from_all_its_parts(hub_cache, caplog):
    runner = task(hub_cache, "summarize", spec.SummarizeSettings(), BART_LONG)
    assert len(runner.encode([tl.LONG_DOCUMENT])[0]) > 3 * tl.LONG_CONTEXT
    chunks = runner.chunks(tl.LONG_DOCUMENT)
    assert chunks == [a for a, _ in tl.LONG_PARTS]  # on sentence boundaries, each within the context
    assert runner.generate_parts(chunks) == [s for _, s in tl.LONG_PARTS]  # every part's summary is reached
    with caplog.at_level(logging.WARNING, logger="tfx"):
        code, out, _ = run(runner, [tl.LONG_DOCUMENT])
    assert code == 0 and out[0]["output"] == tl.LONG_FINAL and out[0]["chunks"] == 4
    assert "truncated" not in out[0]
    assert "argument 1: longer than the model's context: summarised in 4 parts" in caplog.text


def test_truncate_strategy_reads_the_start_only_and_says_so(hub_cache, caplog):
    runner = task(hub_cache, "summarize", spec.SummarizeSettings(strategy="truncate"), BART_LONG)
    with caplog.at_level(logging.WARNING, logger="tfx"):
        _, out, _ = run(runner, [tl.LONG_DOCUMENT])
    dropped = len(runner.encode([tl.LONG_DOCUMENT])[0]) - tl.LONG_CONTEXT
    assert out[0]["output"] != tl.LONG_FINAL and out[0]["truncated"] is True and out[0]["dropped_tokens"] == dropped
    assert f"argument 1: input longer than the model takes: {dropped:,} tokens dropped" in caplog.text


def test_max_new_tokens_applies_to_the_final_summary_only(hub_cache):
    runner = task(hub_cache, "summarize", spec.SummarizeSettings(max_new_tokens=6), BART_LONG)
    _, out, _ = run(runner, [tl.LONG_DOCUMENT])
    # the parts were summarised in full (else the reduce input would not be the memorised one): the final
    # summary is the memorised one, cut at 6 tokens
    assert out[0]["chunks"] == 4 and out[0]["generated_tokens"] <= 6
    assert tl.LONG_FINAL.startswith(out[0]["output"]) and 0 < len(out[0]["output"]) < len(tl.LONG_FINAL)


def test_a_short_text_is_summarised_whole(hub_cache):
    runner = task(hub_cache, "summarize", spec.SummarizeSettings(), BART_LONG)
    _, out, _ = run(runner, [tl.LONG_PARTS[1][0]])
    assert out[0]["output"] == tl.LONG_PARTS[1][1] and "chunks" not in out[0]


# --- nothing is cut silently -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, settings, model, text",
    [
        ("generate", spec.GenerateSettings(max_new_tokens=4), GPT2, "The quick brown fox " * 30),
        ("fill-mask", spec.FillMaskSettings(), BERT, "Paris is the [MASK] of France. " + "The cat sat on the mat. " * 40),
        ("translate", spec.TranslateSettings(tgt="de", split=False), MARIAN, "The house is small and " * 40),
    ],
)
def test_truncation_is_named_counted_and_summarised_when_quiet(hub_cache, caplog, name, settings, model, text):
    runner = task(hub_cache, name, settings, model)
    short = "The cat sat on the [MASK]." if name == "fill-mask" else "short"
    with caplog.at_level(logging.WARNING, logger="tfx"):
        code, out, err = run(runner, [short, text])
    assert code == 0 and "truncated" not in out[0]
    assert out[1]["truncated"] is True and out[1]["dropped_tokens"] > 0
    kept = {"generate": "its last part", "fill-mask": "the text around its masks", "translate": "its first part"}[name]
    assert f"argument 2: input longer than the model takes: {out[1]['dropped_tokens']:,} tokens dropped, keeping {kept}" in caplog.text
    assert "argument 1" not in caplog.text and err == ""
    _, _, err = run(runner, [short, text], quiet=True)
    assert err.startswith("tfx: warning: 1 record longer than the model takes were cut (argument 2)")


def test_no_truncate_makes_it_a_record_error(hub_cache):
    runner = task(hub_cache, "generate", spec.GenerateSettings(max_new_tokens=4, no_truncate=True), GPT2)
    code, out, err = run(runner, ["short", "The quick brown fox " * 30, "short"])
    assert code == 1 and len(out) == 3 and "error" in out[1] and "--no-truncate" in out[1]["error"]
    strict = task(hub_cache, "summarize", spec.SummarizeSettings(strategy="truncate", no_truncate=True), BART_LONG)
    assert "error" in run(strict, [tl.LONG_DOCUMENT])[1][0]
    reads_all = task(hub_cache, "summarize", spec.SummarizeSettings(no_truncate=True), BART_LONG)
    assert run(reads_all, [tl.LONG_DOCUMENT])[1][0]["output"] == tl.LONG_FINAL  # map-reduce drops nothing


def test_cli_reports_cuts_on_stderr_once_per_record(tfx_env):
    text = "The quick brown fox " * 30
    r = tfx("generate", "-m", GPT2, "--max-new-tokens", "4", "--format", "jsonl", "short", text, env=tfx_env)
    assert r.code == 0 and "Traceback" not in r.err
    warnings = [line for line in r.err.splitlines() if "argument 2" in line]
    assert len(warnings) == 1 and "tokens dropped" in warnings[0]
    quiet = tfx("generate", "-m", GPT2, "--max-new-tokens", "4", "--quiet", "short", text, env=tfx_env)
    assert quiet.err.splitlines() == [f"tfx: warning: 1 record longer than the model takes were cut (argument 2): {json.loads(r.lines[1])['dropped_tokens']} tokens dropped."]


# --- issue 11 #6: cut by characters before tokenizing; bounded reading -------------------------


def test_an_8_mb_fill_mask_input_is_cut_before_it_is_tokenized(hub_cache):
    runner = task(hub_cache, "fill-mask", spec.FillMaskSettings(), BERT)
    seen: list[int] = []
    tokenizer = runner.tokenizer
    original = type(tokenizer).__call__

    def spy(self, text, *args, **kwargs):
        seen.append(max(len(t) for t in text) if isinstance(text, list) else len(text))
        return original(self, text, *args, **kwargs)

    text = "The cat sat on the mat. " * 170_000 + "Paris is the [MASK] of France. " + "The cat sat on the mat. " * 170_000
    assert len(text) > 8_000_000
    type(tokenizer).__call__ = spy
    try:
        code, out, _ = run(runner, [text])
    finally:
        type(tokenizer).__call__ = original
    assert code == 0 and max(seen) <= runner.max_chars
    assert out[0]["truncated"] is True and out[0]["dropped_chars"] == len(text) - runner.max_chars
    assert len(out[0]["predictions"]) == 1 and "[MASK]" not in out[0]["output"]  # the window kept holds the mask
    assert "Paris is the " in out[0]["output"] and len(out[0]["output"]) < runner.max_chars + 10


def test_generate_keeps_the_end_of_a_prompt_cut_by_characters():
    class Echo(Upper):
        max_chars, keep = 10, "end"

        def parts(self, text):
            return None

        def run(self, texts):
            return [Result(output=t) for t in texts]

    done, _ = pipeline.process(Echo(), [io.Record(0, 1, "0123456789abcdef")], True)
    assert done[0].result.output == "6789abcdef" and done[0].result.dropped_chars == 6 and done[0].result.truncated


def test_an_over_long_line_is_its_own_error_and_is_not_held(monkeypatch):
    monkeypatch.setattr(io, "MAX_LINE_BYTES", 1000)
    stdin = stdio.BytesIO(b"first\n" + b"x" * 5000 + b"\n" + b"y" * 1000 + b"\nlast")
    records = list(io.read_records([], None, "text", stdin=stdin))
    assert [r.text for r in records] == ["first", "", "y" * 1000, "last"]
    assert records[1].error.startswith("the line is 5,001 bytes, over tfx's limit") and records[1].size == 5001
    assert records[2].error is None


def test_read_ahead_is_bounded_in_bytes():
    q = io.ReadAhead(max_items=100, max_bytes=100)
    q.put("a", 60)
    third = threading.Thread(target=lambda: (q.put("b", 60), q.put(None)), daemon=True)
    third.start()
    third.join(0.2)
    assert third.is_alive()  # 120 bytes would be over the bound: the reader waits
    assert q.get() == "a"
    third.join(5)
    assert q.get() == "b" and q.get() is None
    big = io.ReadAhead(max_items=100, max_bytes=10)
    big.put("huge", 1000)  # one item always gets in, however large
    assert big.get(timeout=0) == "huge"


def test_windows_are_cut_short_by_bytes():
    q = io.ReadAhead(100, 10**9)
    for i in range(10):
        q.put(io.Record(i, i + 1, "x" * 100), 100)
    q.put(None)
    assert [len(w) for w in pipeline.windows(q, 8, max_bytes=300)] == [3, 3, 3, 1]
