"""tfx's fast paths (src/tfx/fast/) give exactly what the plain transformers path gives, on the tiny models."""

from __future__ import annotations

import json
import sys

import pytest
import tiny_models as tm
from clihelp import tfx

GPT2 = "tfx-test/tiny-gpt2"
PROMPTS = [p for p, _ in tm.GPT2_CASES] + ["Zebra café über ß 123 !! <|endoftext|> and", " leading space", "a"]


@pytest.fixture(scope="module")
def gpt2_dir(hub_cache):
    from tfx import hub

    return hub.resolve(GPT2).path


@pytest.fixture(scope="module")
def hf(gpt2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(gpt2_dir), AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()


@pytest.fixture(scope="module")
def fast(gpt2_dir):
    from tfx.fast import gpt2, text
    from tfx.loading import read_json

    return gpt2.GPT2Greedy.load(gpt2_dir, read_json(gpt2_dir / "config.json")), text.FastTokenizer(gpt2_dir)


def _hf_generate(hf, ids, mask, **kwargs):
    import torch

    tok, model = hf
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=tok.eos_token_id, **kwargs)


def test_tokenizer_matches_transformers(hf, fast):
    tok, _ = hf
    ftok = fast[1]
    assert ftok([*PROMPTS])["input_ids"] == tok(PROMPTS)["input_ids"]
    assert ftok.all_special_ids == sorted(tok.all_special_ids)
    assert (ftok.eos_token, ftok.bos_token, ftok.pad_token) == (tok.eos_token, tok.bos_token, tok.pad_token)
    for ids in tok(PROMPTS)["input_ids"]:
        for skip in (True, False):
            assert ftok.decode(ids + [tok.eos_token_id], skip_special_tokens=skip) == tok.decode(ids + [tok.eos_token_id], skip_special_tokens=skip)


def test_greedy_batch_matches_generate_token_for_token(hf, fast):
    tok, _ = hf
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    for new in (1, 5, tm.GPT2_N_POSITIONS - enc["input_ids"].shape[1]):
        expected = _hf_generate(hf, enc["input_ids"], enc["attention_mask"], max_new_tokens=new)
        got = fast[0].generate(enc["input_ids"], enc["attention_mask"], new, [tok.eos_token_id], tok.eos_token_id)
        assert got.tolist() == expected.tolist()


def test_single_prompts_stop_at_eos_like_generate(hf, fast):
    tok, _ = hf
    for prompt, _ in tm.GPT2_CASES:
        enc = tok(prompt, return_tensors="pt")
        expected = _hf_generate(hf, enc["input_ids"], enc["attention_mask"], max_new_tokens=60 - enc["input_ids"].shape[1])
        got = fast[0].generate(enc["input_ids"], enc["attention_mask"], 60 - enc["input_ids"].shape[1], [tok.eos_token_id], tok.eos_token_id)
        assert got.tolist() == expected.tolist()
        assert got[0, -1].item() == tok.eos_token_id  # the memorised sentence ends, and so does generation


def test_fast_path_is_taken_and_falls_back_when_it_cannot(hub_cache):
    import torch

    from tfx import loading
    from tfx.spec import GenerateSettings
    from tfx.tasks import make_task

    prepared = loading.prepare(GPT2, "generate")
    loaded = loading.load(prepared, "cpu", torch.float32)
    assert loaded.fast is not None and loaded._model is None  # transformers' model not loaded
    assert make_task("generate", loaded, GenerateSettings(max_new_tokens=5)).fast is not None
    sampled = make_task("generate", loading.load(prepared, "cpu", torch.float32), GenerateSettings(do_sample=True, seed=1))
    assert sampled.fast is None and sampled.loaded.model is not None
    beams = make_task("generate", loading.load(prepared, "cpu", torch.float32), GenerateSettings(num_beams=2))
    assert beams.fast is None
    assert loading.load(prepared, "cpu", torch.float32, fast=False).fast is None
    assert loading.load(prepared, "cpu", torch.bfloat16).fast is None


def test_unsupported_configs_are_left_to_transformers(gpt2_dir):
    from tfx.fast import gpt2
    from tfx.loading import read_json

    config = read_json(gpt2_dir / "config.json")
    assert gpt2.unsupported_reason(gpt2_dir, config, {}) is None
    assert gpt2.unsupported_reason(gpt2_dir, {**config, "scale_attn_by_inverse_layer_idx": True}, {}) is not None
    assert gpt2.unsupported_reason(gpt2_dir, {**config, "activation_function": "relu"}, {}) is not None
    assert gpt2.unsupported_reason(gpt2_dir, config, {"repetition_penalty": 1.3}) is not None
    assert gpt2.unsupported_reason(gpt2_dir, config, {"do_sample": True}) is not None


def test_safetensors_reader_converts_half_precision_and_transposes(tmp_path):
    import torch
    from safetensors.torch import save_file

    from tfx.fast.gpt2 import read_safetensors

    tensors = {"a.weight": torch.randn(3, 5), "b.half": torch.randn(4, 2).half(), "c.bf16": torch.randn(6).bfloat16()}
    save_file(tensors, tmp_path / "m.safetensors")
    got = read_safetensors(tmp_path / "m.safetensors", lambda name: name == "a.weight")
    assert torch.equal(got["a.weight"], tensors["a.weight"].t())
    assert torch.equal(got["b.half"], tensors["b.half"].float())
    assert torch.equal(got["c.bf16"], tensors["c.bf16"].float())
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in got.values())


@pytest.mark.parametrize(
    "args",
    [
        ["--max-new-tokens", "12"],
        ["--max-length", "30", "--continuation-only"],
        ["--format", "jsonl", "--batch-size", "3"],
    ],
)
def test_cli_output_equals_the_transformers_path(tfx_env, args):
    lines = "\n".join(PROMPTS) + "\n"
    fast = tfx("generate", "-m", GPT2, *args, env=tfx_env, stdin=lines)
    plain = tfx("generate", "-m", GPT2, *args, env={**tfx_env, "TFX_FAST": "0"}, stdin=lines)
    assert fast.code == 0 and plain.code == 0, (fast.err, plain.err)
    assert fast.out == plain.out
    assert len(fast.lines) == len(PROMPTS)


def test_cli_fast_path_never_imports_transformers(tfx_env):
    import subprocess

    probe = "\n".join([  # the CLI ends with os._exit: report the modules there
        "import os, sys",
        "real_exit = os._exit",
        "def report(code):",
        "    sys.stderr.write(f'TRANSFORMERS={\"transformers\" in sys.modules}\\n'); sys.stderr.flush(); real_exit(code)",
        "os._exit = report",
        f"sys.argv = ['tfx', 'generate', '-m', {GPT2!r}, '--stream', {tm.GPT2_PROMPT!r}]",
        "from tfx.cli import main",
        "main()",
    ])  # fmt: skip
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=tfx_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == tm.GPT2_TEXT + "\n"  # streamed: prompt, then the continuation as it is made
    assert "TRANSFORMERS=False" in r.stderr


def test_lazy_transformers_objects_still_load_on_demand(hub_cache):
    import torch

    from tfx import hub, loading

    loaded = loading.load(loading.prepare(GPT2, "generate"), "cpu", torch.float32)
    assert loaded.tokenizer(tm.GPT2_PROMPT)["input_ids"] == loaded.fast.tokenizer(tm.GPT2_PROMPT)["input_ids"]
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"
    record = json.dumps({"fast": loaded.fast is not None})
    assert record == '{"fast": true}'


@pytest.fixture(scope="module")
def backend_saved_gpt2(gpt2_dir, tmp_path_factory):
    """The tiny GPT-2 saved by transformers 5 with a tokenizers-backed tokenizer: tokenizer_config.json then
    says `tokenizer_class: TokenizersBackend`, and transformers reads tokenizer.json as saved."""
    import shutil

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("gpt2-tokenizers-backend")
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(gpt2_dir / name, out / name)
    original = AutoTokenizer.from_pretrained(gpt2_dir)
    tok = PreTrainedTokenizerFast(tokenizer_object=original.backend_tokenizer, eos_token=original.eos_token, bos_token=original.bos_token, unk_token=original.unk_token, model_max_length=original.model_max_length)
    tok.save_pretrained(out)
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    return out


def test_tokenizers_backend_gpt2_takes_the_fast_path_with_generates_output(tfx_env, backend_saved_gpt2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tfx.fast import text

    tok = AutoTokenizer.from_pretrained(backend_saved_gpt2)
    assert type(tok).__name__ == "TokenizersBackend"
    assert text.unsupported_reason(backend_saved_gpt2) is None
    assert text.FastTokenizer(backend_saved_gpt2)(PROMPTS)["input_ids"] == tok(PROMPTS)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(backend_saved_gpt2).eval()
    r = tfx("generate", "-m", str(backend_saved_gpt2), "-v", "--max-new-tokens", "12", "--continuation-only", "--format", "jsonl", *PROMPTS[:3], env=tfx_env)
    assert r.code == 0, r.err
    assert "fast path off" not in r.err, r.err
    for prompt, line in zip(PROMPTS[:3], r.lines):
        enc = tok(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
        assert json.loads(line)["output"] == tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_a_saved_pipeline_that_is_not_gpt2s_keeps_the_fast_path_off(backend_saved_gpt2, tmp_path):
    import shutil

    from tokenizers import Tokenizer, normalizers

    from tfx.fast import text

    for f in backend_saved_gpt2.iterdir():
        shutil.copy(f, tmp_path / f.name)
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    tok.normalizer = normalizers.Lowercase()
    tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="normalizer"):
        text.FastTokenizer(tmp_path)
