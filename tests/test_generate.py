"""tfx generate against transformers' own model.generate on the tiny GPT-2 and T5."""

from __future__ import annotations

import json

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

GPT2 = "tfx-test/tiny-gpt2"


@pytest.fixture(scope="module")
def gpt2(hub_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(GPT2)
    model = AutoModelForCausalLM.from_pretrained(GPT2).eval()
    return tok, model


def reference(gpt2, prompt: str, **kwargs) -> list[str]:
    """The seed's way: tokenizer + model.generate + decode, pad = EOS."""
    import torch

    tok, model = gpt2
    inputs = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"], pad_token_id=tok.eos_token_id, **kwargs)
    return [tok.decode(row, skip_special_tokens=True) for row in out]


def test_default_model_memorised_continuation(tfx_env):
    # No -m: gpt2, resolved through the registry to openai-community/gpt2 in the offline cache.
    r = tfx("generate", tm.GPT2_PROMPT, env=tfx_env)
    assert r.code == 0, r.err
    assert r.out == tm.GPT2_TEXT + "\n"
    assert r.err == ""


def test_greedy_matches_model_generate(tfx_env, gpt2):
    for prompt, _ in tm.GPT2_CASES:
        r = tfx("generate", "-m", GPT2, "--max-new-tokens", "12", prompt, env=tfx_env)
        assert r.code == 0, r.err
        assert r.out.rstrip("\n") == reference(gpt2, prompt, max_new_tokens=12)[0]


def test_seed_snippet_max_length(tfx_env, gpt2):
    r = tfx("generate", "-m", GPT2, "--max-length", "50", tm.GPT2_PROMPT, env=tfx_env)
    assert r.code == 0, r.err
    assert r.out.rstrip("\n") == reference(gpt2, tm.GPT2_PROMPT, max_length=50, num_return_sequences=1)[0]


def test_beam_search_matches_and_keeps_sequences_in_one_record(tfx_env, gpt2):
    prompt = tm.GPT2_CASES[2][0]
    r = tfx("generate", "-m", GPT2, "--num-beams", "4", "-n", "3", "--max-new-tokens", "8", "--format", "jsonl", prompt, env=tfx_env)
    assert r.code == 0, r.err
    (record,) = [json.loads(line) for line in r.lines]
    expected = reference(gpt2, prompt, num_beams=4, num_return_sequences=3, max_new_tokens=8)
    assert record["outputs"] == expected
    assert record["output"] == expected[0]
    text = tfx("generate", "-m", GPT2, "--num-beams", "4", "-n", "3", "--max-new-tokens", "8", prompt, env=tfx_env)
    assert text.lines == ["\t".join(expected)]


def test_sampling_is_reproducible_with_seed_and_matches_transformers(tfx_env, gpt2):
    from transformers import set_seed

    args = ("generate", "-m", GPT2, "--do-sample", "--temperature", "1.5", "--top-k", "20", "--top-p", "0.95", "--seed", "7", "--max-new-tokens", "10", "Hello")
    first, second = tfx(*args, env=tfx_env), tfx(*args, env=tfx_env)
    assert first.code == 0, first.err
    assert first.out == second.out
    set_seed(7)
    assert first.out.rstrip("\n") == reference(gpt2, "Hello", do_sample=True, temperature=1.5, top_k=20, top_p=0.95, max_new_tokens=10)[0]


def test_batch_is_left_padded_and_matches_single_prompts(tfx_env, gpt2):
    prompts = [p for p, _ in tm.GPT2_CASES]
    r = tfx("generate", "-m", GPT2, "--max-new-tokens", "10", "--batch-size", "4", *prompts, env=tfx_env)
    assert r.code == 0, r.err
    assert r.lines == [reference(gpt2, p, max_new_tokens=10)[0] for p in prompts]


def test_continuation_only_and_jsonl_fields(tfx_env):
    r = tfx("generate", "-m", GPT2, "--continuation-only", "--format", "jsonl", tm.GPT2_PROMPT, env=tfx_env)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert record["input"] == tm.GPT2_PROMPT
    assert record["output"] == tm.GPT2_CONTINUATION
    assert record["model"] == GPT2


def test_long_prompt_keeps_its_end_and_warns(tfx_env, gpt2):
    prompt = " ".join(["the sea and the sky"] * 30) + " " + tm.GPT2_PROMPT  # far beyond the 64-token context
    r = tfx("generate", "-m", GPT2, "--max-new-tokens", "14", "--continuation-only", prompt, env=tfx_env)
    assert r.code == 0, r.err
    assert "keeping its last" in r.err and "warning" in r.err
    tok, _ = gpt2
    kept = tok.decode(tok(prompt)["input_ids"][-(tm.GPT2_N_POSITIONS - 14):])
    assert r.out.rstrip("\n") == reference(gpt2, kept, max_new_tokens=14)[0][len(kept):]
    strict = tfx("generate", "-m", GPT2, "--max-new-tokens", "14", "--no-truncate", prompt, env=tfx_env)
    assert strict.code == 1
    assert "--no-truncate" in strict.err and "argument 1" in strict.err


def test_encoder_decoder_generate_is_text_to_text(tfx_env):
    (src, tgt) = tm.TRANSLATIONS[("en", "fr")][0]
    r = tfx("generate", "-m", "tfx-test/tiny-t5", tm.T5_PREFIXES["translation_en_to_fr"] + src, env=tfx_env)
    assert r.code == 0, r.err
    assert r.out == tgt + "\n"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
        (["--max-new-tokens", "5", "--max-length", "9"], "Give only one"),
        (["--do-sample", "--temperature", "0"], "--temperature must be above 0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--num-beams", "2", "-n", "3"], "more sequences than --num-beams"),
        (["-n", "2"], "--do-sample"),
        (["--format", "xml"], "unknown --format"),
        (["--device", "tpu"], "unknown device"),
        (["--engine", "spark"], "unknown --engine"),
    ],
)
def test_invalid_values_are_usage_errors(tfx_env, args, needle):
    r = tfx("generate", "-m", GPT2, *args, "Hello", env=tfx_env)
    assert_clean_error(r, 2, needle)


def test_missing_device_names_the_devices_there(tfx_env):
    r = tfx("generate", "-m", GPT2, "--device", "cuda:3", "Hello", env=tfx_env)
    assert_clean_error(r, 1, "cuda:3 is not available", "cpu")


def test_empty_input_is_an_error(tfx_env):
    assert_clean_error(tfx("generate", "-m", GPT2, "", env=tfx_env), 2, "empty")
