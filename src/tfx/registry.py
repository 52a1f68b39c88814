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
    ENCODER_ONLY: "understanding: classification, NER, filling in masked words",
    DECODER_ONLY: "generation: continuing a prompt token by token",
    ENCODER_DECODER: "sequence-to-sequence: translation, summarisation, text-to-text",
}

DEFAULT_T5_TRANSLATE_MODEL = "t5-small"
# Pairs the original T5 checkpoints were trained on; their task prefixes live in the model's config.
T5_PAIRS = {("en", "fr"), ("en", "de"), ("en", "ro")}
# Encoder-decoders pretrained as denoisers: they fill <mask> with their seq2seq head.
MLM_SEQ2SEQ = frozenset({"bart", "mbart"})


@dataclass(frozen=True)
class TaskInfo:
    """Everything tfx knows about one task, in one place: which families can do it, the Hub's pipeline
    tag for it, the default and suggested models, and what to say when a model cannot."""

    name: str
    families: tuple[str, ...]
    pipeline_tag: str
    default_model: str
    suggested: tuple[str, ...]
    cannot: str  # "<model> is a <family> model and <cannot>"
    needs: str  # the family to suggest instead
    generative: bool  # runs model.generate (generation settings apply)


TASK_TABLE: tuple[TaskInfo, ...] = (
    TaskInfo("generate", (DECODER_ONLY, ENCODER_DECODER), "text-generation", "gpt2", ("gpt2", "distilgpt2"), "cannot generate text", DECODER_ONLY, True),
    TaskInfo("fill-mask", (ENCODER_ONLY,), "fill-mask", "bert-base-uncased", ("bert-base-uncased", "roberta-base"), "has no masked-LM head", ENCODER_ONLY, False),
    TaskInfo("translate", (ENCODER_DECODER,), "translation", DEFAULT_T5_TRANSLATE_MODEL, ("t5-small", "Helsinki-NLP/opus-mt-en-de"), "cannot translate", ENCODER_DECODER, True),
    TaskInfo("summarize", (ENCODER_DECODER,), "summarization", "facebook/bart-large-cnn", ("facebook/bart-large-cnn", "t5-small"), "cannot summarise", ENCODER_DECODER, True),
)  # fmt: skip
TASKS: tuple[str, ...] = tuple(t.name for t in TASK_TABLE)
_TASK_NAMES = {key: t for t in TASK_TABLE for key in (t.name, t.pipeline_tag)}

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


def auto_class(task: str, family: str) -> str:
    """The Auto class that loads the head a task runs. An encoder-decoder always loads its seq2seq head:
    BART's fill-mask is that same head, so one loaded model serves both tasks."""
    if family == ENCODER_DECODER:
        return AUTO_CLASS[ENCODER_DECODER]
    return AUTO_CLASS[ENCODER_ONLY] if task == "fill-mask" else AUTO_CLASS[DECODER_ONLY]


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


def default_model(task: str, src: str = "en", tgt: str | None = None) -> str:
    """The model a task runs when none is named; translate picks T5 for its trained pairs, else Marian."""
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
    if model_type in {"bert", "roberta", "distilbert", "albert", "electra", "xlm-roberta", "deberta", "deberta-v2", "camembert"}:
        return ENCODER_ONLY
    if model_type in {"t5", "bart", "marian", "mbart", "m2m_100", "nllb", "pegasus", "mt5", "fsmt"}:
        return ENCODER_DECODER
    return DECODER_ONLY

