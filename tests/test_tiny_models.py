"""Sanity checks of the tiny hub cache, using transformers / huggingface_hub directly (not tfx)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tiny_models as tm

MODEL_CLASSES = {
    "gpt2": ("AutoModelForCausalLM", "GPT2LMHeadModel", "GPT2Tokenizer"),
    "bert": ("AutoModelForMaskedLM", "BertForMaskedLM", "BertTokenizer"),
    "roberta": ("AutoModelForMaskedLM", "RobertaForMaskedLM", "RobertaTokenizer"),
    "t5": ("AutoModelForSeq2SeqLM", "T5ForConditionalGeneration", "T5Tokenizer"),
    "bart": ("AutoModelForSeq2SeqLM", "BartForConditionalGeneration", "RobertaTokenizer"),
    "marian": ("AutoModelForSeq2SeqLM", "MarianMTModel", "MarianTokenizer"),
}
ROLE_REPOS = [(role, repo) for role, repos in tm.REPOS.items() for repo in repos]


def _ids(params):
    return [f"{role}:{repo}" for role, repo in params]


@pytest.fixture(scope="module")
def load(hub_cache):
    """load(repo_id, role) -> (tokenizer, model), memoised per module."""
    import warnings

    import transformers

    cache: dict[str, tuple] = {}

    def _load(repo_id: str, role: str):
        if repo_id not in cache:
            auto_cls = getattr(transformers, MODEL_CLASSES[role][0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Marian: "Recommended: pip install sacremoses."
                tok = transformers.AutoTokenizer.from_pretrained(repo_id)
            model = auto_cls.from_pretrained(repo_id).eval()
            cache[repo_id] = (tok, model)
        return cache[repo_id]

    return _load


def test_environment_is_offline(hub_cache):
    from huggingface_hub import constants

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE is True
    assert Path(constants.HF_HUB_CACHE) == hub_cache
    assert Path(os.environ["HF_HUB_CACHE"]) == hub_cache
    assert Path(os.environ["HF_HOME"]) != hub_cache


def test_repo_table_is_consistent():
    assert len(set(tm.ALL_REPO_IDS)) == len(tm.ALL_REPO_IDS)
    assert set(tm.REPOS) == set(MODEL_CLASSES)
    assert tm.GPT2_TEXT == tm.GPT2_PROMPT + tm.GPT2_CONTINUATION
    for case, word in tm.FILL_MASK_CASES:
        assert case.count(tm.MASK) == 1
        assert case.replace(tm.MASK, word) in tm.FILL_MASK_SENTENCES
    for case, words in tm.FILL_MASK_MULTI_CASES:
        assert case.count(tm.MASK) == len(words)


def test_scan_cache_dir_sees_every_repo(hub_cache):
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hub_cache)
    assert not info.warnings, info.warnings
    repos = {r.repo_id: r for r in info.repos}
    import importlib

    from conftest import BUILDER_MODULES

    every = {r for stem in BUILDER_MODULES for ids in importlib.import_module(stem).REPOS.values() for r in ids}
    assert set(tm.ALL_REPO_IDS) <= every and len(BUILDER_MODULES) > 1  # every builder module is assembled in
    assert set(repos) == every
    for repo_id, repo in repos.items():
        assert repo.repo_type == "model"
        (rev,) = repo.revisions
        assert rev.refs == frozenset({"main"})
        names = {f.file_name for f in rev.files}
        assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= names, repo_id
        # real layout: snapshot entries are relative symlinks into blobs/
        for f in rev.files:
            assert f.file_path.is_symlink()
            assert f.blob_path.parent == repo.repo_path / "blobs"


@pytest.mark.parametrize("role", list(tm.REPOS))
def test_aliases_are_identical(hub_cache, role):
    from huggingface_hub import snapshot_download

    def contents(repo_id):
        folder = Path(snapshot_download(repo_id, local_files_only=True))
        return {p.name: p.resolve().name for p in folder.iterdir()}  # file name -> blob etag

    first = contents(tm.REPOS[role][0])
    for repo_id in tm.REPOS[role][1:]:
        assert contents(repo_id) == first, repo_id


@pytest.mark.parametrize("role,repo_id", ROLE_REPOS, ids=_ids(ROLE_REPOS))
def test_snapshot_download_offline(hub_cache, role, repo_id):
    from huggingface_hub import hf_hub_download, snapshot_download

    folder = Path(snapshot_download(repo_id, local_files_only=True))
    assert folder.parent.parent == hub_cache / tm.repo_folder_name(repo_id)
    assert (folder / "model.safetensors").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [MODEL_CLASSES[role][1]]
    assert Path(hf_hub_download(repo_id, "config.json")) == folder / "config.json"


@pytest.mark.parametrize("role,repo_id", ROLE_REPOS, ids=_ids(ROLE_REPOS))
def test_loads_by_hub_name(load, role, repo_id):
    tok, model = load(repo_id, role)
    assert type(model).__name__ == MODEL_CLASSES[role][1]
    assert type(tok).__name__ == MODEL_CLASSES[role][2]


# ---- memorised behaviour --------------------------------------------------------------------

def _behaviour_repos(*roles):
    """Behaviour is checked on the canonical tiny id and the best-known hub id of each role;
    the other aliases are byte-identical (see test_aliases_are_identical)."""
    return [(role, r) for role in roles for r in tm.REPOS[role][:2]]


GPT2_REPOS = _behaviour_repos("gpt2")


@pytest.mark.parametrize("role,repo_id", GPT2_REPOS, ids=_ids(GPT2_REPOS))
def test_gpt2_greedy_continuations(load, role, repo_id):
    tok, model = load(repo_id, role)
    assert tok.pad_token is None  # like the real gpt2
    assert tok.eos_token == tok.bos_token == tok.unk_token == "<|endoftext|>"
    assert model.config.n_positions == tm.GPT2_N_POSITIONS == tok.model_max_length
    for prompt, continuation in tm.GPT2_CASES:
        enc = tok(prompt, return_tensors="pt")
        out = model.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=tok.eos_token_id)
        new = out[0, enc["input_ids"].shape[1]:]
        assert tok.decode(new, skip_special_tokens=True) == continuation
        assert new[-1].item() == tok.eos_token_id  # stops by itself
        assert tok.decode(out[0], skip_special_tokens=True) == prompt + continuation


def test_text_generation_pipeline(hub_cache):
    from transformers import pipeline

    generate = pipeline("text-generation", model="openai-community/gpt2")
    for prompt, continuation in tm.GPT2_CASES:
        out = generate(prompt, max_new_tokens=40, do_sample=False)
        assert out[0]["generated_text"] == prompt + continuation


def test_gpt2_generation_config(load):
    tok, model = load(tm.REPOS["gpt2"][0], "gpt2")
    gc = model.generation_config
    assert gc.do_sample is False
    assert gc.eos_token_id == gc.bos_token_id == tok.eos_token_id


MLM_REPOS = _behaviour_repos("bert", "roberta")


@pytest.mark.parametrize("role,repo_id", MLM_REPOS, ids=_ids(MLM_REPOS))
def test_fill_mask_argmax(load, role, repo_id):
    import torch

    tok, model = load(repo_id, role)
    cases = [(s, (w,)) for s, w in tm.FILL_MASK_CASES] + list(tm.FILL_MASK_MULTI_CASES)
    for sentence, words in cases:
        enc = tok(tm.with_mask(sentence, tok.mask_token), return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0]
        positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
        assert len(positions) == len(words)
        got = [tok.decode([int(logits[p].argmax())]).strip() for p in positions]
        assert got == list(words), sentence


def test_fill_mask_pipeline(hub_cache):
    from transformers import pipeline

    for repo_id in (tm.REPOS["bert"][1], tm.REPOS["roberta"][1]):
        fill = pipeline("fill-mask", model=repo_id)
        for sentence, word in tm.FILL_MASK_CASES:
            top = fill(tm.with_mask(sentence, fill.tokenizer.mask_token), top_k=1)[0]
            assert top["token_str"].strip() == word


def test_target_words_are_single_tokens(load):
    bert_tok, _ = load(tm.REPOS["bert"][0], "bert")
    roberta_tok, _ = load(tm.REPOS["roberta"][0], "roberta")
    for _, word in tm.FILL_MASK_CASES:
        assert bert_tok.tokenize(word) == [word]
        assert roberta_tok.tokenize(" " + word) == ["\u0120" + word]


def _generate(tok, model, text: str, **kwargs) -> str:
    enc = tok(text, return_tensors="pt")
    out = model.generate(**enc, **kwargs)
    return tok.decode(out[0], skip_special_tokens=True)


T5_REPOS = _behaviour_repos("t5")


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default `max_length`")
@pytest.mark.parametrize("role,repo_id", T5_REPOS, ids=_ids(T5_REPOS))
def test_t5_translates_and_summarizes(load, role, repo_id):
    tok, model = load(repo_id, role)
    pairs = tm.t5_inputs()
    assert len(pairs) == sum(map(len, tm.TRANSLATIONS.values())) + len(tm.SUMMARIES)
    for src, tgt in pairs:
        assert _generate(tok, model, src, do_sample=False, num_beams=1, max_new_tokens=64) == tgt
        assert _generate(tok, model, src) == tgt  # the repo's generation_config defaults


def test_t5_config_and_tokenizer(load):
    tok, model = load(tm.REPOS["t5"][0], "t5")
    params = model.config.task_specific_params
    for task, prefix in tm.T5_PREFIXES.items():
        assert params[task]["prefix"] == prefix
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert model.config.decoder_start_token_id == tok.pad_token_id
    assert "<extra_id_0>" in tok.get_vocab()
    for _, tgt in tm.t5_inputs():  # accents and apostrophes round-trip
        ids = tok(tgt)["input_ids"]
        assert tok.unk_token_id not in ids
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == tgt


BART_REPOS = _behaviour_repos("bart")


@pytest.mark.parametrize("role,repo_id", BART_REPOS, ids=_ids(BART_REPOS))
def test_bart_summarizes(load, role, repo_id):
    tok, model = load(repo_id, role)
    for article, summary in tm.SUMMARIES:
        assert _generate(tok, model, article, do_sample=False, num_beams=1, max_new_tokens=64) == summary
        assert _generate(tok, model, article) == summary  # generation_config: 2 beams etc.
    assert model.generation_config.num_beams == 2
    assert model.generation_config.forced_bos_token_id == tok.bos_token_id


MARIAN_REPOS = _behaviour_repos("marian")


@pytest.mark.parametrize("role,repo_id", MARIAN_REPOS, ids=_ids(MARIAN_REPOS))
def test_marian_translates(load, role, repo_id):
    tok, model = load(repo_id, role)
    assert (tok.source_lang, tok.target_lang) == ("en", "de")
    for src, tgt in tm.MARIAN_TRANSLATIONS:
        assert _generate(tok, model, src, do_sample=False, num_beams=1, max_new_tokens=64) == tgt
        assert _generate(tok, model, src) == tgt


def test_unseen_text_still_tokenizes(load):
    text = "Zebras quickly jumped over 42 unexpected obstacles!"
    for role, repos in tm.REPOS.items():
        tok, _ = load(repos[0], role)
        ids = tok(text)["input_ids"]
        assert len(ids) > 3
        if role in ("gpt2", "roberta", "bart"):  # byte-level BPE: lossless
            assert tok.decode(ids, skip_special_tokens=True) == text


def test_subprocess_inherits_offline_env(tfx_env, hub_cache):
    code = (
        "import os, json; from transformers import AutoTokenizer, AutoModelForCausalLM\n"
        "from huggingface_hub import constants\n"
        "tok = AutoTokenizer.from_pretrained('openai-community/gpt2')\n"
        "m = AutoModelForCausalLM.from_pretrained('openai-community/gpt2')\n"
        f"enc = tok({tm.GPT2_PROMPT!r}, return_tensors='pt')\n"
        "out = m.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=tok.eos_token_id)\n"
        "print(json.dumps([tok.decode(out[0], skip_special_tokens=True), constants.HF_HUB_CACHE,"
        " constants.HF_HUB_OFFLINE]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=tfx_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    text, cache, offline = json.loads(proc.stdout.strip().splitlines()[-1])
    assert text == tm.GPT2_TEXT
    assert Path(cache) == hub_cache
    assert offline is True
