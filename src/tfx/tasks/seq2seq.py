"""translate and summarize: encoder-decoder models (T5, BART, Marian, NLLB, M2M100, mBART-50).

T5 gets its task prefix, Marian needs none, multilingual models get their own language codes and the
target language forced as the first generated token. When nobody chose an output length, one is derived
from the input so normal sentences are never cut at transformers' 20-token fallback."""

from __future__ import annotations

from typing import Any

from tfx import registry, split
from tfx.errors import UsageError
from tfx.results import Failed, Seq2SeqResult
from tfx.spec import GenerationSettings, SummarizeSettings, TranslateSettings
from tfx.tasks.base import CHARS_PER_TOKEN, LONG_CONTEXTS, Task, context_length, input_limit, too_long

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
    reads_all = False  # True: a long input is read whole, in parts (translate split, summarize map-reduce)

    def __init__(self, loaded, settings: GenerationSettings):
        super().__init__(loaded, settings)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.prefix = ""
        self.kwargs: dict[str, Any] = {}
        self.limit = input_limit(loaded)
        self.truncate = not settings.no_truncate

    @property
    def max_chars(self) -> int:
        return self.limit * CHARS_PER_TOKEN * (LONG_CONTEXTS if self.reads_all else 1)

    def finish_setup(self, task_params: dict[str, Any]) -> None:
        """Layer the model's own task settings (T5's task_specific_params) under what the user set."""
        base = {k: v for k, v in task_params.items() if k != "prefix"}
        self.base_kwargs = base
        self.kwargs = {**base, **self.settings.generate_kwargs()}
        self.derive_length = not self.settings.sets_length(self.loaded.generation_defaults) and not ({"max_new_tokens", "max_length"} & set(base))
        if self.tokenizer.pad_token_id is not None:
            self.kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)

    def task_params(self, key: str) -> dict[str, Any]:
        return dict((self.loaded.config.get("task_specific_params") or {}).get(key) or {})

    def check(self, text: str) -> None:
        if not self.truncate and not self.reads_all:
            n = len(self.tokenizer(self.prefix + text)["input_ids"])
            if n > self.limit:
                raise too_long("model's input", n, self.limit)

    def run(self, texts: list[str]) -> list[Seq2SeqResult]:
        return self.generate(self.encode(texts), self.kwargs, self.derive_length)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer([self.prefix + t for t in texts])["input_ids"]

    def generate(self, ids: list[list[int]], kwargs: dict[str, Any], derive_length: bool) -> list[Seq2SeqResult]:
        """Token ids in (a row past the limit keeps its start and its closing </s>, and is marked truncated),
        results out."""
        import torch

        cut = [0] * len(ids)
        for i, row in enumerate(ids):
            if len(row) > self.limit:
                ids[i], cut[i] = row[: self.limit - 1] + row[-1:], len(row) - self.limit
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs = dict(kwargs)
        if derive_length:
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
                truncated=cut[i] > 0,
                dropped_tokens=cut[i],
            )
            for i, row in enumerate(out)
        ]

    def room(self) -> int:
        """Tokens of text one input takes: the limit less the prefix and the special tokens."""
        return self.limit - len(self.encode([""])[0])

    def fit(self, pieces: list[str]) -> tuple[list[list[str]], list[int]]:
        """Each piece as texts of at most room() tokens: itself, or (a piece longer than the model takes)
        cut at token boundaries. Also each piece's token count."""
        room = max(self.room(), 1)
        widest = room * CHARS_PER_TOKEN
        rows = self.tokenizer([p if len(p) <= widest else p[:widest] for p in pieces], add_special_tokens=False)["input_ids"]
        out, counts = [], []
        for piece, row in zip(pieces, rows):
            if len(piece) > widest:  # a piece too wide to tokenize at once: tokenized block by block
                row = [t for at in range(0, len(piece), widest) for t in self.tokenizer(piece[at : at + widest], add_special_tokens=False)["input_ids"]]
            counts.append(len(row))
            if len(row) <= room:
                out.append([piece])
            else:
                out.append([self.tokenizer.decode(row[at : at + room], skip_special_tokens=True).strip() for at in range(0, len(row), room)])
        return out, counts


class Translate(Seq2Seq):
    name = "translate"
    settings: TranslateSettings

    def __init__(self, loaded, settings: TranslateSettings):
        super().__init__(loaded, settings)
        self.src = settings.src
        self.tgt = settings.tgt or ""
        self.reads_all = settings.split
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

    def parts(self, text: str) -> split.Parts | None:
        """The record as sentences (in the source language) for the pipeline to batch with the other
        records' sentences and join back; None with --no-split."""
        if not self.reads_all:
            return None
        sentences, gaps = split.sentences(text, self.src)
        fitted, counts = self.fit(sentences)
        parts = split.Parts([], [gaps[0]])
        for pieces, count, gap in zip(fitted, counts, gaps[1:]):
            if len(pieces) > 1:
                parts.cut += 1
                parts.long_tokens.append(count)
            parts.texts += pieces
            parts.gaps += [" "] * (len(pieces) - 1) + [gap]
        return parts

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
    """A text longer than the model's context is summarised by map-reduce (unless --strategy truncate):
    cut on sentence boundaries into chunks that fit, with a little overlap; each chunk summarised with the
    model's own length settings; the summaries joined and summarised again until they fit; then the final
    summary, with the user's settings (--max-new-tokens, --min-new-tokens)."""

    name = "summarize"
    batch_sizes = (4, 16)
    settings: SummarizeSettings

    def __init__(self, loaded, settings: SummarizeSettings):
        super().__init__(loaded, settings)
        params_t5 = self.task_params("summarization") if loaded.model_type in ("t5", "mt5") else {}
        if loaded.model_type in ("t5", "mt5"):
            self.prefix = params_t5.get("prefix") or "summarize: "
        self.finish_setup(params_t5)
        self.reads_all = settings.strategy == "map-reduce"
        # The chunks' summaries: the model's own length settings, never the user's final-summary ones.
        users = {k: v for k, v in settings.generate_kwargs().items() if k not in _FINAL_ONLY}
        self.part_kwargs = {**self.base_kwargs, **users, **({"pad_token_id": self.kwargs["pad_token_id"]} if "pad_token_id" in self.kwargs else {})}
        self.derive_part_length = not SummarizeSettings().sets_length({**loaded.generation_defaults, **self.base_kwargs})

    def run(self, texts: list[str]) -> list[Seq2SeqResult]:
        ids = self.encode(texts)
        results: list = [None] * len(texts)
        short = [i for i, row in enumerate(ids) if len(row) <= self.limit or not self.reads_all]
        for i, result in zip(short, self.generate([ids[i] for i in short], self.kwargs, self.derive_length) if short else []):
            results[i] = result
        for i in range(len(texts)):
            if results[i] is None:
                results[i] = self.map_reduce(texts[i])
        return results

    def map_reduce(self, text: str) -> Seq2SeqResult:
        current, chunks = text, 0
        for _ in range(_MAX_ROUNDS):
            pieces = self.chunks(current)
            if len(pieces) == 1 and len(self.encode(pieces)[0]) <= self.limit:
                break
            summaries = self.generate_parts(pieces)
            chunks = chunks or len(pieces)
            joined = " ".join(s for s in summaries if s)
            if len(joined) >= len(current):  # no shorter: summarising again would not end
                break
            current = joined
        ids = self.encode([current])
        if len(ids[0]) > self.limit and not self.truncate:
            return Failed(error=f"its summaries are still {len(ids[0])} tokens, over the model's input limit of {self.limit} (--no-truncate was given)")
        (result,) = self.generate(ids, self.kwargs, self.derive_length)
        result.chunks = chunks
        return result

    def chunks(self, text: str) -> list[str]:
        """text cut on sentence boundaries into chunks of at most room() tokens, each after the first
        starting with up to an eighth of that of the previous one's last sentences."""
        pieces = split.segment(text)
        fitted, _ = self.fit([p.strip() for p in pieces])
        sentences = [f for fit in fitted for f in fit if f]
        if not sentences:
            return [text]
        counts = [len(r) for r in self.tokenizer(sentences, add_special_tokens=False)["input_ids"]]
        room = max(self.room(), 1)

        def fits(start: int, end: int) -> bool:
            return len(self.encode([" ".join(sentences[start:end])])[0]) <= self.limit

        return [" ".join(sentences[a:b]) for a, b in split.pack([min(c, room) for c in counts], room, room // 8, fits)]

    def generate_parts(self, texts: list[str]) -> list[str]:
        out: list[str] = []
        derive = self.derive_part_length
        kwargs = dict(self.part_kwargs)
        if derive:
            kwargs["max_new_tokens"], derive = max(16, self.limit // 4), False
        for at in range(0, len(texts), self.batch_size):
            out += [r.output for r in self.generate(self.encode(texts[at : at + self.batch_size]), kwargs, derive)]
        return out


_FINAL_ONLY = ("max_new_tokens", "min_new_tokens", "max_length", "min_length")
_MAX_ROUNDS = 8
