"""tfx.tokens: the one tokenizer shim gives AutoTokenizer's ids and text on the tiny models' files, and the one
streaming detokenizer's pieces, for random id sequences (multi-byte characters split over tokens, special
tokens, unknown bytes), concatenate to exactly what decode() gives the result, per token, never ending inside
a character: through DecodeStream (the shims, transformers' TokenizersBackend) and through the Python path
(a sentencepiece-only tokenizer, transformers' WordPiece clean-up)."""

from __future__ import annotations

import json
import random

import pytest

TEXTS = [
    "Hello world, this is a test.",
    "Zebra café über ß 123 !! and",
    "你好，世界 🙂👍🏽 naïve — “quotes”",
    "it's a dog . don't stop , ok ?",
    "emoji 🐍🦀 and 漢字かな交じり文",
]
SEQUENCES = 25  # random sequences per tokenizer (and each with and without a prompt)


def _path(name: str):
    from tfx import hub

    return hub.resolve(name).path


@pytest.fixture(scope="module")
def paths(hub_cache):
    names = {"gpt2": "tfx-test/tiny-gpt2", "t5": "tfx-test/tiny-t5", "bert": "tfx-test/tiny-bert", "bart": "tfx-test/tiny-bart", "marian": "tfx-test/tiny-marian-en-de"}
    return {kind: _path(name) for kind, name in names.items()}


@pytest.fixture(scope="module")
def shims(paths):
    from tfx.ct2 import text
    from tfx.fast.text import FastTokenizer

    return {
        "gpt2": FastTokenizer(paths["gpt2"]),
        "t5": text.load(paths["t5"], "t5"),
        "bert": text.JsonTokenizer(paths["bert"], "bert"),
        "bart": text.load(paths["bart"], "bart"),
        "marian": text.load(paths["marian"], "marian"),
    }


@pytest.fixture(scope="module")
def hf(paths):
    from transformers import AutoTokenizer

    return {kind: AutoTokenizer.from_pretrained(path) for kind, path in paths.items()}


@pytest.fixture(scope="module")
def byte_fallback(tmp_path_factory):
    """A Llama-like sentencepiece BPE (Metaspace, byte fallback: a character it has not seen is <0xNN> bytes),
    trained here in milliseconds, as a shim and as transformers reads it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    from tfx.tokens import ShimTokenizer

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.train_from_iterator(TEXTS[:2] * 5, trainers.BpeTrainer(vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):  # the byte pieces, plain vocabulary as in Llama's tokenizer.json
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    path = tmp_path_factory.mktemp("byte-fallback")
    (path / "tokenizer.json").write_text(json.dumps(spec))
    (path / "tokenizer_config.json").write_text('{"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}')
    return ShimTokenizer(path), AutoTokenizer.from_pretrained(path)


def _ids(tok, rng: random.Random, byte_runs: bool) -> list[int]:
    """Encoded text cut anywhere, random vocabulary ids and special tokens mixed in. byte_runs: byte-fallback
    pieces (<0xNN>) are decoded a run at a time, a run with one invalid byte all U+FFFD (tokenizers' and
    transformers' decode rewrite a finished character there): no stray byte is put next to a run."""
    pieces = tok.get_vocab()
    byte = {i for t, i in pieces.items() if byte_runs and t.startswith("<0x")}
    vocab = [i for i in pieces.values() if i not in byte]
    ids = list(tok(rng.choice(TEXTS), add_special_tokens=False)["input_ids"])
    for _ in range(rng.randint(0, 6)):
        at = rng.choice([k for k in range(len(ids) + 1) if not ({*ids[max(k - 1, 0) : k + 1]} <= byte and 0 < k < len(ids))])
        ids.insert(at, rng.choice([rng.choice(vocab), *tok.all_special_ids]))
    return ids if byte_runs else ids[rng.randint(0, 2) :]


def _streamed(tok, prompt: list[int], ids: list[int]) -> list[str | None]:
    from tfx.tokens import TextStream

    stream = TextStream(tok, prompt)
    steps = [stream.step(t) for t in ids]
    return [*steps, stream.finish()]


def _expected(tok, prompt: list[int], ids: list[int]) -> str:
    """What the generate task's result holds: the continuation of the prompt, special tokens skipped."""
    before = tok.decode(prompt, skip_special_tokens=True)
    return tok.decode(prompt + ids, skip_special_tokens=True)[len(before) :]


def _check_stream(tok, seed: int, byte_runs: bool = False) -> None:
    rng = random.Random(seed)
    for _ in range(SEQUENCES):
        ids = _ids(tok, rng, byte_runs)
        for prompt in ([], tok(rng.choice(TEXTS))["input_ids"]):
            pieces = _streamed(tok, prompt, ids)
            assert "".join(p for p in pieces if p) == _expected(tok, prompt, ids), (prompt, ids, pieces)
            assert not any(p and p.endswith("\ufffd") for p in pieces[:-1]), pieces  # never half a character


@pytest.mark.parametrize("kind", ["gpt2", "t5", "bert", "bart", "marian"])
def test_shim_streams_join_to_decode(shims, kind):
    _check_stream(shims[kind], seed=1)


@pytest.mark.parametrize("kind", ["gpt2", "t5", "bert", "marian"])
def test_transformers_streams_join_to_decode(hf, kind):
    _check_stream(hf[kind], seed=2)


def test_byte_fallback_streams_join_to_decode(byte_fallback):
    shim, theirs = byte_fallback
    ids = shim("漢字 🐍", add_special_tokens=False)["input_ids"]
    assert len(ids) > 4 and shim.convert_ids_to_tokens(ids[-1]).startswith("<0x")  # characters split into bytes
    for tok in byte_fallback:
        _check_stream(tok, seed=3, byte_runs=True)


def test_which_path_streams(hf, shims, byte_fallback, paths):
    from transformers import AutoTokenizer

    from tfx.tokens import TextStream, stream_backend

    assert all(stream_backend(t) is t.backend_tokenizer for t in (*shims.values(), byte_fallback[0]) if hasattr(t, "backend_tokenizer"))
    assert stream_backend(hf["gpt2"]) is hf["gpt2"].backend_tokenizer  # TokenizersBackend: DecodeStream
    assert stream_backend(hf["marian"]) is None  # sentencepiece in Python: the Python path
    cleaned = AutoTokenizer.from_pretrained(paths["bert"], clean_up_tokenization_spaces=True)
    assert stream_backend(cleaned) is None
    ids = cleaned("it ' s , don ' t . a ' b", add_special_tokens=False)["input_ids"]
    assert "".join(p for p in _streamed(cleaned, [], ids) if p) == cleaned.decode(ids, skip_special_tokens=True) == "it's, don't. a'b"
    _check_stream(cleaned, seed=4)
    # per token, not held to word ends: every ASCII token of GPT-2's sends its text at once
    tok = shims["gpt2"]
    words = tok("Hello world, this is", add_special_tokens=False)["input_ids"]
    stream = TextStream(tok)
    assert [stream.step(t) for t in words] == [tok.decode([t]) for t in words]


def test_shims_encode_and_decode_as_auto_tokenizer(shims, hf):
    for kind, shim in shims.items():
        theirs = hf[kind]
        for text in TEXTS:
            for special in (True, False):
                assert shim(text, add_special_tokens=special)["input_ids"] == theirs(text, add_special_tokens=special)["input_ids"], (kind, text)
        rows = theirs(TEXTS)["input_ids"]
        assert shim(TEXTS)["input_ids"] == rows
        for ids in rows:
            for skip in (True,) if kind == "marian" else (True, False):  # Marian's shim: the ct2 tasks' decode only
                assert shim.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip), (kind, ids)
        assert (shim.eos_token_id, shim.pad_token_id) == (theirs.eos_token_id, theirs.pad_token_id), kind
        assert set(theirs.all_special_ids) <= set(shim.all_special_ids), kind
        assert shim.convert_ids_to_tokens(rows[0]) == theirs.convert_ids_to_tokens(rows[0]), kind


def test_byte_fallback_shim_matches_transformers(byte_fallback):
    shim, theirs = byte_fallback
    for text in TEXTS:
        ids = theirs(text)["input_ids"]
        assert shim(text)["input_ids"] == ids
        assert shim.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert shim.all_special_ids == sorted(theirs.all_special_ids)


def _open(model: str, backend: str = "transformers", **settings):
    from tfx import spec
    from tfx.spec import GenerateSettings
    from tfx.tasks import open_task

    kwargs = {"compute_type": "float32"} if backend == "ct2" else {}
    return open_task(spec.build("generate", GenerateSettings(**settings), model=model, backend=backend, device="cpu", **kwargs))


@pytest.mark.parametrize(
    ("model", "backend", "settings", "path"),
    [
        ("tfx-test/tiny-gpt2", "transformers", {}, "fast"),
        ("tfx-test/tiny-gpt2", "transformers", {"repetition_penalty": 1.0}, "transformers"),  # not the fast path's
        ("tfx-test/tiny-gpt2", "transformers", {"logprobs": 1}, "transformers"),  # chunks with their entries
        ("tfx-test/tiny-t5", "transformers", {}, "transformers"),  # sentencepiece, an encoder-decoder
        ("tfx-test/tiny-gpt2", "ct2", {}, "ct2"),
    ],
)
def test_a_stream_is_the_generation_it_streams(hub_cache, model, backend, settings, path):
    """Every streaming path's chunks join to the text the same task gives unstreamed (continuations of each
    memorised prompt and of one cut inside a word)."""
    import tiny_models as tm

    from tfx.results import TextChunk

    if backend == "ct2":
        pytest.importorskip("ctranslate2")
    task = _open(model, backend, max_new_tokens=24, continuation_only=True, **settings)
    assert (path == "fast") == (getattr(task, "fast", None) is not None)
    prompts = [p for p, _ in tm.GPT2_CASES][:2] + [tm.GPT2_TEXT[:9]] if "gpt2" in model else ["translate English to German: The house is wonderful.", "Hello"]
    for prompt in prompts:
        *chunks, result = list(task.stream(prompt))
        assert chunks and all(isinstance(c, TextChunk) for c in chunks)
        assert "".join(c.text for c in chunks) == result.output == task.run([prompt])[0].output, prompt
        if settings.get("logprobs") is not None:
            assert [e for c in chunks for e in c.logprobs] == result.logprobs[0]
