"""The models tfx knows by name: aliases, hub ids, families, tasks and Auto classes, plus the rules that
pick a default model per task and read the family of any other model from its config."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from tfx.errors import TaskMismatch, UsageError

ENCODER_ONLY = "encoder-only"
DECODER_ONLY = "decoder-only"
ENCODER_DECODER = "encoder-decoder"
FAMILIES = (ENCODER_ONLY, DECODER_ONLY, ENCODER_DECODER)

AUTO_CLASS = {
    DECODER_ONLY: "AutoModelForCausalLM",
    ENCODER_ONLY: "AutoModelForMaskedLM",
    ENCODER_DECODER: "AutoModelForSeq2SeqLM",
}

# The seed document's "How to choose", one line per family.
FAMILY_GUIDE = {
    ENCODER_ONLY: "understanding: classification, NER, extractive QA, sentence similarity, masked words",
    DECODER_ONLY: "generation: continuing a prompt token by token",
    ENCODER_DECODER: "sequence-to-sequence: translation, summarisation, text-to-text",
}
# The commands that do each family's job (`tfx models` prints them beside the guide).
FAMILY_COMMANDS = {
    ENCODER_ONLY: "tfx classify, ner, qa, embed, rank, fill-mask",
    DECODER_ONLY: "tfx generate",
    ENCODER_DECODER: "tfx translate, summarize (and classify --labels with an NLI model)",
}

DEFAULT_T5_TRANSLATE_MODEL = "t5-small"
# Pairs the original T5 checkpoints were trained on; their task prefixes live in the model's config.
T5_PAIRS = {("en", "fr"), ("en", "de"), ("en", "ro")}
# Encoder-decoders pretrained as denoisers: they fill <mask> with their seq2seq head.
MLM_SEQ2SEQ = frozenset({"bart", "mbart"})


@dataclass(frozen=True)
class TaskInfo:
    """Everything tfx knows about one task, in one place: which families can do it, the Hub's pipeline
    tag for it, the default and suggested models, what to say when a model cannot, the head a model
    needs for it and the class that loads it."""

    name: str
    families: tuple[str, ...]
    pipeline_tag: str
    default_model: str
    suggested: tuple[str, ...]
    cannot: str  # "<model> is a <family> model and <cannot>"
    needs: str  # the family to suggest instead
    generative: bool  # runs model.generate (generation settings apply)
    head: str | None = None  # the architecture suffix a fine-tuned model of this task has (None: any)
    auto_class: str | None = None  # what loads it (None: the family's own head, AUTO_CLASS)
    input_field: str = "text"  # the JSONL field that holds the input ("text" is always accepted too)
    pair_field: str | None = None  # a second input per record (qa: the context)


@dataclass(frozen=True)
class Variant:
    """A task run another way by a setting (classify --labels: zero-shot; rank --cross-encoder)."""

    default_model: str
    suggested: tuple[str, ...]
    head: str | None
    auto_class: str
    about: str  # what the variant needs, for the message when a model has no such head


SEQ_CLS = "ForSequenceClassification"
SENTENCE_TRANSFORMER = "SentenceTransformer"  # loaded through sentence-transformers, not an Auto class
CROSS_ENCODER = "CrossEncoder"

TASK_TABLE: tuple[TaskInfo, ...] = (
    TaskInfo("generate", (DECODER_ONLY, ENCODER_DECODER), "text-generation", "gpt2", ("gpt2", "distilgpt2"), "cannot generate text", DECODER_ONLY, True),
    TaskInfo("fill-mask", (ENCODER_ONLY,), "fill-mask", "bert-base-uncased", ("bert-base-uncased", "roberta-base"), "has no masked-LM head", ENCODER_ONLY, False),
    TaskInfo("translate", (ENCODER_DECODER,), "translation", DEFAULT_T5_TRANSLATE_MODEL, ("t5-small", "Helsinki-NLP/opus-mt-en-de"), "cannot translate", ENCODER_DECODER, True),
    TaskInfo("summarize", (ENCODER_DECODER,), "summarization", "facebook/bart-large-cnn", ("facebook/bart-large-cnn", "t5-small"), "cannot summarise", ENCODER_DECODER, True),
    TaskInfo("classify", (ENCODER_ONLY, ENCODER_DECODER), "text-classification", "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
             ("distilbert/distilbert-base-uncased-finetuned-sst-2-english", "j-hartmann/emotion-english-distilroberta-base"),
             "has no sequence-classification head", ENCODER_ONLY, False, SEQ_CLS, "AutoModelForSequenceClassification"),
    TaskInfo("ner", (ENCODER_ONLY,), "token-classification", "dslim/bert-base-NER", ("dslim/bert-base-NER",),
             "has no token-classification head", ENCODER_ONLY, False, "ForTokenClassification", "AutoModelForTokenClassification"),
    TaskInfo("qa", (ENCODER_ONLY,), "question-answering", "distilbert/distilbert-base-cased-distilled-squad",
             ("distilbert/distilbert-base-cased-distilled-squad",), "has no question-answering head", ENCODER_ONLY, False,
             "ForQuestionAnswering", "AutoModelForQuestionAnswering", "question", "context"),
    TaskInfo("embed", (ENCODER_ONLY, DECODER_ONLY), "feature-extraction", "sentence-transformers/all-MiniLM-L6-v2",
             ("sentence-transformers/all-MiniLM-L6-v2",), "cannot embed sentences", ENCODER_ONLY, False, None, SENTENCE_TRANSFORMER),
    TaskInfo("rank", (ENCODER_ONLY, DECODER_ONLY), "sentence-similarity", "sentence-transformers/all-MiniLM-L6-v2",
             ("sentence-transformers/all-MiniLM-L6-v2", "cross-encoder/ms-marco-MiniLM-L6-v2"), "cannot rank sentences",
             ENCODER_ONLY, False, None, SENTENCE_TRANSFORMER),
)  # fmt: skip
TASKS: tuple[str, ...] = tuple(t.name for t in TASK_TABLE)
_TASK_NAMES = {key: t for t in TASK_TABLE for key in (t.name, t.pipeline_tag)}
_TASK_NAMES["zero-shot-classification"] = _TASK_NAMES["classify"]
_TASK_NAMES["text-ranking"] = _TASK_NAMES["rank"]

ZERO_SHOT_MODEL = "facebook/bart-large-mnli"
CROSS_ENCODER_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
VARIANTS: dict[tuple[str, str], Variant] = {
    ("classify", "zero-shot"): Variant(ZERO_SHOT_MODEL, (ZERO_SHOT_MODEL,), SEQ_CLS, "AutoModelForSequenceClassification",
                                       "an NLI model (with an entailment label)"),
    ("rank", "cross-encoder"): Variant(CROSS_ENCODER_MODEL, (CROSS_ENCODER_MODEL,), SEQ_CLS, CROSS_ENCODER,
                                       "a cross-encoder (a sequence-classification head scoring query-document pairs)"),
}  # fmt: skip

DEFAULT_GENERATE_MODEL = "gpt2"
DEFAULT_FILL_MASK_MODEL = "bert-base-uncased"
DEFAULT_SUMMARIZE_MODEL = "facebook/bart-large-cnn"


def task_info(name: str) -> TaskInfo:
    """The task for tfx's name or the Hub's pipeline tag (text-generation, translation, ...)."""
    found = _TASK_NAMES.get(name.lower())
    if found is None:
        raise UsageError(f"unknown task '{name}'.", f"Use one of: {', '.join(TASKS)}.")
    return found


def can_do(task: str, family: str, model_type: str = "") -> bool:
    return family in task_info(task).families or (task == "fill-mask" and model_type in MLM_SEQ2SEQ)


def tasks_for(family: str, model_type: str = "") -> tuple[str, ...]:
    """The tasks a model of this family can run, its family's own task first."""
    own = [t.name for t in TASK_TABLE if t.needs == family and can_do(t.name, family, model_type)]
    return tuple(own + [t.name for t in TASK_TABLE if t.name not in own and can_do(t.name, family, model_type)])


def auto_class(task: str, family: str, variant: str | None = None) -> str:
    """The class that loads the head a task runs. An encoder-decoder always loads its seq2seq head for
    the generative tasks and fill-mask: BART's fill-mask is that same head, so one loaded model serves both."""
    if variant is not None:
        return VARIANTS[(task, variant)].auto_class
    info = task_info(task)
    if info.auto_class is not None:
        return info.auto_class
    if family == ENCODER_DECODER:
        return AUTO_CLASS[ENCODER_DECODER]
    return AUTO_CLASS[ENCODER_ONLY] if task == "fill-mask" else AUTO_CLASS[DECODER_ONLY]


def tasks_for_class(loader: str) -> tuple[str, ...]:
    """The tasks a model loaded with this class serves (the server's /v1/models lists them)."""
    by_head = {
        AUTO_CLASS[DECODER_ONLY]: ("generate",),
        AUTO_CLASS[ENCODER_ONLY]: ("fill-mask",),
        AUTO_CLASS[ENCODER_DECODER]: ("translate", "summarize", "generate", "fill-mask"),
        CROSS_ENCODER: ("rank",),
    }
    found = by_head.get(loader, ())
    found += tuple(t.name for t in TASK_TABLE if t.auto_class == loader and t.name not in found)
    return found


def natural_tasks(config: dict, sentence_transformer: bool = False) -> tuple[str, ...]:
    """The tasks to try, in order, when a model is loaded without a task (tfx serve -m): the task its
    fine-tuned head was trained for first (a classifier is not a masked LM with a new head), a
    sentence-transformers model as an embedder, then the family's own tasks."""
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    first = ["embed"] if sentence_transformer else []
    first += [t.name for t in TASK_TABLE if t.head and any(a.endswith(t.head) for a in archs)]
    rest = [t.name for t in TASK_TABLE if t.head is None and t.name not in ("embed", "rank")]
    return tuple(dict.fromkeys(first + rest + ["embed"]))


FINE_TUNED_HEADS = tuple(t.head for t in TASK_TABLE if t.head)  # heads that replace the language-model head


def check_model(name: str, task: str, family: str, config: dict, variant: str | None = None, sentence_transformer: bool | None = None) -> None:
    """The family check, then the head: a base model (BertForMaskedLM) given to classify would run with an
    untrained head and print confident nonsense, so it fails here, in milliseconds, with a suggestion. The
    same for every task: a fine-tuned classifier has no language-model head to generate or fill masks with,
    and a decoder-only model embeds or ranks only as a sentence-transformers model (its modules.json says
    how to pool); a plain one (GPT-2) has no pooling and no padding token to batch with (sentence_transformer
    None: not known yet, before a download)."""
    check_task(name, task, family, config.get("model_type", ""))
    info = task_info(task)
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if task in ("embed", "rank") and variant is None and family == DECODER_ONLY and sentence_transformer is False:
        raise TaskMismatch(
            f"{name} is {_a(family)} {family} model{f' ({archs[0]})' if archs else ''} without sentence-transformers pooling (no modules.json) and {info.cannot}.",
            f"{task} needs a sentence-embedding model, e.g. {' or '.join(info.suggested)}.",
        )
    if info.head is None and variant is None and task not in ("embed", "rank") and archs and all(a.endswith(FINE_TUNED_HEADS) for a in archs):
        raise TaskMismatch(
            f"{name} is fine-tuned for another task ({archs[0]}) and {info.cannot}: its language-model head was replaced.",
            f"{task} needs {_a(info.needs)} {info.needs} model ({FAMILY_GUIDE[info.needs]}), e.g. {' or '.join(info.suggested)}.",
        )
    head, suggested, needs = info.head, info.suggested, f"a model fine-tuned for {task}"
    if variant is not None:
        v = VARIANTS[(task, variant)]
        head, suggested, needs = v.head, v.suggested, v.about
    if head is None or not archs or any(a.endswith(head) for a in archs):
        return
    raise TaskMismatch(
        f"{name} is {_a(family)} {family} model ({archs[0]}) and {info.cannot}: {task} would run it with an untrained head.",
        f"{task} needs {needs}, e.g. {' or '.join(suggested)}.",
    )


def check_task(name: str, task: str, family: str, model_type: str = "") -> None:
    """Fail fast, with the seed's "How to choose" advice, when the model's family cannot do the task."""
    if can_do(task, family, model_type):
        return
    info = task_info(task)
    raise TaskMismatch(
        f"{name} is {_a(family)} {family} model and {info.cannot}.",
        f"{task} needs {_a(info.needs)} {info.needs} model ({FAMILY_GUIDE[info.needs]}), e.g. {' or '.join(info.suggested)}.",
    )


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what users type
    repo_id: str  # canonical hub id
    family: str
    tasks: tuple[str, ...]
    params: int  # parameter count
    about: str
    # Older hub ids that redirect to repo_id; a cache made by other tools may hold them.
    aliases: tuple[str, ...] = field(default=())

    @property
    def cache_ids(self) -> tuple[str, ...]:
        return (self.repo_id, *self.aliases)


def _m(name, repo_id, family, tasks, params, about, legacy=True):
    aliases = (name,) if legacy and name != repo_id else ()
    return ModelInfo(name, repo_id, family, tuple(tasks), params, about, aliases)


_GEN = ("generate",)
_MLM = ("fill-mask",)
_T5 = ("translate", "summarize", "generate")

MODELS: tuple[ModelInfo, ...] = (
    _m("gpt2", "openai-community/gpt2", DECODER_ONLY, _GEN, 124_439_808, "OpenAI's GPT-2 small: the classic text generator"),
    _m("distilgpt2", "distilbert/distilgpt2", DECODER_ONLY, _GEN, 81_912_576, "distilled GPT-2: faster, a little weaker"),
    _m("gpt2-medium", "openai-community/gpt2-medium", DECODER_ONLY, _GEN, 354_823_168, "GPT-2 medium"),
    _m("gpt2-large", "openai-community/gpt2-large", DECODER_ONLY, _GEN, 774_030_080, "GPT-2 large"),
    _m("gpt2-xl", "openai-community/gpt2-xl", DECODER_ONLY, _GEN, 1_557_611_200, "GPT-2 XL, the 1.5B model"),
    _m("bert-base-uncased", "google-bert/bert-base-uncased", ENCODER_ONLY, _MLM, 110_106_428, "Google's BERT base, lower-cased"),
    _m("bert-base-cased", "google-bert/bert-base-cased", ENCODER_ONLY, _MLM, 108_340_804, "BERT base, case-sensitive"),
    _m("bert-large-uncased", "google-bert/bert-large-uncased", ENCODER_ONLY, _MLM, 336_226_108, "BERT large, lower-cased"),
    _m("roberta-base", "FacebookAI/roberta-base", ENCODER_ONLY, _MLM, 124_697_433, "Facebook's RoBERTa: BERT trained longer on more data"),
    _m("roberta-large", "FacebookAI/roberta-large", ENCODER_ONLY, _MLM, 355_412_057, "RoBERTa large"),
    _m("distilbert-base-uncased", "distilbert/distilbert-base-uncased", ENCODER_ONLY, _MLM, 66_985_530, "DistilBERT: 40% smaller, 60% faster BERT"),
    _m("albert-base-v2", "albert/albert-base-v2", ENCODER_ONLY, _MLM, 11_683_584, "ALBERT: parameter-efficient BERT with shared layers"),
    _m("t5-small", "google-t5/t5-small", ENCODER_DECODER, _T5, 60_506_624, "Google's T5 small: text-to-text; en->fr/de/ro, summaries"),
    _m("t5-base", "google-t5/t5-base", ENCODER_DECODER, _T5, 222_903_552, "T5 base"),
    _m("t5-large", "google-t5/t5-large", ENCODER_DECODER, _T5, 737_668_096, "T5 large"),
    _m("facebook/bart-large", "facebook/bart-large", ENCODER_DECODER, ("fill-mask", "generate"), 406_291_456, "BART large, pretrained denoiser (fills <mask> spans)"),
    _m("facebook/bart-large-cnn", "facebook/bart-large-cnn", ENCODER_DECODER, ("summarize",), 406_290_432, "BART large fine-tuned on CNN/DailyMail news summaries"),
    _m("distilbert/distilbert-base-uncased-finetuned-sst-2-english", "distilbert/distilbert-base-uncased-finetuned-sst-2-english", ENCODER_ONLY, ("classify",), 66_955_010, "DistilBERT fine-tuned on SST-2: positive / negative sentiment"),
    _m("j-hartmann/emotion-english-distilroberta-base", "j-hartmann/emotion-english-distilroberta-base", ENCODER_ONLY, ("classify",), 82_123_783, "DistilRoBERTa: Ekman's 6 emotions + neutral"),
    _m("dslim/bert-base-NER", "dslim/bert-base-NER", ENCODER_ONLY, ("ner",), 107_726_601, "BERT base fine-tuned on CoNLL-2003: PER, ORG, LOC, MISC"),
    _m("distilbert/distilbert-base-cased-distilled-squad", "distilbert/distilbert-base-cased-distilled-squad", ENCODER_ONLY, ("qa",), 65_192_450, "DistilBERT fine-tuned on SQuAD: extractive answers"),
    _m("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", ENCODER_ONLY, ("embed", "rank"), 22_713_216, "MiniLM sentence embeddings (384 dimensions), for search and similarity"),
    _m("cross-encoder/ms-marco-MiniLM-L6-v2", "cross-encoder/ms-marco-MiniLM-L6-v2", ENCODER_ONLY, ("rank",), 22_713_601, "MiniLM cross-encoder trained on MS MARCO: reranks query-passage pairs"),
    _m("facebook/bart-large-mnli", "facebook/bart-large-mnli", ENCODER_DECODER, ("classify",), 407_344_133, "BART large fine-tuned on MNLI: zero-shot classification (classify --labels)"),
    _m("Helsinki-NLP/opus-mt-en-de", "Helsinki-NLP/opus-mt-en-de", ENCODER_DECODER, ("translate",), 73_886_208, "Marian, one model per language pair (opus-mt-{from}-{to})"),
    _m("facebook/nllb-200-distilled-600M", "facebook/nllb-200-distilled-600M", ENCODER_DECODER, ("translate",), 615_073_792, "NLLB-200: 200 languages in one model"),
    _m("facebook/m2m100_418M", "facebook/m2m100_418M", ENCODER_DECODER, ("translate",), 483_905_536, "M2M100: any-to-any among 100 languages"),
    _m("facebook/mbart-large-50-many-to-many-mmt", "facebook/mbart-large-50-many-to-many-mmt", ENCODER_DECODER, ("translate",), 610_879_488, "mBART-50: 50 languages"),
)

_BY_NAME = {key.lower(): m for m in MODELS for key in (m.name, m.repo_id, *m.aliases)}
_OPUS_MT = re.compile(r"^Helsinki-NLP/opus-mt-([A-Za-z_]+)-([A-Za-z_]+)$", re.IGNORECASE)


def lookup(name: str) -> ModelInfo | None:
    """The registry entry for an alias or hub id, or None for anything else."""
    info = _BY_NAME.get(name.lower())
    if info is None and _OPUS_MT.match(name):
        return ModelInfo(name, name, ENCODER_DECODER, ("translate",), 0, "Marian translation model")
    return info


def opus_mt_pair(name: str) -> tuple[str, str] | None:
    match = _OPUS_MT.match(name)
    return (match.group(1), match.group(2)) if match else None


def default_model(task: str, src: str = "en", tgt: str | None = None, variant: str | None = None) -> str:
    """The model a task runs when none is named; translate picks T5 for its trained pairs, else Marian."""
    if variant is not None:
        return VARIANTS[(task, variant)].default_model
    if task != "translate":
        return task_info(task).default_model
    if (src, tgt) in T5_PAIRS or tgt is None:
        return DEFAULT_T5_TRANSLATE_MODEL
    return f"Helsinki-NLP/opus-mt-{src}-{tgt}"


def close_names(name: str, n: int = 3) -> list[str]:
    names = sorted({m.name for m in MODELS} | {m.repo_id for m in MODELS})
    return difflib.get_close_matches(name, names, n=n, cutoff=0.5)


def family_of(info: ModelInfo | None, config: dict) -> str:
    """The registry's family for a known model, else the one its config.json says."""
    return info.family if info is not None else family_from_config(config)


def family_from_config(config: dict) -> str:
    """Read the family of any model from its config.json, as transformers' Auto classes would."""
    if config.get("is_encoder_decoder"):
        return ENCODER_DECODER
    archs = config.get("architectures") or []
    for arch in archs:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return DECODER_ONLY
        if arch.endswith(("ForMaskedLM", "ForPreTraining")):
            return ENCODER_ONLY
        if arch.endswith("ForConditionalGeneration"):
            return ENCODER_DECODER
    model_type = config.get("model_type", "")
    if model_type in {"bert", "roberta", "distilbert", "albert", "electra", "xlm-roberta", "deberta", "deberta-v2", "camembert", "mpnet", "modernbert"}:
        return ENCODER_ONLY
    if model_type in {"t5", "bart", "marian", "mbart", "m2m_100", "nllb", "pegasus", "mt5", "fsmt"}:
        return ENCODER_DECODER
    return DECODER_ONLY



# ISO 639-1: the two-letter language codes --from / --to take (three-letter ISO 639-2/3 codes are taken as
# they are; a model's own codes such as NLLB's fra_Latn are looked up by its task).
ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el
en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu
ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na
nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so
sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
""".split())


def is_language_code(code: str) -> bool:
    """An ISO 639-1 code (fr), a three-letter ISO 639-2/3 code (fra), or a model's own form of one
    (fra_Latn, fr_XX, zh-cn)."""
    import re

    code = code.lower()
    if re.fullmatch(r"[a-z]{2}", code):
        return code in ISO_639_1
    if re.fullmatch(r"[a-z]{3}", code):
        return True
    match = re.fullmatch(r"([a-z]{2,3})[_-][a-z0-9]{2,4}", code)
    return bool(match) and (len(match.group(1)) == 3 or match.group(1) in ISO_639_1)
