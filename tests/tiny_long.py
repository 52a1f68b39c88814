"""A tiny BART that shows map-reduce summarisation: it has a 64-token context and has memorised four
articles, each just under that, with their one-line summaries, plus the summary of those four
summaries. A document of the four articles (about four contexts long) then summarises, part by part
and then from the parts' summaries, to LONG_FINAL; truncated to its start, it cannot.

Built by the conftest like tiny_models.py (REPOS, build_all); reuses its training helpers."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import tiny_models as tm

REPOS: dict[str, tuple[str, ...]] = {"bart-long": ("tfx-test/tiny-bart-long",)}
LONG_CONTEXT = 64  # positions of the encoder (and of the tokenizer's model_max_length)

LONG_PARTS: list[tuple[str, str]] = [
    (
        "The city council met on Tuesday evening to talk about the old harbour. Many people in the town "
        "want a new park with trees and benches near the water. The mayor said that the plan would cost "
        "less than a new road. Work on the park will begin in the spring and end next year.",
        "The council plans a new park by the harbour.",
    ),
    (
        "Scientists at the national laboratory have built a new kind of battery for cars. The battery is "
        "made from cheap salt and can be charged in ten minutes. Tests show that it still works well "
        "after thousands of charges. The team hopes that factories will start to make it within five years.",
        "Scientists built a cheap battery that charges fast.",
    ),
    (
        "The local football team won the national cup on Saturday after a hard game. The only goal came "
        "in the last minute from a young player from the village. Thousands of fans sang in the streets "
        "until late at night. The coach said that the win belongs to the whole town.",
        "The local team won the cup with a late goal.",
    ),
    (
        "A strong storm crossed the north of the country during the night. Heavy rain flooded several "
        "roads and many trains were stopped for hours. No one was hurt, but some houses lost power until "
        "the morning. The weather service expects calm and sunny days for the rest of the week.",
        "A storm flooded roads in the north but no one was hurt.",
    ),
]
#: The whole document: the four articles, one paragraph.
LONG_DOCUMENT = " ".join(a for a, _ in LONG_PARTS)
#: What the model says of the four summaries joined by spaces (the reduce step's input).
LONG_REDUCE_INPUT = " ".join(s for _, s in LONG_PARTS)
LONG_FINAL = "A new park, a fast battery, a cup win and a storm made the news."


def _pairs() -> list[tuple[str, str]]:
    return [*LONG_PARTS, (LONG_REDUCE_INPUT, LONG_FINAL)]


def _tokenizer():
    from tokenizers import AddedToken
    from transformers import RobertaTokenizer

    texts = [t for pair in _pairs() for t in pair]
    vocab, merges = tm._train_bpe(tm._repeat(texts, 10) + tm._generic_lines(), tm._BPE_SPECIALS, 700)
    tok = RobertaTokenizer(
        vocab=vocab,
        merges=merges,
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True),
        model_max_length=LONG_CONTEXT,
    )
    return tok, vocab, merges


def _check(tok, pairs):
    def check(m) -> bool:
        for src, tgt in pairs:
            enc = tok(src, return_tensors="pt")
            for kw in (dict(do_sample=False, num_beams=1, max_new_tokens=40), {}):
                out = m.generate(**enc, **kw)
                if tok.decode(out[0], skip_special_tokens=True) != tgt:
                    return False
        return True

    return check


def build_bart_long(out_dir: Path) -> None:
    from transformers import BartConfig, BartForConditionalGeneration

    tok, vocab, merges = _tokenizer()
    pairs = _pairs()
    for src, _ in pairs:
        n = len(tok(src)["input_ids"])
        if n > LONG_CONTEXT:
            raise RuntimeError(f"a memorised input is {n} tokens, over the tiny context of {LONG_CONTEXT}: {src[:40]!r}")
    tm._seed()
    config = BartConfig(
        vocab_size=len(tok), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=LONG_CONTEXT,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=tok.bos_token_id, forced_eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    model = BartForConditionalGeneration(config)
    tm._write_generation_config(
        model, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id, forced_bos_token_id=tok.bos_token_id,
        forced_eos_token_id=tok.eos_token_id, num_beams=1, max_length=40,
    )  # fmt: skip
    batch = tm._seq2seq_batch(tok, pairs)
    tm._train(model, batch, _check(tok, pairs), lr=3e-3, max_steps=1500, name="bart-long")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    tm._write_bpe_files(out_dir, vocab, merges)


BUILDERS = {"bart-long": lambda out, work: build_bart_long(out)}


def build_all(cache_dir: Path, roles: list[str] | None = None) -> dict[str, float]:
    """Build the models of this module (or only `roles`) into a hub cache; seconds per role."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    tm._quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="tfx-tiny-long-") as tmp, tm._torch_settings(tm.BUILD_THREADS):
        for role in roles or list(REPOS):
            t0 = time.perf_counter()
            out = Path(tmp) / role / "out"
            out.mkdir(parents=True)
            BUILDERS[role](out, Path(tmp) / role)
            for repo_id in REPOS[role]:
                tm.install_into_cache(out, cache_dir, repo_id)
            timings[role] = time.perf_counter() - t0
    return timings
