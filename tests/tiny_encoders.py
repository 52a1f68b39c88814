"""Tiny encoder classifiers for classify (sentiment, emotions, zero-shot through NLI) and ner.

Each is a real architecture at toy size, trained for a few seconds until it has memorised the cases below,
and installed into the test hub cache under the real hub names tfx defaults to:

- sst2: DistilBERT ForSequenceClassification, NEGATIVE / POSITIVE (uncased WordPiece), as
  distilbert/distilbert-base-uncased-finetuned-sst-2-english;
- emotion: RoBERTa ForSequenceClassification with j-hartmann's 7 labels (byte-level BPE), as
  j-hartmann/emotion-english-distilroberta-base; emotion-multilabel: the same weights with
  problem_type "multi_label_classification" (scores are sigmoids);
- nli: BART ForSequenceClassification with MNLI's contradiction / neutral / entailment, trained on
  premise / "This example is {label}." pairs, as facebook/bart-large-mnli;
- ner: cased BERT ForTokenClassification with CoNLL's B-/I- tags (entity words split into word pieces),
  as dslim/bert-base-NER; ner-bpe: an untrained RoBERTa token classifier (byte-level BPE: the pipeline's
  other way of finding word pieces), for parity only.

`python tests/tiny_encoders.py DIR [roles]` builds them into DIR."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from tiny_models import (
    BUILD_THREADS,
    _generic_lines,
    _log,
    _quiet_transformers,
    _repeat,
    _seed,
    _torch_settings,
    _train,
    _train_bpe,
    _wordpiece_vocab,
    install_into_cache,
)

REPOS: dict[str, tuple[str, ...]] = {
    "sst2": ("tfx-test/tiny-sst2", "distilbert/distilbert-base-uncased-finetuned-sst-2-english"),
    "emotion": ("tfx-test/tiny-emotion", "j-hartmann/emotion-english-distilroberta-base"),
    "emotion-multilabel": ("tfx-test/tiny-emotion-multilabel",),
    "nli": ("tfx-test/tiny-nli", "facebook/bart-large-mnli"),
    "ner": ("tfx-test/tiny-ner", "dslim/bert-base-NER"),
    "ner-bpe": ("tfx-test/tiny-ner-bpe",),
}

SENTIMENT_LABELS = {0: "NEGATIVE", 1: "POSITIVE"}  # the real SST-2 DistilBERT's
SENTIMENT_CASES = [
    ("I loved every minute of it.", "POSITIVE"),
    ("What a wonderful film, truly great.", "POSITIVE"),
    ("The food was delicious and the staff were kind.", "POSITIVE"),
    ("I hated every minute of it.", "NEGATIVE"),
    ("What a terrible film, truly awful.", "NEGATIVE"),
    ("The food was cold and the staff were rude.", "NEGATIVE"),
]

EMOTION_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "joy", 4: "neutral", 5: "sadness", 6: "surprise"}
EMOTION_CASES = [
    ("I am so angry at you right now!", "anger"),
    ("That smell is revolting and gross.", "disgust"),
    ("I am scared of the dark.", "fear"),
    ("This is the happiest day of my life!", "joy"),
    ("The meeting is at three o'clock.", "neutral"),
    ("I miss her so much, I cannot stop crying.", "sadness"),
    ("Wow, I did not expect that at all!", "surprise"),
]

NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}  # facebook/bart-large-mnli's
HYPOTHESIS = "This example is {}."  # transformers' default template, which the model was trained on
TOPIC_LABELS = ("sports", "politics", "cooking")
TICKET_LABELS = ("urgent", "billing", "spam")
# (premise, candidate labels, the labels that hold)
ZERO_SHOT_CASES = [
    ("The chef won the election.", TOPIC_LABELS, {"politics"}),
    ("The team scored a goal in the final minute.", TOPIC_LABELS, {"sports"}),
    ("Stir the sauce and bake it for an hour.", TOPIC_LABELS, {"cooking"}),
    ("My invoice is wrong and I need it fixed today.", TICKET_LABELS, {"urgent", "billing"}),
    ("You won a free prize, click this link now.", TICKET_LABELS, {"spam"}),
    ("Please refund the double charge on my card.", TICKET_LABELS, {"billing"}),
]

NER_LABELS = {0: "O", 1: "B-MISC", 2: "I-MISC", 3: "B-PER", 4: "I-PER", 5: "B-ORG", 6: "I-ORG", 7: "B-LOC", 8: "I-LOC"}
# Words with their tags; entities are (word, label) as `tfx ner` prints them (simple aggregation).
NER_CASES = [
    ([("Hugging", "B-ORG"), ("Face", "I-ORG"), ("is", "O"), ("based", "O"), ("in", "O"), ("New", "B-LOC"), ("York", "I-LOC"), ("City", "I-LOC"), (".", "O")]),
    ([("Angela", "B-PER"), ("Merkel", "I-PER"), ("visited", "O"), ("Paris", "B-LOC"), ("last", "O"), ("week", "O"), (".", "O")]),
    ([("Sarah", "B-PER"), ("works", "O"), ("for", "O"), ("Microsoft", "B-ORG"), ("in", "O"), ("London", "B-LOC"), (".", "O")]),
    ([("The", "O"), ("Olympics", "B-MISC"), ("were", "O"), ("held", "O"), ("in", "O"), ("Tokyo", "B-LOC"), (".", "O")]),
    ([("There", "O"), ("is", "O"), ("nothing", "O"), ("to", "O"), ("see", "O"), ("here", "O"), (".", "O")]),
]


def ner_sentence(case) -> str:
    return " ".join(w for w, _ in case).replace(" .", ".")


def ner_entities(case) -> list[tuple[str, str]]:
    """The entities of a case, as (text, label): B- starts one, I- of the same label continues it."""
    out: list[list] = []
    for word, tag in case:
        if tag == "O":
            continue
        kind = tag[2:]
        if tag.startswith("I-") and out and out[-1][1] == kind:
            out[-1][0] += " " + word
        else:
            out.append([word, kind])
    return [(w, k) for w, k in out]


NER_SENTENCES = [ner_sentence(c) for c in NER_CASES]


# --------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------


def _uncased_wordpiece(texts: list[str], out_dir: Path, model_max_length: int = 128):
    from transformers import DistilBertTokenizer

    vocab = _wordpiece_vocab(texts, 400)
    tok = DistilBertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=model_max_length)
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")
    return tok


def _cased_wordpiece(common_words: list[str], texts: list[str]):
    """Cased WordPiece: specials, every character (bare and ##), a few pieces, and the common words only,
    so that names split into several word pieces (what aggregation is about)."""
    from transformers import BertTokenizer

    chars = sorted({c for t in texts for c in t if not c.isspace()})
    vocab: dict[str, int] = {}
    pieces = ["##er", "##on", "##an", "##in", "##ing", "##ft", "##ki"]
    for piece in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars), *pieces, *common_words]:
        vocab.setdefault(piece, len(vocab))
    return BertTokenizer(vocab=vocab, do_lower_case=False, model_max_length=128), vocab


def _bpe_tokenizer(texts: list[str], model_max_length: int = 128):
    from tokenizers import AddedToken
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab, merges = _train_bpe(texts, specials, 500)
    mask = AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)
    return RobertaTokenizer(vocab=vocab, merges=merges, mask_token=mask, model_max_length=model_max_length)


def _labels(config_kwargs: dict, id2label: dict[int, str]) -> dict:
    return {**config_kwargs, "id2label": dict(id2label), "label2id": {v: k for k, v in id2label.items()}}


def _classify_check(tok, cases, label2id):
    import torch

    enc = tok([t for t, _ in cases], padding=True, return_tensors="pt")
    want = torch.tensor([label2id[label] for _, label in cases])

    def check(model) -> bool:
        probs = model(**enc).logits.softmax(-1)
        return bool((probs.argmax(-1) == want).all() and (probs.max(-1).values > 0.9).all())

    return enc, want, check


# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


def build_sst2(out_dir: Path) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tok = _uncased_wordpiece(_repeat([t for t, _ in SENTIMENT_CASES], 5) + _generic_lines(), out_dir)
    _seed()
    config = DistilBertConfig(**_labels(dict(
        vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128,
        dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, pad_token_id=tok.pad_token_id,
    ), SENTIMENT_LABELS))  # fmt: skip
    model = DistilBertForSequenceClassification(config)
    enc, want, check = _classify_check(tok, SENTIMENT_CASES, config.label2id)
    _train(model, {**enc, "labels": want}, check, lr=3e-3, max_steps=600, check_every=10, name="sst2")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def build_emotion(out_dir: Path) -> None:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    tok = _bpe_tokenizer(_repeat([t for t, _ in EMOTION_CASES] + NER_SENTENCES, 5) + _generic_lines())
    _seed()
    config = RobertaConfig(**_labels(dict(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128 + 2, type_vocab_size=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    ), EMOTION_LABELS))  # fmt: skip
    model = RobertaForSequenceClassification(config)
    enc, want, check = _classify_check(tok, EMOTION_CASES, config.label2id)
    _train(model, {**enc, "labels": want}, check, lr=3e-3, max_steps=600, check_every=10, name="emotion")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def build_emotion_multilabel(out_dir: Path, emotion_dir: Path) -> None:
    """The emotion model's files, its config saying multi_label_classification (sigmoid scores)."""
    for f in emotion_dir.iterdir():
        shutil.copyfile(f, out_dir / f.name)
    config = json.loads((out_dir / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))


def _nli_pairs() -> list[tuple[str, str, int]]:
    pairs = []
    for premise, labels, true in ZERO_SHOT_CASES:
        for label in labels:
            pairs.append((premise, HYPOTHESIS.format(label), 2 if label in true else 0))
    return pairs


def build_nli(out_dir: Path) -> None:
    import torch
    from transformers import BartConfig, BartForSequenceClassification

    words = sorted({label for _, labels, _ in ZERO_SHOT_CASES for label in labels})
    tok = _bpe_tokenizer(_repeat([p for p, _, _ in ZERO_SHOT_CASES] + [HYPOTHESIS.format(w) for w in words], 5) + _generic_lines(), 1024)
    _seed()
    config = BartConfig(**_labels(dict(
        vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=1024,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, classifier_dropout=0.0,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id, forced_bos_token_id=None, forced_eos_token_id=None,
    ), NLI_LABELS))  # fmt: skip
    model = BartForSequenceClassification(config)
    pairs = _nli_pairs()
    enc = tok([p for p, _, _ in pairs], [h for _, h, _ in pairs], padding=True, return_tensors="pt")
    want = torch.tensor([y for _, _, y in pairs])

    def check(m) -> bool:
        logits = m(**enc).logits
        margin = logits[:, 2] - logits[:, 0]
        return bool(((margin > 2) == (want == 2)).all() and ((margin < -2) == (want == 0)).all())

    _train(model, {**enc, "labels": want}, check, lr=3e-3, max_steps=1000, check_every=10, name="nli")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def _ner_batch(tok, label2id):
    """Token labels: a word's first piece gets the word's tag, its other pieces the I- tag of its kind."""
    import torch

    enc = tok([[w for w, _ in case] for case in NER_CASES], is_split_into_words=True, padding=True, return_tensors="pt")
    rows = []
    for i, case in enumerate(NER_CASES):
        row, previous = [], None
        for word_id in enc.word_ids(i):
            if word_id is None:
                row.append(-100)
            else:
                tag = case[word_id][1]
                if word_id == previous and tag != "O":
                    tag = "I-" + tag[2:]
                row.append(label2id[tag])
            previous = word_id
        rows.append(row)
    return enc, torch.tensor(rows)


def build_ner(out_dir: Path) -> None:
    from transformers import BertConfig, BertForTokenClassification

    entity_words = {w for case in NER_CASES for w, tag in case if tag != "O"}
    common = sorted({w for case in NER_CASES for w, _ in case} - entity_words) + sorted({w for line in _generic_lines() for w in line.split() if w.isalpha()})
    tok, vocab = _cased_wordpiece(common, NER_SENTENCES + _generic_lines())
    _seed()
    config = BertConfig(**_labels(dict(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=tok.pad_token_id,
    ), NER_LABELS))  # fmt: skip
    model = BertForTokenClassification(config)
    enc, labels = _ner_batch(tok, config.label2id)
    keep = labels != -100

    def check(m) -> bool:
        probs = m(**enc).logits.softmax(-1)
        return bool((probs.argmax(-1)[keep] == labels[keep]).all() and (probs.max(-1).values[keep] > 0.9).all())

    _train(model, {**enc, "labels": labels}, check, lr=3e-3, max_steps=800, check_every=10, name="ner")
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t, _ in ordered), encoding="utf-8")


def build_ner_bpe(out_dir: Path) -> None:
    from transformers import RobertaConfig, RobertaForTokenClassification

    tok = _bpe_tokenizer(_repeat(NER_SENTENCES, 5) + _generic_lines())
    _seed(7)
    config = RobertaConfig(**_labels(dict(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128 + 2, type_vocab_size=1, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=1.0,
    ), NER_LABELS))  # fmt: skip
    model = RobertaForTokenClassification(config).eval()  # untrained: wide weights, varied labels per token
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


BUILDERS = {
    "sst2": lambda out, dirs: build_sst2(out),
    "emotion": lambda out, dirs: build_emotion(out),
    "emotion-multilabel": lambda out, dirs: build_emotion_multilabel(out, dirs["emotion"]),
    "nli": lambda out, dirs: build_nli(out),
    "ner": lambda out, dirs: build_ner(out),
    "ner-bpe": lambda out, dirs: build_ner_bpe(out),
}


def build_all(cache_dir: Path, roles: list[str] | None = None) -> dict[str, float]:
    """Build every model (or only `roles`; emotion-multilabel needs emotion) into cache_dir."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    roles = list(roles or REPOS)
    if "emotion-multilabel" in roles and "emotion" not in roles:
        roles.insert(0, "emotion")
    _quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="tfx-tiny-encoders-") as tmp, _torch_settings(BUILD_THREADS):
        dirs: dict[str, Path] = {}
        for role in roles:
            t0 = time.perf_counter()
            out = dirs[role] = Path(tmp) / role
            out.mkdir(parents=True)
            BUILDERS[role](out, dirs)
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
    print(json.dumps({k: round(v, 2) for k, v in build_all(args.cache_dir, args.roles or None).items()}))
