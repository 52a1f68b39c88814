"""load(resolved, task, device, dtype) -> Loaded: the only place that imports transformers' model classes.

It checks that the model's family can do the task before anything heavy is imported, so a mismatch is
reported in milliseconds."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfx import registry
from tfx.errors import TfxError
from tfx.hub import Resolved

log = logging.getLogger("tfx")

_MLM_SEQ2SEQ = {"bart", "mbart"}  # encoder-decoders pretrained as denoisers: they fill <mask>


class Loaded:
    """A model ready to run. `model` and `tokenizer` are transformers' objects; where a fast path can do the
    task (`fast`), they are loaded only if something asks for them, so that path never imports transformers."""

    def __init__(
        self,
        name: str,
        repo_id: str,
        path: Path,
        family: str,
        config: dict[str, Any],  # config.json as written
        generation_defaults: dict[str, Any],  # generation_config.json as written ({} when absent)
        model: Any = None,
        tokenizer: Any = None,
        device: str = "cpu",
        *,
        load_model: Callable[[], Any] | None = None,
        load_tokenizer: Callable[[], Any] | None = None,
        fast: Any = None,
    ):
        self.name, self.repo_id, self.path, self.family = name, repo_id, path, family
        self.config, self.generation_defaults, self.device = config, generation_defaults, device
        self._model, self._tokenizer = model, tokenizer
        self._load_model, self._load_tokenizer = load_model, load_tokenizer
        self.fast = fast

    @property
    def model(self) -> Any:
        if self._model is None and self._load_model is not None:
            self._model = self._load_model()
        return self._model

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None and self._load_tokenizer is not None:
            self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def drop_fast(self) -> None:
        """The fast path cannot do this run: free its weights before transformers loads its own."""
        self.fast = None

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

    generation = read_json(resolved.path / "generation_config.json")
    if engine == "local" and task == "generate" and device == "cpu" and dtype == torch.float32:
        fast = load_fast_generate(resolved, family, config, generation)
        if fast is not None:
            torch.set_grad_enabled(False)
            hf_model = lambda: _load_transformers(resolved, task, family, device, dtype, trust_remote_code, verbose)[0]  # noqa: E731
            hf_tokenizer = lambda: _load_tokenizer(resolved, trust_remote_code, verbose)  # noqa: E731
            return Loaded(resolved.name, resolved.repo_id, resolved.path, family, config, generation, None, None, device,
                          load_model=hf_model, load_tokenizer=hf_tokenizer, fast=fast)  # fmt: skip
    model, tokenizer = _load_transformers(resolved, task, family, device, dtype, trust_remote_code, verbose)
    return Loaded(resolved.name, resolved.repo_id, resolved.path, family, config, generation, model, tokenizer, device)


def load_fast_generate(resolved: Resolved, family: str, config: dict, generation: dict):
    """tfx's own GPT-2 decoder and tokenizer (no transformers import), or None where they would not give
    transformers' exact result (the reason is logged with -v)."""
    from tfx import fast

    if not fast.enabled() or family != registry.DECODER_ONLY:
        return None
    from tfx.fast import gpt2, text

    reason = gpt2.unsupported_reason(resolved.path, config, generation) or text.unsupported_reason(resolved.path)
    if reason is not None:
        log.info("fast path off for %s: %s", resolved.name, reason)
        return None
    warnings.filterwarnings("ignore")
    try:
        tokenizer = text.FastTokenizer(resolved.path)
        fast.release_free_memory()  # before the weights arrive, so the two never add up in peak RSS
        return gpt2.FastGenerator(gpt2.GPT2Greedy.load(resolved.path, config), tokenizer)
    except (OSError, ValueError, KeyError) as exc:
        log.info("fast path off for %s: %s", resolved.name, exc)
        return None


def _load_tokenizer(resolved: Resolved, trust_remote_code: bool, verbose: bool):
    import transformers

    quiet_libraries(verbose)
    return transformers.AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)


def _load_transformers(resolved: Resolved, task: str, family: str, device: str, dtype: Any, trust_remote_code: bool, verbose: bool):
    import torch
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
    return model, tokenizer


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
