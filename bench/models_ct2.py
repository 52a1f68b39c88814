"""The models bench_ct2.py runs, random weights at the real sizes, in an offline cache laid out like the hub's:

- GPT-2 small and T5-small: bench/models.py (the same builders bench.py uses: 124M / 60M parameters,
  tokenizers trained here at the real vocabulary sizes);
- a Marian model at opus-mt-en-de's size (d_model 512, 6 + 6 layers, 8 heads, FFN 2048, swish, shared
  embeddings, ~74M parameters): source.spm and target.spm trained here with sentencepiece (unigram,
  32,000 pieces each) on pseudo-English and a second pseudo-language, vocab.json their union + <pad>, as
  opus-mt lays it out (58,101 entries there; the size trained here is printed in the results).

Random weights make the generated length arbitrary (an early EOS ends a row), so every measured program gets
the same number of new tokens: copies of the models whose generation_config.json sets
min_new_tokens == max_new_tokens == N, under repo ids of their own (tfx-bench/...-minN). The fast GPT-2
path declines a generation config with min_new_tokens, so it runs the plain copy; bench_ct2.py checks that
its outputs equal the forced transformers ones token for token (so it, too, made N tokens per prompt)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

MARIAN = "Helsinki-NLP/opus-mt-en-de"
SPM_PIECES = 32_000


def snapshot(cache: Path, repo_id: str) -> Path:
    import tiny_models

    repo = Path(cache) / tiny_models.repo_folder_name(repo_id)
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


def has(cache: Path, repo_id: str) -> bool:
    import tiny_models

    return (Path(cache) / tiny_models.repo_folder_name(repo_id) / "refs" / "main").exists()


def forced(cache: Path, source: Path, repo_id: str, n: int) -> str:
    """Install `source`'s files as `repo_id`, its generation config forcing exactly n new tokens."""
    import tiny_models

    if has(cache, repo_id):
        return repo_id
    with tempfile.TemporaryDirectory(prefix="tfx-bench-forced-") as tmp:
        for f in Path(source).iterdir():
            if f.is_file():
                shutil.copyfile(f.resolve(), Path(tmp) / f.name)  # the blob, not the link
        gen_file = Path(tmp) / "generation_config.json"
        gen = json.loads(gen_file.read_text()) if gen_file.exists() else {}
        gen.update(min_new_tokens=n, max_new_tokens=n)
        gen.pop("max_length", None)
        gen.pop("min_length", None)
        gen_file.write_text(json.dumps(gen, indent=2) + "\n")
        tiny_models.install_into_cache(Path(tmp), cache, repo_id)
    return repo_id


# ---- Marian at opus-mt-en-de's size ---------------------------------------------------------------------


def _target_sentences(n: int) -> list[str]:
    """A second pseudo-language (other syllables, other words), so the two vocabularies differ as en/de do."""
    import random

    import models

    rng = random.Random(23)
    onsets = ["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "sch", "st", "t", "w", "z", "zw", "kr", "pf"]
    vowels = ["a", "e", "i", "o", "u", "ä", "ö", "ü", "ei", "au", "ie", "eu"]
    codas = ["", "", "n", "r", "s", "t", "ch", "ng", "nd", "rt", "ft", "lt", "tz", "en", "er"]
    words, seen = [], set()
    while len(words) < 60_000:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return models.sentences(n, seed=29, words=words)


def build_marian(out: Path, corpus: list[str], pieces: int = SPM_PIECES, log=print) -> None:
    import warnings

    import sentencepiece as spm
    import tiny_models
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    work = out / "spm"
    work.mkdir()
    ids = dict(eos_id=0, unk_id=1, bos_id=-1, pad_id=-1)  # as opus-mt: </s>=0, <unk>=1, <pad> last in vocab.json
    t0 = time.perf_counter()
    (work / "source.spm").write_bytes(tiny_models._train_spm(corpus, pieces, **ids))
    (work / "target.spm").write_bytes(tiny_models._train_spm(_target_sentences(len(corpus)), pieces, **ids))
    log(f"marian: trained two sentencepiece models in {time.perf_counter() - t0:.0f} s")
    vocab = {"</s>": 0, "<unk>": 1}
    for name in ("source.spm", "target.spm"):
        sp = spm.SentencePieceProcessor(model_file=str(work / name))
        for i in range(sp.get_piece_size()):
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (work / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tok = MarianTokenizer(source_spm=str(work / "source.spm"), target_spm=str(work / "target.spm"), vocab=str(work / "vocab.json"), source_lang="en", target_lang="de", model_max_length=512)
    pad = tok.pad_token_id
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(vocab), d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
        encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512, activation_function="swish", scale_embedding=True,
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0, share_encoder_decoder_embeddings=True,
    )  # fmt: skip  (opus-mt-en-de's config.json, bar the vocabulary size)
    model = MarianMTModel(config).eval()
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]], bos_token_id=0, decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0,
        pad_token_id=pad, num_beams=4, max_length=512,
    )  # fmt: skip  (opus-mt-en-de's generation_config.json)
    model.save_pretrained(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok.save_pretrained(out)
    shutil.rmtree(work)


# ---- all of them ----------------------------------------------------------------------------------------


def build(cache: Path, log=print) -> Path:
    """GPT-2 small, T5-small (bench/models.py) and the Marian-size model, unless `cache` has them."""
    import models
    import tiny_models

    cache = Path(cache)
    models.build(cache, roles=("gpt2", "t5"), log=log)
    if not has(cache, MARIAN):
        tiny_models._quiet_transformers()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tfx-bench-marian-") as tmp:
            build_marian(Path(tmp), models.sentences(100_000, seed=1), log=log)
            tiny_models.install_into_cache(Path(tmp), cache, MARIAN)
        log(f"built marian in {time.perf_counter() - t0:.1f} s")
    return cache


def copy_tiny(hub_cache: Path, cache: Path, repo_ids: list[str]) -> Path:
    """--smoke: the tiny test models, copied from the test cache into the bench's own."""
    import tiny_models

    for repo_id in repo_ids:
        if not has(cache, repo_id):
            tiny_models.install_into_cache(snapshot(hub_cache, repo_id), cache, repo_id)
    return cache


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / ".cache" / "hub-ct2")
