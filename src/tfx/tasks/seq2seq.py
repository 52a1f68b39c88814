"""translate and summarize: encoder-decoder models (T5, BART, Marian, NLLB, M2M100, mBART-50).

T5 gets its task prefix, Marian needs none, multilingual models get their own language codes and the
target language forced as the first generated token. When nobody chose an output length, one is derived
from the input so normal sentences are never cut at transformers' 20-token fallback."""

from __future__ import annotations

from typing import Any

from tfx import registry
from tfx.errors import UsageError
from tfx.results import Seq2SeqResult
from tfx.spec import GenerationSettings, SummarizeSettings, TranslateSettings
from tfx.tasks.base import Task, context_length, input_limit, log, too_long

LANGUAGES = {
    "en": "English", "fr": "French", "de": "German", "ro": "Romanian", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
    "ar": "Arabic", "hi": "Hindi", "pl": "Polish", "tr": "Turkish", "sv": "Swedish", "fi": "Finnish",
    "cs": "Czech", "uk": "Ukrainian", "el": "Greek", "da": "Danish", "no": "Norwegian", "hu": "Hungarian",
}  # fmt: skip
NLLB_CODES = {
    "en": "eng_Latn", "fr": "fra_Latn", "de": "deu_Latn", "ro": "ron_Latn", "es": "spa_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "nl": "nld_Latn", "ru": "rus_Cyrl", "zh": "zho_Hans", "ja": "jpn_Jpan", "ko": "kor_Hang",
    "ar": "arb_Arab", "hi": "hin_Deva", "pl": "pol_Latn", "tr": "tur_Latn", "sv": "swe_Latn", "fi": "fin_Latn",
    "cs": "ces_Latn", "uk": "ukr_Cyrl", "el": "ell_Grek", "da": "dan_Latn", "no": "nob_Latn", "hu": "hun_Latn",
}  # fmt: skip
MBART50_CODES = {
    "en": "en_XX", "fr": "fr_XX", "de": "de_DE", "ro": "ro_RO", "es": "es_XX", "it": "it_IT", "pt": "pt_XX",
    "nl": "nl_XX", "ru": "ru_RU", "zh": "zh_CN", "ja": "ja_XX", "ko": "ko_KR", "ar": "ar_AR", "hi": "hi_IN",
    "pl": "pl_PL", "tr": "tr_TR", "sv": "sv_SE", "fi": "fi_FI", "cs": "cs_CZ", "uk": "uk_UA",
}  # fmt: skip
# Output budget when nobody set one: translations run a little longer than their source.
_LENGTH_FACTOR, _LENGTH_SLACK, _DECODER_CAP = 2, 16, 1024


class Seq2Seq(Task):
    batch_sizes = (16, 64)
    settings: GenerationSettings

    def __init__(self, loaded, settings: GenerationSettings):
        super().__init__(loaded, settings)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.prefix = ""
        self.kwargs: dict[str, Any] = {}
        self.limit = input_limit(loaded)
        self.truncate = not settings.no_truncate

    def finish_setup(self, task_params: dict[str, Any]) -> None:
        """Layer the model's own task settings (T5's task_specific_params) under what the user set."""
        base = {k: v for k, v in task_params.items() if k != "prefix"}
        self.kwargs = {**base, **self.settings.generate_kwargs()}
        self.derive_length = not self.settings.sets_length(self.loaded.generation_defaults) and not ({"max_new_tokens", "max_length"} & set(base))
        if self.tokenizer.pad_token_id is not None:
            self.kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)

    def task_params(self, key: str) -> dict[str, Any]:
        return dict((self.loaded.config.get("task_specific_params") or {}).get(key) or {})

    def check(self, text: str) -> None:
        if not self.truncate:
            n = len(self.tokenizer(self.prefix + text)["input_ids"])
            if n > self.limit:
                raise too_long("model's input", n, self.limit)

    def run(self, texts: list[str]) -> list[Seq2SeqResult]:
        import torch

        ids = self.tokenizer([self.prefix + t for t in texts])["input_ids"]
        cut = [False] * len(texts)
        for i, row in enumerate(ids):
            if len(row) > self.limit:
                log.warning("input %r is %d tokens; keeping its first %d (the model's limit)", texts[i][:40], len(row), self.limit)
                ids[i], cut[i] = row[: self.limit - 1] + row[-1:], True  # keep the closing </s>
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs = dict(self.kwargs)
        if self.derive_length:
            cap = context_length(self.loaded.config) or _DECODER_CAP
            longest = max(len(row) for row in ids)
            kwargs["max_new_tokens"] = min(cap, _LENGTH_FACTOR * longest + _LENGTH_SLACK)
        with torch.inference_mode():
            out = self.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        special = set(self.tokenizer.all_special_ids)
        return [
            Seq2SeqResult(
                output=self.tokenizer.decode(row, skip_special_tokens=True).strip(),
                generated_tokens=sum(1 for t in row.tolist() if t not in special),
                truncated=cut[i],
            )
            for i, row in enumerate(out)
        ]


class Translate(Seq2Seq):
    name = "translate"
    settings: TranslateSettings

    def __init__(self, loaded, settings: TranslateSettings):
        super().__init__(loaded, settings)
        self.src = settings.src
        self.tgt = settings.tgt or ""
        if not self.tgt:
            raise UsageError("translate needs a target language.", "Add --to, e.g. --to fr.")
        model_type = loaded.model_type
        if model_type in ("t5", "mt5"):
            self._setup_t5()
        elif model_type == "marian":
            self._setup_marian()
        elif model_type == "m2m_100" or model_type == "mbart" and self._is_mbart50():
            self._setup_multilingual(model_type)
        else:
            raise self._cannot(f"{loaded.name} is not a translation model")

    def _cannot(self, why: str) -> UsageError:
        pair = (self.src, self.tgt)
        better = registry.default_model("translate", *pair)
        if better == self.loaded.name or better == self.loaded.repo_id:
            better = "facebook/nllb-200-distilled-600M"
        return UsageError(f"{why}: it cannot translate {self.src}->{self.tgt}.", f"Try -m {better}.")

    def _setup_t5(self) -> None:
        specific = self.loaded.config.get("task_specific_params") or {}
        key = f"translation_{self.src}_to_{self.tgt}"
        trained = sorted(k for k in specific if k.startswith("translation_"))
        if trained and key not in specific:
            pairs = ", ".join(k[len("translation_") :].replace("_to_", "->") for k in trained)
            raise self._cannot(f"{self.loaded.name} was trained on {pairs} only")
        params = self.task_params(key)
        src_name, tgt_name = LANGUAGES.get(self.src), LANGUAGES.get(self.tgt)
        if not src_name or not tgt_name:
            raise self._cannot(f"{self.loaded.name} needs language names and does not know '{self.src if not src_name else self.tgt}'")
        self.prefix = params.get("prefix") or f"translate {src_name} to {tgt_name}: "
        self.finish_setup(params)

    def _setup_marian(self) -> None:
        pair = registry.opus_mt_pair(self.loaded.repo_id) or registry.opus_mt_pair(self.loaded.name)
        vocab = self.tokenizer.get_vocab()
        lang_token = next((t for t in (f">>{self.tgt}<<",) if t in vocab), None)
        if pair is not None and lang_token is None:
            src_ok = pair[0].lower() == self.src or not pair[0].islower()
            tgt_ok = pair[1].lower() == self.tgt
            if not (src_ok and tgt_ok):
                raise self._cannot(f"{self.loaded.name} translates {pair[0]}->{pair[1]}")
        if lang_token:  # multi-target Marian models (opus-mt-en-ROMANCE) pick the language with a token
            self.prefix = lang_token + " "
        self.finish_setup({})

    def _is_mbart50(self) -> bool:
        return "en_XX" in self.tokenizer.get_vocab()

    def _setup_multilingual(self, model_type: str) -> None:
        vocab = self.tokenizer.get_vocab()
        if "eng_Latn" in vocab:
            codes = NLLB_CODES
        elif model_type == "mbart":
            codes = MBART50_CODES
        else:
            codes = {k: k for k in LANGUAGES}
        src, tgt = codes.get(self.src), codes.get(self.tgt)
        if src is None or tgt is None:
            raise self._cannot(f"tfx does not know {self.loaded.name}'s code for '{self.src if src is None else self.tgt}'")
        tgt_token = tgt if tgt in vocab else f"__{tgt}__"
        if tgt_token not in vocab:
            raise self._cannot(f"{self.loaded.name} has no language token for {self.tgt}")
        self.tokenizer.src_lang = src
        self.finish_setup({})
        self.kwargs["forced_bos_token_id"] = vocab[tgt_token]


class Summarize(Seq2Seq):
    name = "summarize"
    batch_sizes = (4, 16)

    def __init__(self, loaded, settings: SummarizeSettings):
        super().__init__(loaded, settings)
        params_t5 = self.task_params("summarization") if loaded.model_type in ("t5", "mt5") else {}
        if loaded.model_type in ("t5", "mt5"):
            self.prefix = params_t5.get("prefix") or "summarize: "
        self.finish_setup(params_t5)
