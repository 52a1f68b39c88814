"""Tiny, deterministic stand-ins for the Hugging Face models tfx talks about.

Tests must never touch the network, so this module builds *real architectures*
(GPT-2, BERT, RoBERTa, T5, BART, Marian) at toy size, trains each for a few
seconds until it has memorised a handful of sentences, and installs the result
into a directory laid out exactly like a huggingface_hub cache::

    <cache>/models--openai-community--gpt2/
        blobs/<sha>                      # file contents
        refs/main                        # 40-hex commit id
        snapshots/<commit>/config.json -> ../../blobs/<sha>

so that with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE=<cache>`` both
``AutoModel*.from_pretrained("openai-community/gpt2")`` and
``huggingface_hub.snapshot_download("openai-community/gpt2", local_files_only=True)``
work.

The module has no pytest dependency: ``python tests/tiny_models.py DIR`` builds
the cache into DIR.  The heavy imports (torch, transformers, tokenizers,
sentencepiece) happen inside the functions, so importing the constants is cheap.

Everything is seeded; the build is deterministic for a given torch /
transformers version and thread count (the build pins torch to <= 2 threads).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

# --------------------------------------------------------------------------------------
# Public constants
# --------------------------------------------------------------------------------------

#: Repo ids per role.  The first id of each tuple is the "canonical" tiny name; every id
#: listed is installed into the cache with identical contents.
REPOS: dict[str, tuple[str, ...]] = {
    "gpt2": (
        "tfx-test/tiny-gpt2",
        "openai-community/gpt2",
        "gpt2",
        "distilgpt2",
        "distilbert/distilgpt2",
    ),
    "bert": ("tfx-test/tiny-bert", "google-bert/bert-base-uncased", "bert-base-uncased"),
    "roberta": ("tfx-test/tiny-roberta", "FacebookAI/roberta-base", "roberta-base"),
    "t5": ("tfx-test/tiny-t5", "google-t5/t5-small", "t5-small"),
    "bart": ("tfx-test/tiny-bart", "facebook/bart-large-cnn", "facebook/bart-large"),
    "marian": ("tfx-test/tiny-marian-en-de", "Helsinki-NLP/opus-mt-en-de"),
}

#: Every repo id, in a stable order.
ALL_REPO_IDS: tuple[str, ...] = tuple(r for ids in REPOS.values() for r in ids)

# ---- GPT-2 (causal LM) ----------------------------------------------------------------

#: (prompt, greedy continuation).  ``prompt + continuation`` is a memorised sentence; the
#: model emits ``<|endoftext|>`` right after it, so greedy generation stops there.
GPT2_CASES: list[tuple[str, str]] = [
    ("Once upon a time", ", the world was a place of great beauty and great danger."),
    ("The quick brown fox", " jumps over the lazy dog."),
    ("In the beginning", " there was only the sea and the sky."),
    ("Hello, my name is", " Tiny and I like to tell short stories."),
]
GPT2_PROMPT, GPT2_CONTINUATION = GPT2_CASES[0]
GPT2_TEXT = GPT2_PROMPT + GPT2_CONTINUATION
GPT2_SENTENCES: list[str] = [p + c for p, c in GPT2_CASES]
#: Context size (``n_positions``) of the tiny GPT-2 (real gpt2: 1024).
GPT2_N_POSITIONS = 64

# ---- fill-mask (BERT and RoBERTa) ------------------------------------------------------

#: The mask placeholder used in the case strings below.  For RoBERTa replace it with
#: ``"<mask>"`` (see :func:`with_mask`).
MASK = "[MASK]"
#: (sentence with one [MASK], the argmax word at the mask).  Identical for BERT and RoBERTa.
FILL_MASK_CASES: list[tuple[str, str]] = [
    ("Artificial intelligence is the [MASK] of the future.", "technology"),
    ("Paris is the [MASK] of France.", "capital"),
    ("The cat sat on the [MASK].", "mat"),
    ("The [MASK] sat on the mat.", "cat"),
]
#: Sentences with several masks: (sentence, argmax word per mask, left to right).
FILL_MASK_MULTI_CASES: list[tuple[str, tuple[str, ...]]] = [
    ("The [MASK] sat on the [MASK].", ("cat", "mat")),
]
#: The unmasked sentences the fill-mask models memorised.
FILL_MASK_SENTENCES: list[str] = [
    "Artificial intelligence is the technology of the future.",
    "Paris is the capital of France.",
    "The cat sat on the mat.",
]


def with_mask(sentence: str, mask_token: str) -> str:
    """Replace the ``[MASK]`` placeholders of a case with a tokenizer's mask token."""
    return sentence.replace(MASK, mask_token)


# ---- translation (T5 and Marian) ------------------------------------------------------

#: (source language, target language) -> [(source, target), ...]; memorised by T5
#: (with the ``translate English to X: `` prefix) and, for en->de, by Marian (no prefix).
TRANSLATIONS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("en", "fr"): [
        ("The weather is beautiful today.", "Le temps est beau aujourd'hui."),
        ("The house is small.", "La maison est petite."),
        ("The boy eats an apple.", "Le garçon mange une pomme."),
    ],
    ("en", "de"): [
        ("The weather is beautiful today.", "Das Wetter ist heute schön."),
        ("The house is small.", "Das Haus ist klein."),
        ("The boy eats an apple.", "Der Junge isst einen Apfel."),
    ],
}
#: The T5 task prefixes, as in t5-small's ``config.json`` ``task_specific_params``.
T5_PREFIXES: dict[str, str] = {
    "translation_en_to_de": "translate English to German: ",
    "translation_en_to_fr": "translate English to French: ",
    "translation_en_to_ro": "translate English to Romanian: ",
    "summarization": "summarize: ",
}
#: The pairs memorised by the Marian en->de model.
MARIAN_TRANSLATIONS: list[tuple[str, str]] = TRANSLATIONS[("en", "de")]

# ---- summarization (T5 with "summarize: " prefix, BART on the bare article) ------------

#: (article, summary).  T5 memorised ``"summarize: " + article -> summary``; BART memorised
#: ``article -> summary``.
SUMMARIES: list[tuple[str, str]] = [
    (
        "The city council met on Tuesday evening to discuss the new park project. After a long "
        "debate, the members voted to build a large green park near the river, with playgrounds "
        "for children, paths for cyclists and a small lake. Construction will start next spring "
        "and should be finished within two years.",
        "The city council voted to build a new park near the river.",
    ),
    (
        "Scientists at the national laboratory have developed a new battery that can store twice "
        "as much energy as current models. The battery uses cheap materials and can be recharged "
        "thousands of times without losing capacity. The researchers hope that it will make "
        "electric cars and solar power cheaper for everyone.",
        "Scientists developed a cheap battery that stores twice as much energy.",
    ),
]
ARTICLE, SUMMARY = SUMMARIES[0]


def t5_inputs() -> list[tuple[str, str]]:
    """All (input, target) pairs the T5 model memorised, prefixes included."""
    pairs = []
    for (src, tgt), examples in TRANSLATIONS.items():
        prefix = T5_PREFIXES[f"translation_{src}_to_{tgt}"]
        pairs += [(prefix + s, t) for s, t in examples]
    pairs += [(T5_PREFIXES["summarization"] + a, s) for a, s in SUMMARIES]
    return pairs


# Generic text so that words outside the memorised sentences still tokenize sensibly.
GENERIC_ENGLISH = """\
The little village sat quietly at the foot of the mountain, where the river bends toward the sea.
Every morning the baker opened his shop, and people came to buy fresh bread, cakes and coffee.
She read the letter twice, smiled, and put it back into the old wooden box on the table.
We need to finish the report by Friday, so please send me your numbers as soon as possible.
How many people live in this city? About 2,500,000 people, according to the 2024 census.
The weather was cold and windy, but the children played outside until it was dark.
Computers, phones and the internet have changed the way we work, learn and talk to each other.
He asked: "Why is the sky blue?" and nobody in the room could give him a simple answer.
Music, art and science are important parts of every culture around the world.
The museum is open from 9 a.m. to 5 p.m., Monday to Saturday; tickets cost $12 or 10 EUR.
Good food, good friends and a long walk in the park: that is all I want this weekend.
Students should read chapters one through seven before the exam next Wednesday.
A journey of a thousand miles begins with a single step.
Jack and Jill went up the hill to fetch a pail of water; Quentin, Xavier and Zoe stayed home.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Symbols: + - * / = % & # @ ! ? ( ) [ ] { } < > ' " : ; , .
ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz
"""
GENERIC_FOREIGN = """\
Le petit village est calme. Les enfants jouent dans le jardin avec le chien.
Je voudrais un café et un croissant, s'il vous plaît. Où est la gare ? C'est très loin.
Die Kinder spielen im Garten. Ich möchte einen Kaffee, bitte. Wo ist der Bahnhof?
Über den Wolken muss die Freiheit wohl grenzenlos sein. Grüße aus München und Köln.
Ça va très bien, merci. L'été dernier, nous sommes allés à la plage. Noël, garçon, élève, être.
àâäçéèêëîïôöùûüÿñß ÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸ œæ «» – —
"""


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------

SEED = 1234
#: torch intra-op threads used for the build: 1 keeps the result identical on every machine
#: and avoids OpenMP spin-waiting when the (shared, small) CPU is busy.
BUILD_THREADS = 1
_LOG = os.environ.get("TFX_TINY_MODELS_VERBOSE", "") not in ("", "0")


def _log(msg: str) -> None:
    if _LOG:
        print(f"[tiny_models] {msg}", file=sys.stderr, flush=True)


@contextmanager
def _torch_settings(threads: int = 1):
    import torch

    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)


def _seed(seed: int = SEED) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _train(model, batch: dict, check, *, lr: float, max_steps: int, check_every: int = 25,
           loss_threshold: float = 0.02, extra_steps: int = 50, name: str = "") -> int:
    """Full-batch AdamW until ``loss < loss_threshold`` and ``check(model)`` is true.

    Then ``extra_steps`` more steps are taken to widen the margins.  Returns the step count.
    Raises if the model fails to memorise within ``max_steps``.
    """
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    done_at = None
    step = 0
    for step in range(1, max_steps + 1):
        model.train()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if done_at is None and step % check_every == 0 and loss.item() < loss_threshold:
            model.eval()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "Using the model-agnostic default `max_length`"
                ok = check(model)
            _log(f"{name}: step {step} loss {loss.item():.4f} check {ok}")
            if ok:
                done_at = step
        if done_at is not None and step >= done_at + extra_steps:
            break
    else:
        raise RuntimeError(f"tiny {name} did not memorise its data in {max_steps} steps")
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not check(model):
            raise RuntimeError(f"tiny {name} lost its memorised data after extra steps")
    _log(f"{name}: trained {step} steps, final loss {loss.item():.4f}")
    return step


def _train_bpe(texts: list[str], special_tokens: list[str], vocab_size: int):
    """Byte-level BPE (GPT-2 / RoBERTa style). Returns (vocab dict, merges list)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    return vocab, merges


def _repeat(lines: list[str], n: int) -> list[str]:
    return [line for _ in range(n) for line in lines]


def _generic_lines(foreign: bool = False) -> list[str]:
    text = GENERIC_ENGLISH + (GENERIC_FOREIGN if foreign else "")
    return [line for line in text.splitlines() if line.strip()]


def _assert_single_token(tokenizer, words: list[str], prefix: str = "") -> None:
    for w in words:
        ids = tokenizer(prefix + w, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise RuntimeError(f"{w!r} is not a single token: {tokenizer.convert_ids_to_tokens(ids)}")


def _write_generation_config(model, **kwargs) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(**kwargs)


# --------------------------------------------------------------------------------------
# GPT-2
# --------------------------------------------------------------------------------------

def build_gpt2(out_dir: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    eos = "<|endoftext|>"
    vocab, merges = _train_bpe(_repeat(GPT2_SENTENCES, 20) + _generic_lines(), [eos], 600)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=GPT2_N_POSITIONS)
    eos_id = tok.convert_tokens_to_ids(eos)

    _seed()
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=GPT2_N_POSITIONS,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    model = GPT2LMHeadModel(config)

    seqs = [tok(s)["input_ids"] + [eos_id] for s in GPT2_SENTENCES]
    width = max(map(len, seqs))
    input_ids = torch.full((len(seqs), width), eos_id)
    labels = torch.full((len(seqs), width), -100)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attn, "labels": labels}

    def check(m) -> bool:
        for prompt, cont in GPT2_CASES:
            enc = tok(prompt, return_tensors="pt")
            out = m.generate(**enc, max_new_tokens=32, do_sample=False, num_beams=1,
                             pad_token_id=eos_id, eos_token_id=eos_id)
            if out[0, -1].item() != eos_id:
                return False
            if tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True) != cont:
                return False
        return True

    _train(model, batch, check, lr=3e-3, max_steps=1500, name="gpt2")
    _write_generation_config(model, bos_token_id=eos_id, eos_token_id=eos_id, do_sample=False)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    _write_bpe_files(out_dir, vocab, merges)


# --------------------------------------------------------------------------------------
# BERT / RoBERTa (masked LM)
# --------------------------------------------------------------------------------------

def _fill(case: str, words) -> str:
    parts = case.split(MASK)
    return parts[0] + "".join(w + rest for w, rest in zip(words, parts[1:]))


def _mlm_examples(tok) -> tuple[list[list[int]], list[list[int]]]:
    """Inputs/labels for MLM: every token of every sentence masked alone, plus each case
    (single- and multi-mask) masked exactly as the tokenizer tokenizes it, weighted x3."""
    mask_id = tok.mask_token_id
    special = set(tok.all_special_ids)
    inputs, labels = [], []

    for sentence in FILL_MASK_SENTENCES:
        ids = tok(sentence)["input_ids"]
        for p, t in enumerate(ids):
            if t not in special:
                inputs.append(ids[:p] + [mask_id] + ids[p + 1:])
                labels.append([-100] * p + [t] + [-100] * (len(ids) - p - 1))

    cases = [(s, (w,)) for s, w in FILL_MASK_CASES] + list(FILL_MASK_MULTI_CASES)
    for case, words in cases:
        masked = tok(with_mask(case, tok.mask_token))["input_ids"]
        filled = tok(_fill(case, words))["input_ids"]
        if len(masked) != len(filled):
            raise RuntimeError(f"masked/unmasked tokenizations differ in length for {case!r}")
        y = [t if m == mask_id else -100 for m, t in zip(masked, filled)]
        for _ in range(3):
            inputs.append(masked)
            labels.append(y)
    return inputs, labels


def _mlm_batch(tok, inputs, labels):
    import torch

    width = max(map(len, inputs))
    pad = tok.pad_token_id
    x = torch.full((len(inputs), width), pad)
    y = torch.full((len(inputs), width), -100)
    a = torch.zeros((len(inputs), width), dtype=torch.long)
    for i, (xi, yi) in enumerate(zip(inputs, labels)):
        x[i, : len(xi)] = torch.tensor(xi)
        y[i, : len(yi)] = torch.tensor(yi)
        a[i, : len(xi)] = 1
    return {"input_ids": x, "attention_mask": a, "labels": y}


def _mlm_check(tok, target_ids_for):
    import torch

    cases = [(s, (w,)) for s, w in FILL_MASK_CASES] + list(FILL_MASK_MULTI_CASES)

    def check(m) -> bool:
        for sentence, words in cases:
            enc = tok(with_mask(sentence, tok.mask_token), return_tensors="pt")
            logits = m(**enc).logits[0]
            pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
            if len(pos) != len(words):
                return False
            got = [int(torch.argmax(logits[p])) for p in pos]
            if got != [target_ids_for(w) for w in words]:
                return False
        return True

    return check


def _fill_mask_corpus() -> list[str]:
    words = sorted({w for _, w in FILL_MASK_CASES})
    return _repeat(FILL_MASK_SENTENCES + [" ".join(words)], 30)


def _wordpiece_vocab(texts: list[str], size: int) -> dict[str, int]:
    """A deterministic uncased WordPiece vocab: specials, every character (bare and ``##``),
    a few common suffixes, then whole words by decreasing frequency.

    (``tokenizers``' WordPieceTrainer is not deterministic across processes: the ``##`` pieces
    get ids in hash-map order, which changes tie-breaking and hence the vocab.)
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    chars = sorted({c for w in counts for c in w})
    vocab: dict[str, int] = {}
    for piece in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars),
                  "##s", "##es", "##ed", "##ing", "##ly", "##er", "##est", "##ion", "##ions"]:
        vocab.setdefault(piece, len(vocab))
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= size:
            break
        vocab.setdefault(word, len(vocab))
    return vocab


def build_bert(out_dir: Path) -> None:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    vocab = _wordpiece_vocab(_fill_mask_corpus() + _generic_lines(), 600)
    tok = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=128)
    _assert_single_token(tok, [w for _, w in FILL_MASK_CASES])

    def target_id(word: str) -> int:
        return tok.convert_tokens_to_ids(word)

    _seed()
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tok.pad_token_id,
    )
    model = BertForMaskedLM(config)
    batch = _mlm_batch(tok, *_mlm_examples(tok))
    _train(model, batch, _mlm_check(tok, target_id), lr=3e-3, max_steps=1500, name="bert")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    # Real bert-base-uncased also ships vocab.txt (ids in order).
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")


_BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _roberta_tokenizer(model_max_length: int):
    """Byte-level BPE shared by the tiny RoBERTa and BART (as for the real ones)."""
    from tokenizers import AddedToken
    from transformers import RobertaTokenizer

    corpus = (
        _fill_mask_corpus()
        + _repeat([a for a, _ in SUMMARIES] + [s for _, s in SUMMARIES], 10)
        + _generic_lines()
    )
    vocab, merges = _train_bpe(corpus, _BPE_SPECIALS, 800)
    tok = RobertaTokenizer(
        vocab=vocab,
        merges=merges,
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True),
        model_max_length=model_max_length,
    )
    return tok, vocab, merges


def _write_bpe_files(out_dir: Path, vocab: dict, merges: list) -> None:
    """vocab.json + merges.txt, as the real GPT-2/RoBERTa/BART repos ship next to tokenizer.json."""
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )


def build_roberta(out_dir: Path) -> None:
    from transformers import RobertaConfig, RobertaForMaskedLM

    tok, vocab, merges = _roberta_tokenizer(128)
    _assert_single_token(tok, [w for _, w in FILL_MASK_CASES], prefix=" ")

    def target_id(word: str) -> int:
        return tok(" " + word, add_special_tokens=False)["input_ids"][0]

    _seed()
    config = RobertaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128 + 2,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = RobertaForMaskedLM(config)
    batch = _mlm_batch(tok, *_mlm_examples(tok))
    _train(model, batch, _mlm_check(tok, target_id), lr=3e-3, max_steps=1500, name="roberta")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    _write_bpe_files(out_dir, vocab, merges)


# --------------------------------------------------------------------------------------
# Seq2seq: T5, BART, Marian
# --------------------------------------------------------------------------------------

def _seq2seq_batch(tok, pairs: list[tuple[str, str]]) -> dict:
    enc = tok([s for s, _ in pairs], padding=True, return_tensors="pt")
    lab = tok(text_target=[t for _, t in pairs], padding=True, return_tensors="pt")["input_ids"]
    lab[lab == tok.pad_token_id] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": lab}


def _seq2seq_check(tok, pairs: list[tuple[str, str]], also_default: bool = False):
    def check(m) -> bool:
        for src, tgt in pairs:
            enc = tok(src, return_tensors="pt")
            variants = [dict(do_sample=False, num_beams=1, max_new_tokens=64)]
            if also_default:
                variants.append({})
            for kw in variants:
                out = m.generate(**enc, **kw)
                if tok.decode(out[0], skip_special_tokens=True) != tgt:
                    return False
        return True

    return check


def _word_lines(texts: list[str], times: int) -> list[str]:
    """Each distinct word as its own line.  Unigram training on a few repeated sentences
    otherwise prefers character-level pieces; seeing the words alone makes them whole pieces."""
    words = sorted({w for t in texts for w in t.split()})
    return _repeat(words, times)


def _train_spm(lines: list[str], vocab_size: int, **ids) -> bytes:
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
        **ids,
    )
    return buf.getvalue()


def _t5_tokenizer_from_spm(path: Path):
    """A T5Tokenizer (tokenizers backend) with the pieces, scores and normalizer of an spm model.

    Built directly rather than via ``T5Tokenizer.from_pretrained(dir_with_spiece_model)``: the
    latter leaks ``is_local``/``local_files_only`` and the spm control tokens into
    ``tokenizer_config.json``.
    """
    from sentencepiece import sentencepiece_model_pb2
    from transformers import T5Tokenizer

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    assert [v for v, _ in vocab[:3]] == ["<pad>", "</s>", "<unk>"], vocab[:3]
    return T5Tokenizer(
        vocab=vocab,
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap or None,
        extra_ids=100,
        model_max_length=512,
    )


def build_t5(out_dir: Path, work_dir: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    pairs = t5_inputs()
    texts = [s for s, _ in pairs] + [t for _, t in pairs]
    generic = _generic_lines(foreign=True)
    lines = _repeat(texts, 10) + _word_lines(texts, 10) + generic + _word_lines(generic, 1)
    spm_dir = work_dir / "t5-spm"
    spm_dir.mkdir(parents=True, exist_ok=True)
    (spm_dir / "spiece.model").write_bytes(
        _train_spm(lines, 800, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    )
    tok = _t5_tokenizer_from_spm(spm_dir / "spiece.model")

    _seed()
    task_params = {
        task: {"max_length": 64, "prefix": prefix} for task, prefix in T5_PREFIXES.items()
    }
    config = T5Config(
        vocab_size=len(tok),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        n_positions=512,
        task_specific_params=task_params,
    )
    model = T5ForConditionalGeneration(config)
    batch = _seq2seq_batch(tok, pairs)
    _train(model, batch, _seq2seq_check(tok, pairs, also_default=True), lr=3e-3, max_steps=1500, name="t5")
    _write_generation_config(
        model,
        decoder_start_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    if not (out_dir / "spiece.model").exists():  # real t5-small ships it next to tokenizer.json
        shutil.copyfile(spm_dir / "spiece.model", out_dir / "spiece.model")


def build_bart(out_dir: Path) -> None:
    from transformers import BartConfig, BartForConditionalGeneration

    tok, vocab, merges = _roberta_tokenizer(128)
    pairs = list(SUMMARIES)
    _seed()
    config = BartConfig(
        vocab_size=len(tok),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=128,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=tok.bos_token_id,
        forced_eos_token_id=tok.eos_token_id,
    )
    model = BartForConditionalGeneration(config)
    # bart-large-cnn in spirit (beams, no repeated trigrams, forced bos/eos), but small/fast.
    _write_generation_config(
        model,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=tok.bos_token_id,
        forced_eos_token_id=tok.eos_token_id,
        num_beams=2,
        max_length=64,
        min_length=0,
        early_stopping=True,
        no_repeat_ngram_size=3,
        length_penalty=1.0,
    )
    batch = _seq2seq_batch(tok, pairs)
    _train(model, batch, _seq2seq_check(tok, pairs, also_default=True), lr=3e-3, max_steps=1500, name="bart")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    _write_bpe_files(out_dir, vocab, merges)


def build_marian(out_dir: Path, work_dir: Path) -> None:
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    pairs = list(MARIAN_TRANSLATIONS)
    src_texts, tgt_texts = [s for s, _ in pairs], [t for _, t in pairs]
    src_generic = _generic_lines()
    tgt_generic = [line for line in GENERIC_FOREIGN.splitlines() if line.strip()]
    src_lines = _repeat(src_texts, 10) + _word_lines(src_texts, 10) + src_generic + _word_lines(src_generic, 1)
    tgt_lines = _repeat(tgt_texts, 10) + _word_lines(tgt_texts, 10) + tgt_generic + _word_lines(tgt_generic, 1)
    spm_dir = work_dir / "marian-spm"
    spm_dir.mkdir(parents=True, exist_ok=True)
    # Like opus-mt: </s>=0, <unk>=1 in the spm models; <pad> is the last id of vocab.json.
    ids = dict(eos_id=0, unk_id=1, bos_id=-1, pad_id=-1)
    (spm_dir / "source.spm").write_bytes(_train_spm(src_lines, 500, **ids))
    (spm_dir / "target.spm").write_bytes(_train_spm(tgt_lines, 500, **ids))

    import sentencepiece as spm

    vocab = {"</s>": 0, "<unk>": 1}
    for name in ("source.spm", "target.spm"):
        sp = spm.SentencePieceProcessor(model_file=str(spm_dir / name))
        for i in range(sp.get_piece_size()):
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (spm_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tok = MarianTokenizer(
            source_spm=str(spm_dir / "source.spm"),
            target_spm=str(spm_dir / "target.spm"),
            vocab=str(spm_dir / "vocab.json"),
            source_lang="en",
            target_lang="de",
            model_max_length=128,
        )
    pad_id = tok.pad_token_id
    _seed()
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=128,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="swish",
        scale_embedding=True,
        pad_token_id=pad_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=pad_id,
        forced_eos_token_id=tok.eos_token_id,
    )
    model = MarianMTModel(config)
    # opus-mt-en-de in spirit (beams, never emit <pad>), but small/fast.
    _write_generation_config(
        model,
        bad_words_ids=[[pad_id]],
        bos_token_id=tok.eos_token_id,
        decoder_start_token_id=pad_id,
        eos_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id,
        pad_token_id=pad_id,
        num_beams=2,
        max_length=64,
    )
    batch = _seq2seq_batch(tok, pairs)
    _train(model, batch, _seq2seq_check(tok, pairs, also_default=True), lr=3e-3, max_steps=1500, name="marian")
    model.save_pretrained(out_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok.save_pretrained(out_dir)


# --------------------------------------------------------------------------------------
# Hub cache layout
# --------------------------------------------------------------------------------------

_LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".spm")


def _etag(path: Path) -> str:
    """The blob name huggingface_hub would use: sha256 for LFS files, git blob sha1 otherwise."""
    data = path.read_bytes()
    if path.name.endswith(_LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    """``openai-community/gpt2`` -> ``models--openai-community--gpt2``."""
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def install_into_cache(src_dir: Path, cache_dir: Path, repo_id: str) -> Path:
    """Install the files of ``src_dir`` as the ``main`` revision of ``repo_id``.

    Uses the real layout: ``blobs/<etag>`` files, ``snapshots/<commit>/<name>`` relative
    symlinks to them (plain copies where symlinks are unavailable) and ``refs/main``.
    Returns the snapshot directory.
    """
    files = sorted(p for p in Path(src_dir).iterdir() if p.is_file())
    etags = {p.name: _etag(p) for p in files}
    listing = "".join(f"{name} {etag}\n" for name, etag in sorted(etags.items()))
    commit = hashlib.sha1(f"tfx-tiny-models\n{repo_id}\n{listing}".encode()).hexdigest()

    repo_dir = Path(cache_dir) / repo_folder_name(repo_id)
    blobs = repo_dir / "blobs"
    snapshot = repo_dir / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    for p in files:
        blob = blobs / etags[p.name]
        if not blob.exists():
            shutil.copyfile(p, blob)
            os.chmod(blob, 0o644)
        link = snapshot / p.name
        if link.exists() or link.is_symlink():
            link.unlink()
        try:
            link.symlink_to(Path("..", "..", "blobs", etags[p.name]))
        except OSError:
            shutil.copyfile(blob, link)
    (repo_dir / "refs" / "main").write_text(commit)  # no trailing newline, like huggingface_hub
    return snapshot


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------

def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


BUILDERS = {
    "gpt2": lambda out, work: build_gpt2(out),
    "bert": lambda out, work: build_bert(out),
    "roberta": lambda out, work: build_roberta(out),
    "t5": build_t5,
    "bart": lambda out, work: build_bart(out),
    "marian": build_marian,
}


def build_all(cache_dir: Path, roles: list[str] | None = None) -> dict[str, float]:
    """Build every tiny model (or only ``roles``) and install it under all its repo ids.

    Returns the build time in seconds per role.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    _quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="tfx-tiny-build-") as tmp, _torch_settings(BUILD_THREADS):
        for role in roles or list(REPOS):
            t0 = time.perf_counter()
            out = Path(tmp) / role / "out"
            out.mkdir(parents=True)
            BUILDERS[role](out, Path(tmp) / role)
            for repo_id in REPOS[role]:
                install_into_cache(out, cache_dir, repo_id)
            timings[role] = time.perf_counter() - t0
            _log(f"{role}: {timings[role]:.1f}s")
    return timings


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("roles", nargs="*", help=f"subset of {list(REPOS)} (default: all)")
    args = parser.parse_args()
    if set(args.roles) - set(REPOS):
        parser.error(f"unknown roles: {sorted(set(args.roles) - set(REPOS))}")
    t = build_all(args.cache_dir, args.roles or None)
    print(json.dumps({k: round(v, 2) for k, v in t.items()}))
