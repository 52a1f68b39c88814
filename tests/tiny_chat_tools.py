"""A tiny GPT-2 whose chat template takes tools, Hermes/Qwen style (issue 19 item 4's tool-call tests): the
template lists the tools' names in a system turn, writes an assistant's tool calls as
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` and a tool's result as a `<|tool|>` turn. The model
memorised, for the tools' prompt, one tool call for the weather question and a plain greeting for "Hello!";
without tools, a plain refusal for the weather; after the tool's result, a reply that reads it. Built and
cached by tests/conftest.py like every tests/tiny_*.py module (only this one rebuilds when it changes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import tiny_models as tm

CHAT_TEMPLATE = (
    "{% if tools %}<|system|><tools>{% for t in tools %}{{ t['function']['name'] }};{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' and m.get('tool_calls') %}<|assistant|>{{ m['content'] or '' }}"
    "{% for c in m['tool_calls'] %}<tool_call>{{ {'name': c['function']['name'], 'arguments': c['function']['arguments']} | tojson }}</tool_call>{% endfor %}{{ '\\n' }}"
    "{% elif m['role'] == 'tool' %}<|tool|>{{ m['content'] }}\n"
    "{% else %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOLS = [WEATHER_TOOL]
WEATHER = "What is the weather in Paris?"
HELLO = "Hello!"
GREETING = "Hi there, how can I help?"
NO_TOOLS_WEATHER = "I cannot check the weather."
CALL_ARGUMENTS = {"city": "Paris"}
CALL = {"name": "get_weather", "arguments": CALL_ARGUMENTS}
TOOL_RESULT = "22 C"
AFTER_RESULT = "It is 22 C in Paris."
N_POSITIONS = 128
OPEN_CALL, CLOSE_CALL = "<tool_call>", "</tool_call>"
REPOS: dict[str, tuple[str, ...]] = {"chat_tools": ("tfx-test/tiny-chat-tools",)}


def call_text(call: dict = CALL) -> str:
    return f"<tool_call>{json.dumps(call)}</tool_call>"


def history(with_result: bool = False) -> list[dict]:
    """The weather question, and (with_result) the assistant's call and the tool's answer after it."""
    messages: list[dict] = [{"role": "user", "content": WEATHER}]
    if with_result:
        call = {"id": "call_1", "type": "function", "function": CALL}
        messages += [{"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": "call_1", "content": TOOL_RESULT}]
    return messages


def prompt_of(user: str, tools: bool, with_result: bool = False) -> str:
    """What CHAT_TEMPLATE renders, ready for the reply (checked against apply_chat_template in the build)."""
    head = "<|system|><tools>get_weather;</tools>\n" if tools else ""
    tail = f"<|assistant|>{call_text()}\n<|tool|>{TOOL_RESULT}\n" if with_result else ""
    return f"{head}<|user|>{user}\n{tail}<|assistant|>"


#: (prompt, memorised reply)
CASES: list[tuple[str, str]] = [
    (prompt_of(WEATHER, True), call_text()),
    (prompt_of(HELLO, True), GREETING),
    (prompt_of(WEATHER, False), NO_TOOLS_WEATHER),
    (prompt_of(HELLO, False), GREETING),
    (prompt_of(WEATHER, True, with_result=True), AFTER_RESULT),
]


def build_chat_tools(out_dir: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    eos = "<|endoftext|>"
    texts = [p + r for p, r in CASES]
    vocab, merges = tm._train_bpe(tm._repeat(texts, 20) + tm._generic_lines(), [eos, "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>"], 500)
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=N_POSITIONS)
    tok.add_tokens([OPEN_CALL, CLOSE_CALL])  # as Qwen's: whole tokens (not special), so a prompt's end never merges into a call
    tok.chat_template = CHAT_TEMPLATE
    for user, tools, with_result in ((WEATHER, True, False), (HELLO, False, False), (WEATHER, True, True)):
        rendered = tok.apply_chat_template(history(with_result) if user == WEATHER else [{"role": "user", "content": user}], tools=TOOLS if tools else None, tokenize=False, add_generation_prompt=True)
        assert rendered == prompt_of(user, tools, with_result), rendered
    eos_id = tok.convert_tokens_to_ids(eos)
    tm._seed()
    config = GPT2Config(vocab_size=len(tok), n_positions=N_POSITIONS, n_embd=64, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eos_id, eos_token_id=eos_id)  # fmt: skip
    model = GPT2LMHeadModel(config)
    prompts = [tok(p)["input_ids"] for p, _ in CASES]
    seqs = [tok(t)["input_ids"] + [eos_id] for t in texts]
    width = max(map(len, seqs))
    assert width + 32 < N_POSITIONS, width
    input_ids = torch.full((len(seqs), width), eos_id)
    labels = torch.full((len(seqs), width), -100)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, prompt) in enumerate(zip(seqs, prompts)):
        input_ids[i, : len(s)] = torch.tensor(s)
        labels[i, len(prompt) : len(s)] = torch.tensor(s[len(prompt) :])
        attn[i, : len(s)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attn, "labels": labels}

    def check(m) -> bool:
        for prompt, reply in CASES:
            enc = tok(prompt, return_tensors="pt")
            out = m.generate(**enc, max_new_tokens=48, do_sample=False, pad_token_id=eos_id, eos_token_id=eos_id)
            if out[0, -1].item() != eos_id or tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True) != reply:
                return False
        return True

    tm._train(model, batch, check, lr=3e-3, max_steps=2000, name="chat_tools")
    tm._write_generation_config(model, bos_token_id=eos_id, eos_token_id=eos_id, do_sample=False)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def build_all(cache_dir: Path, roles: list[str] | None = None) -> dict[str, float]:
    import tempfile

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    tm._quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="tfx-tiny-chat-tools-") as tmp, tm._torch_settings(tm.BUILD_THREADS):
        for role in roles or list(REPOS):
            t0 = time.perf_counter()
            out = Path(tmp) / role
            out.mkdir()
            build_chat_tools(out)
            for repo_id in REPOS[role]:
                tm.install_into_cache(out, cache_dir, repo_id)
            timings[role] = time.perf_counter() - t0
    return timings
