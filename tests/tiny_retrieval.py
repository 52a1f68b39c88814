"""Tiny models for qa, embed and rank, built the way tiny_models.py builds the others (real architectures at
toy size, trained for seconds until they have memorised a few examples, installed into a hub cache):

- ``squad``: BERT ForQuestionAnswering (64 positions, so a long context needs several windows) trained on
  question/context/answer triples, one answer sitting in the second window of a long context, plus an
  unanswerable question whose label is [CLS] (the SQuAD 2 convention);
- ``minilm``: a sentence-transformers model (modules.json: Transformer + mean Pooling + Normalize, saved by
  sentence-transformers itself) trained with in-batch negatives so each FAQ query is closest to its answer;
- ``cross``: a cross-encoder (BERT ForSequenceClassification, 1 label) trained to score a query with its own
  answer high and with the others low, saved by sentence-transformers' CrossEncoder.

``python tests/tiny_retrieval.py DIR`` builds them into DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import tiny_models as tm

REPOS: dict[str, tuple[str, ...]] = {
    "squad": ("tfx-test/tiny-squad", "distilbert/distilbert-base-cased-distilled-squad"),
    "minilm": ("tfx-test/tiny-minilm", "sentence-transformers/all-MiniLM-L6-v2"),
    "cross": ("tfx-test/tiny-cross-encoder", "cross-encoder/ms-marco-MiniLM-L6-v2"),
}

#: Positions of the tiny QA model: a context past ~50 tokens is read in several windows.
SQUAD_POSITIONS = 64

LONG_CONTEXT = (
    "The house on the hill was built many years ago by a family of farmers. "
    "They planted apple trees in the garden and kept a few sheep in the field behind the barn. "
    "In winter the children walked to the village school along the river, and in summer they swam in it. "
    "The kitchen had a large stove and a long wooden table where everyone ate together. "
    "The old door of the house is painted green."
)
#: (question, context, answer): each answer is a span of its context.
QA_CASES: list[tuple[str, str, str]] = [
    ("Where is Hugging Face based?", "Hugging Face is a company based in New York City. It builds tools for machine learning.", "New York City"),
    ("Who wrote the report?", "The report about the floods was written by Alice Smith last year.", "Alice Smith"),
    ("What colour is the old door?", LONG_CONTEXT, "green"),
]
#: A question its context does not answer: the model points at [CLS] and tfx answers "".
QA_UNANSWERABLE: tuple[str, str] = ("When did the ship sink?", QA_CASES[0][1])

#: FAQ answers and the query each one answers (rank and embed tests).
FAQ: list[tuple[str, str]] = [
    ("how do I reset my password", "To reset your password, open the settings page and choose reset password."),
    ("where can I download my invoice", "Invoices can be downloaded from the billing page of your account."),
    ("how do I delete my account", "You can delete your account for good from the privacy page."),
    ("what are your opening hours", "Our shop is open from nine to five on weekdays."),
    ("is there a mobile app", "Our mobile app is available for phones and tablets."),
]
FAQ_DOCS: list[str] = [doc for _, doc in FAQ]


def _texts() -> list[str]:
    lines = [t for q, c, _ in QA_CASES for t in (q, c)] + list(QA_UNANSWERABLE) + [t for pair in FAQ for t in pair]
    return lines + tm._generic_lines()


def _tokenizer(out_dir: Path, max_length: int):
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab=tm._wordpiece_vocab(_texts(), 700), do_lower_case=True, model_max_length=max_length)
    tok.save_pretrained(out_dir)
    return tok


def _bert_config(tok, positions: int, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=positions, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=tok.pad_token_id, **extra,
    )  # fmt: skip


# ---- extractive QA ---------------------------------------------------------------------

QA_STRIDE = 16


def qa_features(tok, cases):
    """Windows of (question, context) as the qa task makes them, with the answer's token span in each
    window that holds all of it, else [CLS] (0, 0)."""
    import torch

    questions = [q for q, _, _ in cases]
    contexts = [c for _, c, _ in cases]
    enc = tok(questions, contexts, truncation="only_second", max_length=SQUAD_POSITIONS, stride=QA_STRIDE,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")  # fmt: skip
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        q, context, answer = cases[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        start = end = 0
        if answer:
            a0 = context.index(answer)
            a1 = a0 + len(answer)
            toks = [j for j, s in enumerate(seq) if s == 1]
            if offsets[toks[0]][0] <= a0 and offsets[toks[-1]][1] >= a1:
                start = next(j for j in toks if offsets[j][0] <= a0 < offsets[j][1] or offsets[j][0] >= a0)
                end = next(j for j in reversed(toks) if offsets[j][0] < a1)
        starts.append(start)
        ends.append(end)
    batch = {k: torch.tensor(enc[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    batch["start_positions"] = torch.tensor(starts)
    batch["end_positions"] = torch.tensor(ends)
    return batch


def build_squad(out_dir: Path) -> None:
    from transformers import BertForQuestionAnswering

    tok = _tokenizer(out_dir, SQUAD_POSITIONS)
    cases = [*QA_CASES, (*QA_UNANSWERABLE, "")]
    batch = qa_features(tok, cases)
    if len(batch["input_ids"]) <= len(cases):
        raise RuntimeError("the long context fits one window: make it longer")
    tm._seed()
    model = BertForQuestionAnswering(_bert_config(tok, SQUAD_POSITIONS))

    def check(m) -> bool:
        out = m(**{k: v for k, v in batch.items() if not k.endswith("_positions")})
        return bool((out.start_logits.argmax(-1) == batch["start_positions"]).all() and (out.end_logits.argmax(-1) == batch["end_positions"]).all())

    tm._train(model, batch, check, lr=3e-3, max_steps=1500, loss_threshold=0.05, name="squad")
    model.save_pretrained(out_dir)


# ---- sentence embeddings ---------------------------------------------------------------


def build_minilm(out_dir: Path, work: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertModel

    base = work / "base"
    tok = _tokenizer(base, 128)
    tm._seed()
    BertModel(_bert_config(tok, 128)).save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=128)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()], device="cpu")
    queries, docs = [q for q, _ in FAQ], FAQ_DOCS
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    labels = torch.arange(len(FAQ))

    def embed(texts):
        return model(model.preprocess(texts))["sentence_embedding"]

    for step in range(1, 401):
        model.train()
        scores = embed(queries) @ embed(docs).T * 20  # in-batch negatives on cosine similarity
        loss = torch.nn.functional.cross_entropy(scores, labels) + torch.nn.functional.cross_entropy(scores.T, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= 60 and loss.item() < 0.05:
            break
    model.eval()
    with torch.no_grad():
        if not bool(((embed(queries) @ embed(docs).T).argmax(-1) == labels).all()):
            raise RuntimeError("tiny minilm did not learn its FAQ")
    model.save(str(out_dir))


# ---- cross-encoder ---------------------------------------------------------------------


def build_cross(out_dir: Path, work: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertForSequenceClassification

    base = work / "base"
    tok = _tokenizer(base, 128)
    tm._seed()
    model = BertForSequenceClassification(_bert_config(tok, 128, num_labels=1))
    pairs = [(q, d) for q, _ in FAQ for d in FAQ_DOCS]
    labels = torch.tensor([float(d == doc) for q, doc in FAQ for d in FAQ_DOCS])
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], padding=True, return_tensors="pt")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        model.train()
        logits = model(**enc).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if loss.item() < 0.02:
            break
    model.eval()
    with torch.no_grad():
        best = model(**enc).logits.view(len(FAQ), len(FAQ_DOCS)).argmax(-1)
    if not bool((best == torch.arange(len(FAQ))).all()):
        raise RuntimeError("tiny cross-encoder did not learn its FAQ")
    model.save_pretrained(base)
    CrossEncoder(str(base), device="cpu").save(str(out_dir))


# ---- installing (files in subfolders too: 1_Pooling/config.json) -----------------------


def install_tree(src_dir: Path, cache_dir: Path, repo_id: str) -> Path:
    """tiny_models.install_into_cache for a tree: every file, subfolders included, as a blob + symlink."""
    files = sorted(p for p in Path(src_dir).rglob("*") if p.is_file())
    names = {p: p.relative_to(src_dir).as_posix() for p in files}
    etags = {names[p]: tm._etag(p) for p in files}
    listing = "".join(f"{name} {etag}\n" for name, etag in sorted(etags.items()))
    import hashlib

    commit = hashlib.sha1(f"tfx-tiny-models\n{repo_id}\n{listing}".encode()).hexdigest()
    repo_dir = Path(cache_dir) / tm.repo_folder_name(repo_id)
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    for p in files:
        blob = repo_dir / "blobs" / etags[names[p]]
        if not blob.exists():
            shutil.copyfile(p, blob)
            os.chmod(blob, 0o644)
        link = snapshot / names[p]
        link.parent.mkdir(parents=True, exist_ok=True)
        depth = len(Path(names[p]).parts) + 1
        link.symlink_to(Path(*[".."] * depth, "blobs", etags[names[p]]))
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


BUILDERS = {"squad": lambda out, work: build_squad(out), "minilm": build_minilm, "cross": build_cross}


def build_all(cache_dir: Path, roles: list[str] | None = None) -> dict[str, float]:
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    tm._quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="tfx-tiny-retrieval-") as tmp, tm._torch_settings(tm.BUILD_THREADS):
        for role in roles or list(REPOS):
            t0 = time.perf_counter()
            out, work = Path(tmp) / role / "out", Path(tmp) / role / "work"
            out.mkdir(parents=True)
            work.mkdir(parents=True)
            BUILDERS[role](out, work)
            for repo_id in REPOS[role]:
                install_tree(out, cache_dir, repo_id)
            timings[role] = time.perf_counter() - t0
    return timings


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    print(json.dumps({k: round(v, 2) for k, v in build_all(Path(sys.argv[1]), sys.argv[2:] or None).items()}))
