"""load(resolved, task, device, dtype) -> Loaded: the only place that imports transformers' model classes.

It checks that the model's family can do the task before anything heavy is imported, so a mismatch is
reported in milliseconds."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfx import registry
from tfx.errors import TfxError
from tfx.hub import Resolved

log = logging.getLogger("tfx")

_MLM_SEQ2SEQ = {"bart", "mbart"}  # encoder-decoders pretrained as denoisers: they fill <mask>


@dataclass
class Loaded:
    name: str
    repo_id: str
    path: Path
    family: str
    config: dict[str, Any]  # config.json as written
    generation_defaults: dict[str, Any]  # generation_config.json as written ({} when absent)
    model: Any
    tokenizer: Any
    device: str

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "")


def model_family(resolved: Resolved, config: dict) -> str:
    return resolved.info.family if resolved.info else registry.family_from_config(config)


def check_task(resolved: Resolved, task: str, config: dict) -> str:
    """Fail fast, with the seed's "How to choose" advice, when the model's family cannot do the task."""
    family = model_family(resolved, config)
    model_type = config.get("model_type", "")
    ok = {
        "generate": family in (registry.DECODER_ONLY, registry.ENCODER_DECODER),
        "fill-mask": family == registry.ENCODER_ONLY or model_type in _MLM_SEQ2SEQ,
        "translate": family == registry.ENCODER_DECODER,
        "summarize": family == registry.ENCODER_DECODER,
    }[task]
    if ok:
        return family
    need = {
        "generate": (registry.DECODER_ONLY, "cannot generate text"),
        "fill-mask": (registry.ENCODER_ONLY, "has no masked-LM head"),
        "translate": (registry.ENCODER_DECODER, "cannot translate"),
        "summarize": (registry.ENCODER_DECODER, "cannot summarise"),
    }[task]
    suggestions = " or ".join(registry.SUGGESTED[task])
    raise TfxError(
        f"{resolved.name} is {_a(family)} {family} model and {need[1]}.",
        f"{task} needs {_a(need[0])} {need[0]} model ({registry.FAMILY_GUIDE[need[0]]}), e.g. {suggestions}.",
    )


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def auto_class_name(task: str, family: str) -> str:
    if task == "fill-mask":
        return "AutoModelForMaskedLM"
    if family == registry.ENCODER_DECODER:
        return "AutoModelForSeq2SeqLM"
    return "AutoModelForCausalLM"


def load(
    resolved: Resolved, task: str, device: str, dtype: Any, trust_remote_code: bool = False, verbose: bool = False, engine: str = "local"
) -> Loaded:
    config = read_json(resolved.path / "config.json")
    family = check_task(resolved, task, config)
    import torch  # heavy: only when a model is really needed
    import transformers

    quiet_libraries(verbose)
    auto_class = getattr(transformers, auto_class_name(task, family))
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
        model = auto_class.from_pretrained(resolved.path, dtype=dtype, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise TfxError(
                f"{resolved.name} runs custom code from its repository.",
                "Read that code, then pass --trust-remote-code to allow it.",
            ) from None
        raise TfxError(f"{resolved.name} cannot be loaded for {task}: {str(exc).splitlines()[0]}", "Check the model name and task.") from None
    model.to(device)
    model.eval()
    torch.set_grad_enabled(False)
    generation = read_json(resolved.path / "generation_config.json")
    return Loaded(resolved.name, resolved.repo_id, resolved.path, family, config, generation, model, tokenizer, device)


def quiet_libraries(verbose: bool) -> None:
    """The libraries' warnings and progress bars go to stderr only with -v; stdout is for results."""
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    if verbose:
        transformers.logging.set_verbosity_info()
        return
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    disable_progress_bars()
    warnings.filterwarnings("ignore")
