"""Random-weight models at the real sizes, with tokenizers trained here at the real vocabulary sizes,
installed into an offline Hugging Face cache under the real repo ids (no network, deterministic seeds).

- GPT-2 small: GPT2Config() (124M parameters), byte-level BPE with 50,257 entries;
- BERT-base: BertConfig() (110M), WordPiece with 30,522 entries;
- T5-small: t5-small's config (60M), a unigram model with 32,000 pieces + 100 sentinels.

The text the tokenizers learn from is pseudo-English: a few hundred real function words and ~60,000
made-up words, Zipf-distributed, in sentences of 6-28 words, so that token counts per sentence are
close to what the real tokenizers give for English prose."""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # tiny_models: the hub-cache layout helpers

REPOS = {
    "gpt2": ("openai-community/gpt2", "gpt2"),
    "bert": ("google-bert/bert-base-uncased", "bert-base-uncased"),
    "t5": ("google-t5/t5-small", "t5-small"),
}
COMMON = """the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an each she which
do their time if will way about many then them write would like so these her long make thing see him two has
look more day could go come did number sound no most people my over know water than call first who may down
side been now find any new work part take get place made live where after back little only round man year came
show every good me give our under name very through just form sentence great think say help low line differ
turn cause much mean before move right boy old too same tell does set three want air well also play small end
put home read hand port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self earth father head
stand own page should country found answer school grow study still learn plant cover food sun four between
state keep eye never last let thought city tree cross farm hard start might story saw far sea draw left late
run while press close night real life few north open seem together next white children begin got walk example
ease paper group always music those both mark often letter until mile river car feet care second book carry
took science eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood
main enough plain girl usual young ready above ever red list though feel talk bird soon body dog family direct
pose leave song measure door product black short numeral class wind question happen complete ship area half
rock order fire south problem piece told knew pass since top whole king space heard best hour better true
during hundred five remember step early hold west ground interest reach fast verb sing listen six table travel
less morning ten simple several vowel toward war lay against pattern slow center love person money serve
appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark
machine note wait plan figure star box noun field rest correct able pound done beauty drive stood contain
front teach week final gave green oh quick develop ocean warm free minute strong special mind behind clear
tail produce fact street inch multiply nothing course stay wheel full force blue object decide surface deep
moon island foot system busy test record boat common gold possible plane stead dry wonder laugh thousand ago
ran check game shape equate miss brought heat snow tire bring yes distant fill east paint language among""".split()
ONSETS = ["", "b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "pl", "pr", "qu", "r", "s", "sh", "sl", "st", "t", "th", "tr", "v", "w", "y", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "ou", "y"]
CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "st", "ck", "rt", "ss"]


def vocabulary(n_words: int = 60_000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words, seen = list(COMMON), set(COMMON)
    while len(words) < n_words:
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def sentences(n: int, seed: int = 11, lengths: tuple[int, int] = (6, 28), words: list[str] | None = None) -> list[str]:
    """n pseudo-English sentences; word ranks follow Zipf's law, as in real text."""
    rng = random.Random(seed)
    words = words or vocabulary()
    cum, total = [], 0.0
    for rank in range(1, len(words) + 1):
        total += 1.0 / rank**1.07
        cum.append(total)
    out = []
    for _ in range(n):
        picked = rng.choices(words, cum_weights=cum, k=rng.randint(*lengths))
        for i in range(2, len(picked) - 1, 7):
            if rng.random() < 0.3:
                picked[i] += ","
        text = " ".join(picked)
        out.append(text[0].upper() + text[1:] + rng.choice((".", ".", ".", "?", "!")))
    return out


def _corpus() -> list[str]:
    return sentences(150_000, seed=1)


# ---- tokenizers -----------------------------------------------------------------------------------------


def gpt2_tokenizer(corpus: list[str]):
    import tiny_models
    from transformers import GPT2Tokenizer

    vocab, merges = tiny_models._train_bpe(corpus, ["<|endoftext|>"], 50_257)
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=1024)


def bert_tokenizer(corpus: list[str]):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizer

    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(corpus, vocab_size=30_522, min_frequency=1, show_progress=False)
    vocab = trainer.get_vocab()
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512)


def t5_tokenizer(corpus: list[str]):
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import T5Tokenizer

    trainer = SentencePieceUnigramTokenizer()
    trainer.train_from_iterator(corpus, vocab_size=32_000, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False)
    pieces = [(p, s) for p, s in json.loads(trainer.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=pieces, extra_ids=100, model_max_length=512)


# ---- models ---------------------------------------------------------------------------------------------


def build_gpt2(out: Path, corpus: list[str]) -> None:
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    tok = gpt2_tokenizer(corpus)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50_257, bos_token_id=eos, eos_token_id=eos)).eval()
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def build_bert(out: Path, corpus: list[str]) -> None:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tok = bert_tokenizer(corpus)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=30_522, pad_token_id=tok.pad_token_id)).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)


T5_TASKS = {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30, "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 300, "num_beams": 4, "prefix": "translate English to German: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 300, "num_beams": 4, "prefix": "translate English to French: "},
    "translation_en_to_ro": {"early_stopping": True, "max_length": 300, "num_beams": 4, "prefix": "translate English to Romanian: "},
}  # as in t5-small's config.json


def build_t5(out: Path, corpus: list[str]) -> None:
    import torch
    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

    tok = t5_tokenizer(corpus)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=32_128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8, feed_forward_proj="relu",
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, n_positions=512, task_specific_params=T5_TASKS,
    )  # fmt: skip
    model = T5ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)


BUILDERS = {"gpt2": build_gpt2, "bert": build_bert, "t5": build_t5}


def build(cache: Path, roles=tuple(REPOS), log=print) -> Path:
    """Build the models into `cache` (a HF_HUB_CACHE) unless they are there; returns the cache."""
    import tiny_models

    tiny_models._quiet_transformers()
    missing = [r for r in roles if not (cache / tiny_models.repo_folder_name(REPOS[r][0]) / "refs" / "main").exists()]
    if not missing:
        return cache
    corpus = _corpus()
    with tempfile.TemporaryDirectory(prefix="tfx-bench-build-") as tmp:
        for role in missing:
            t0 = time.perf_counter()
            out = Path(tmp) / role
            out.mkdir()
            BUILDERS[role](out, corpus)
            for repo_id in REPOS[role]:
                tiny_models.install_into_cache(out, cache, repo_id)
            log(f"built {role} in {time.perf_counter() - t0:.1f} s")
    return cache


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / ".cache" / "hub")
