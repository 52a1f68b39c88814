"""--logprobs: each generated token's log-probability equals log_softmax of the model's logits in a plain forward
pass over prompt + generated tokens (the raw logits, also when sampling with temperature and top-k, and under
a JSON grammar); the tokens' bytes equal xgrammar's decoded vocabulary; a stream carries the same entries
chunk by chunk; the jsonl record holds them and the text output does not change."""

from __future__ import annotations

import json

import pytest
import tiny_chat as tc
import tiny_models as tm
from clihelp import tfx

GPT2 = "tfx-test/tiny-gpt2"
CHAT = "tfx-test/tiny-chat"
TOL = 1e-4


def open_generate(model: str, **settings):
    from tfx.spec import GenerateSettings, RunSpec
    from tfx.tasks import open_task

    s = GenerateSettings(**settings)
    s.validate({})
    return open_task(RunSpec("generate", s, model, device="cpu"))


@pytest.fixture(scope="module")
def models(hub_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return {name: (AutoTokenizer.from_pretrained(name), AutoModelForCausalLM.from_pretrained(name).eval()) for name in (GPT2, CHAT)}


def reference(models, name: str, prompt: str, new_ids: list[int], top: int):
    """(chosen logprob, [(id, logprob)] of the top alternatives) per generated token, from one forward pass."""
    import torch

    tok, model = models[name]
    ids = tok(prompt)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids + new_ids])).logits[0]
    lp = torch.log_softmax(logits.float(), dim=-1)
    out = []
    for t, token in enumerate(new_ids):
        row = lp[len(ids) - 1 + t]
        best = row.topk(top) if top else None
        out.append((row[token].item(), list(zip(best.indices.tolist(), best.values.tolist())) if best else []))
    return out


def assert_matches(entries, expected):
    assert len(entries) == len(expected) and entries
    for entry, (logprob, top) in zip(entries, expected):
        assert abs(entry["logprob"] - logprob) < TOL, (entry, logprob)
        assert [a["id"] for a in entry["top_logprobs"]] == [i for i, _ in top]
        for alt, (_, value) in zip(entry["top_logprobs"], top):
            assert abs(alt["logprob"] - value) < TOL


def test_greedy_batch_equals_forward_pass(models):
    from tfx.results import logprobs_within

    task = open_generate(GPT2, max_new_tokens=8, logprobs=3, continuation_only=True)
    assert task.fast is None  # the fast GPT-2 path does not record logprobs
    prompts = [tm.GPT2_CASES[0][0], tm.GPT2_CASES[2][0]]  # different lengths: the batch is left-padded
    tok = models[GPT2][0]
    for prompt, result in zip(prompts, task.run(prompts)):
        (entries,) = result.logprobs
        new_ids = [e["id"] for e in entries]
        assert tok.decode(new_ids) == result.output
        assert result.generated_tokens == len(entries)
        assert_matches(entries, reference(models, GPT2, prompt, new_ids, 3))
        assert all(e["top_logprobs"][0]["id"] == e["id"] for e in entries)  # greedy takes the most likely
        assert b"".join(bytes(e["bytes"]) for e in entries).decode() == result.output
        part = logprobs_within(entries, result.output[:5])  # what a server keeps when a stop string cuts there
        assert b"".join(bytes(e["bytes"]) for e in part).decode().startswith(result.output[:5]) and len(part) < len(entries)


def test_chat_model_sampling_reports_raw_logprobs(models):
    # temperature and top-k change what is sampled, not the numbers reported (vLLM's raw_logprobs)
    task = open_generate(CHAT, chat=True, max_new_tokens=10, logprobs=2, do_sample=True, temperature=0.7, top_k=5, seed=3, num_return_sequences=2)
    user = tc.CHAT_CASES[1][0]
    (result,) = task.run([user])
    assert len(result.logprobs) == 2
    for entries in result.logprobs:
        assert_matches(entries, reference(models, CHAT, tc.prompt_of(user), [e["id"] for e in entries], 2))


def test_token_bytes_equal_xgrammar_decoded_vocab(models, hub_cache):
    xgr = pytest.importorskip("xgrammar")
    from transformers import AutoTokenizer

    from tfx.tasks.logprobs import TokenPieces

    tok = models[GPT2][0]  # byte-level BPE: every byte, partial characters included
    vocab = xgr.TokenizerInfo.from_huggingface(tok).decoded_vocab
    pieces, special = TokenPieces(tok), set(tok.all_special_ids)
    ids = [i for i in range(len(vocab)) if i not in special]
    assert [pieces.bytes_of(i) for i in ids] == [vocab[i] for i in ids]
    # SentencePiece (xgrammar reads T5's Metaspace vocabulary as raw text): the pieces spell the decoded text
    t5 = AutoTokenizer.from_pretrained("tfx-test/tiny-t5")
    pieces = TokenPieces(t5)
    for text in ("The house is wonderful.", "Hello, world: 3 cats"):
        ids = [i for i in t5(text)["input_ids"] if i not in set(t5.all_special_ids)]
        assert b"".join(pieces.bytes_of(i) for i in ids).decode().strip() == t5.decode(ids)


def test_stream_chunks_carry_the_entries_of_their_tokens():
    from tfx.results import TextChunk

    task = open_generate(GPT2, max_new_tokens=10, logprobs=1, continuation_only=True)
    items = list(task.stream(tm.GPT2_PROMPT))
    chunks, result = items[:-1], items[-1]
    assert chunks and all(isinstance(c, TextChunk) and c.logprobs for c in chunks)
    assert "".join(c.text for c in chunks) == result.output
    assert [e for c in chunks for e in c.logprobs] == result.logprobs[0]
    for c in chunks:
        assert b"".join(bytes(e["bytes"]) for e in c.logprobs).decode() == c.text


def test_logprobs_under_a_json_grammar_are_the_models_own(models):
    pytest.importorskip("xgrammar")
    task = open_generate(GPT2, max_new_tokens=12, logprobs=0, json_object=True)
    (result,) = task.run([tm.GPT2_PROMPT])
    (entries,) = result.logprobs
    assert result.output.startswith("{") and all(e["top_logprobs"] == [] for e in entries)
    assert_matches(entries, reference(models, GPT2, tm.GPT2_PROMPT, [e["id"] for e in entries], 0))


def test_cli_jsonl_carries_logprobs_and_text_is_unchanged(tfx_env):
    plain = tfx("generate", "-m", GPT2, "--max-new-tokens", "6", tm.GPT2_PROMPT, env=tfx_env)
    text = tfx("generate", "-m", GPT2, "--max-new-tokens", "6", "--logprobs", "2", tm.GPT2_PROMPT, env=tfx_env)
    jsonl = tfx("generate", "-m", GPT2, "--max-new-tokens", "6", "--logprobs", "2", "--format", "jsonl", tm.GPT2_PROMPT, env=tfx_env)
    assert plain.code == text.code == jsonl.code == 0, (text.err, jsonl.err)
    assert text.out == plain.out
    (record,) = [json.loads(line) for line in jsonl.lines]
    (entries,) = record["logprobs"]
    assert record["output"] == plain.out.rstrip("\n") and len(entries) == record["generated_tokens"]
    assert all(len(e["top_logprobs"]) == 2 and set(e) == {"token", "id", "logprob", "bytes", "top_logprobs"} for e in entries)


def test_bad_logprobs_are_one_line_errors():
    from tfx.errors import UsageError
    from tfx.spec import GenerateSettings

    for settings, needle in [(dict(logprobs=21), "--logprobs must be between 0 and 20"), (dict(logprobs=1, num_beams=2), "beam search")]:
        with pytest.raises(UsageError, match=needle):
            GenerateSettings(**settings).validate({})
