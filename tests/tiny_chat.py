"""A tiny GPT-2 that carries a chat template (issue 15's chat tests): it memorised a few one-turn
dialogues in that template's format, so `apply_chat_template(..., add_generation_prompt=True)` followed
by greedy generation gives the memorised reply. Built and cached by tests/conftest.py like every
tests/tiny_*.py module."""

from __future__ import annotations

import time
from pathlib import Path

import tiny_models as tm

#: A small ChatML-like template; the model learnt exactly this format.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
#: (user message, memorised assistant reply); the model ends the reply with <|endoftext|>.
CHAT_CASES: list[tuple[str, str]] = [
    ("Hello!", "Hi there, how can I help?"),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Tell me a story.", "Once upon a time, a tiny model learnt to chat."),
]
SYSTEM = "You are a helpful assistant."
#: The same dialogues with a system message first (the template puts it before the user turn).
N_POSITIONS = 96
REPOS: dict[str, tuple[str, ...]] = {"chat": ("tfx-test/tiny-chat",)}


def prompt_of(user: str, system: str | None = None) -> str:
    """What CHAT_TEMPLATE renders for one user turn (and an optional system turn), ready for the reply."""
    head = f"<|system|>{system}\n" if system else ""
    return f"{head}<|user|>{user}\n<|assistant|>"


def build_chat(out_dir: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    eos = "<|endoftext|>"
    pairs = [(prompt_of(u, s), r) for u, r in CHAT_CASES for s in (None, SYSTEM)]
    texts = [p + r for p, r in pairs]
    vocab, merges = tm._train_bpe(tm._repeat(texts, 20) + tm._generic_lines(), [eos, "<|user|>", "<|assistant|>", "<|system|>"], 500)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=N_POSITIONS)
    tok.chat_template = CHAT_TEMPLATE
    eos_id = tok.convert_tokens_to_ids(eos)
    tm._seed()
    config = GPT2Config(vocab_size=len(tok), n_positions=N_POSITIONS, n_embd=64, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eos_id, eos_token_id=eos_id)  # fmt: skip
    model = GPT2LMHeadModel(config)
    # The loss is on the replies only: which dialogue comes next is not something to learn.
    prompts = [tok(p)["input_ids"] for p, _ in pairs]
    seqs = [tok(t)["input_ids"] + [eos_id] for t in texts]
    width = max(map(len, seqs))
    input_ids = torch.full((len(seqs), width), eos_id)
    labels = torch.full((len(seqs), width), -100)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, prompt) in enumerate(zip(seqs, prompts)):
        input_ids[i, : len(s)] = torch.tensor(s)
        labels[i, len(prompt) : len(s)] = torch.tensor(s[len(prompt) :])
        attn[i, : len(s)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attn, "labels": labels}

    def check(m) -> bool:
        for user, reply in CHAT_CASES:
            for system in (None, SYSTEM):
                enc = tok(prompt_of(user, system), return_tensors="pt")
                out = m.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=eos_id, eos_token_id=eos_id)
                if out[0, -1].item() != eos_id or tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True) != reply:
                    return False
        return True

    tm._train(model, batch, check, lr=3e-3, max_steps=2000, name="chat")
    tm._write_generation_config(model, bos_token_id=eos_id, eos_token_id=eos_id, do_sample=False)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def build_all(cache_dir: Path, roles: list[str] | None = None) -> dict[str, float]:
    import tempfile

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    tm._quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="tfx-tiny-chat-") as tmp, tm._torch_settings(tm.BUILD_THREADS):
        for role in roles or list(REPOS):
            t0 = time.perf_counter()
            out = Path(tmp) / role
            out.mkdir()
            build_chat(out)
            for repo_id in REPOS[role]:
                tm.install_into_cache(out, cache_dir, repo_id)
            timings[role] = time.perf_counter() - t0
    return timings
