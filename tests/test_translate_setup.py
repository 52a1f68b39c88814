"""How translate prepares each kind of model (T5 prefix, Marian pairs and >>xx<< tokens, NLLB / M2M100 /
mBART-50 language codes), checked on stand-in tokenizers: no model weights needed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tfx.errors import UsageError
from tfx.spec import TranslateSettings
from tfx.tasks.seq2seq import Translate


class StubTokenizer:
    pad_token_id = 0
    model_max_length = 512

    def __init__(self, tokens: list[str]):
        self.vocab = {t: i for i, t in enumerate(["<pad>", *tokens])}
        self.src_lang = None

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def loaded(model_type: str, tokens: list[str], name: str = "some/model", config: dict | None = None):
    return SimpleNamespace(
        name=name, repo_id=name, model=None, device="cpu", tokenizer=StubTokenizer(tokens),
        config={"model_type": model_type, "max_position_embeddings": 1024, **(config or {})},
        generation_defaults={}, model_type=model_type, family="encoder-decoder",
    )  # fmt: skip


def test_nllb_gets_flores_codes_and_forced_target():
    model = loaded("m2m_100", ["eng_Latn", "fra_Latn", "jpn_Jpan"], "facebook/nllb-200-distilled-600M")
    task = Translate(model, TranslateSettings(src="en", tgt="ja"))
    assert model.tokenizer.src_lang == "eng_Latn"
    assert task.kwargs["forced_bos_token_id"] == model.tokenizer.vocab["jpn_Jpan"]
    assert task.prefix == ""


def test_m2m100_gets_bare_codes_as_language_tokens():
    model = loaded("m2m_100", ["__en__", "__fr__", "__de__"], "facebook/m2m100_418M")
    task = Translate(model, TranslateSettings(src="en", tgt="de"))
    assert model.tokenizer.src_lang == "en"
    assert task.kwargs["forced_bos_token_id"] == model.tokenizer.vocab["__de__"]


def test_mbart50_gets_its_locale_codes():
    model = loaded("mbart", ["en_XX", "fr_XX", "de_DE"], "facebook/mbart-large-50-many-to-many-mmt")
    task = Translate(model, TranslateSettings(src="en", tgt="de"))
    assert model.tokenizer.src_lang == "en_XX"
    assert task.kwargs["forced_bos_token_id"] == model.tokenizer.vocab["de_DE"]


def test_multilingual_model_without_the_language_says_so():
    model = loaded("m2m_100", ["eng_Latn", "fra_Latn"], "facebook/nllb-200-distilled-600M")
    with pytest.raises(UsageError, match="no language token for ja"):
        Translate(model, TranslateSettings(src="en", tgt="ja"))


def test_multi_target_marian_uses_the_language_token():
    model = loaded("marian", [">>fr<<", ">>es<<"], "Helsinki-NLP/opus-mt-en-ROMANCE")
    task = Translate(model, TranslateSettings(src="en", tgt="es"))
    assert task.prefix == ">>es<< "


def test_marian_pair_mismatch_suggests_the_right_model():
    model = loaded("marian", [], "Helsinki-NLP/opus-mt-en-de")
    with pytest.raises(UsageError, match="opus-mt-en-es"):
        Translate(model, TranslateSettings(src="en", tgt="es"))


def test_t5_without_task_params_builds_the_prefix_from_language_names():
    model = loaded("t5", [], "someone/t5-finetuned")
    task = Translate(model, TranslateSettings(src="en", tgt="es"))
    assert task.prefix == "translate English to Spanish: "


def test_bart_cnn_cannot_translate():
    model = loaded("bart", [], "facebook/bart-large-cnn")
    with pytest.raises(UsageError, match="not a translation model"):
        Translate(model, TranslateSettings(src="en", tgt="fr"))


def test_derived_output_budget_when_nobody_set_one():
    model = loaded("marian", [], "Helsinki-NLP/opus-mt-en-de")
    assert Translate(model, TranslateSettings(src="en", tgt="de")).derive_length
    model.generation_defaults = {"max_length": 512}
    assert not Translate(model, TranslateSettings(src="en", tgt="de")).derive_length
    model.generation_defaults = {"max_length": 20}  # transformers' fallback written out: still derived
    assert Translate(model, TranslateSettings(src="en", tgt="de")).derive_length
