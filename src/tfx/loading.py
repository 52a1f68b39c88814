"""Loading, once: `prepare` resolves a model to its local directory, reads its configs once, checks the
task against its family (registry's one table) and the settings against its generation config; `load`
then builds it. The only place transformers' model classes are imported; a mismatch is reported in
milliseconds, before anything heavy is imported."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfx import hub, registry
from tfx.errors import TaskMismatch, TfxError, about, first_line
from tfx.io import read_json  # noqa: F401 - loading.read_json: the one reader of a model's JSON files
from tfx.spec import Settings

log = logging.getLogger("tfx")


@dataclass(frozen=True)
class Prepared:
    """A model resolved to a local snapshot, with its configs read once and its task checked."""

    resolved: hub.Resolved
    task: str
    config: dict[str, Any]  # config.json as written
    generation_defaults: dict[str, Any]  # generation_config.json as written ({} when absent)
    family: str
    variant: str | None = None  # classify --labels: "zero-shot"; rank --cross-encoder: "cross-encoder"

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "")

    @property
    def auto_class(self) -> str:
        return registry.auto_class(self.task, self.family, self.variant)


def prepare(name: str, task: str, settings: Settings | None = None, revision: str | None = None, download: bool = True, local_dirs: bool = True, variant: str | None = None) -> Prepared:
    """Resolve, read the configs, check the task and the settings: everything short of loading weights.
    local_dirs=False: name is a Hub id, never a directory (hub.resolve)."""
    resolved = hub.resolve(name, revision, download=download, local_dirs=local_dirs)
    config = read_config(resolved.path / "config.json", resolved.name)
    family = registry.family_of(resolved.info, config)
    variant = settings.variant() if settings is not None else variant  # the server: the request's variant
    registry.check_model(resolved.name, task, family, config, variant, (resolved.path / "modules.json").is_file())
    generation = read_json(resolved.path / "generation_config.json")
    if settings is not None:
        settings.validate(generation)
    return Prepared(resolved, task, config, generation, family, variant)


def read_config(path: Path, name: str) -> dict:
    """config.json, which says what the model is: a file there that is not a JSON object (a download cut
    short, a damaged cache) is said to be so, not taken for a model of some other kind."""
    config = read_json(path)
    if not config and path.exists():
        raise TfxError(f"{name}'s config.json is unreadable (not a complete JSON object): the download may have been cut short.", f"Remove it and fetch it again: tfx cache rm {name} && tfx pull {name}.")
    return config


class Loaded:
    """A model ready to run. `model` and `tokenizer` are transformers' objects; where a fast path can do the
    task (`fast`), they are loaded only if something asks for them, so that path never imports transformers."""

    def __init__(self, prepared: Prepared, device: str, load_model: Callable[[], Any], load_tokenizer: Callable[[], Any], fast: Any = None):
        self.prepared, self.device, self.fast = prepared, device, fast
        self._model = self._tokenizer = None
        self._load_model, self._load_tokenizer = load_model, load_tokenizer

    name = property(lambda self: self.prepared.name)
    repo_id = property(lambda self: self.prepared.resolved.repo_id)
    path = property(lambda self: self.prepared.resolved.path)
    family = property(lambda self: self.prepared.family)
    config = property(lambda self: self.prepared.config)
    generation_defaults = property(lambda self: self.prepared.generation_defaults)
    model_type = property(lambda self: self.prepared.model_type)

    @property
    def model(self) -> Any:
        with BUILDING:
            if self._model is None:
                self._model = self._load_model()
        return self._model

    @property
    def tokenizer(self) -> Any:
        with BUILDING:
            if self._tokenizer is None:
                self._tokenizer = self._load_tokenizer()
        return self._tokenizer


# transformers builds models and imports its lazy modules in ways two threads must not do at once (the
# server loads each model on its own thread): one model or tokenizer is built at a time.
BUILDING = threading.RLock()


def load(prepared: Prepared, device: str, dtype: Any, trust_remote_code: bool = False, verbose: bool = False, fast: bool = True) -> Loaded:
    """Build the model on device. fast=False: the settings rule out the fast path, so its weights are not read."""
    import torch  # heavy: only when a model is really needed

    torch.set_grad_enabled(False)
    started = time.monotonic()
    log.info("loading %s from %s on %s (%s)", prepared.name, prepared.resolved.path, device, str(dtype).replace("torch.", ""))
    if fast and prepared.task == "generate" and device == "cpu" and dtype == torch.float32:
        from tfx.fast import load_fast_generate

        fast = load_fast_generate(prepared.resolved.path, prepared.name, prepared.family, prepared.config, prepared.generation_defaults)
    else:
        fast = None
    loaded = Loaded(
        prepared, device,
        load_model=lambda: _load_model(prepared, device, dtype, trust_remote_code, verbose),
        load_tokenizer=lambda: _load_tokenizer(prepared, trust_remote_code, verbose),
        fast=fast,
    )  # fmt: skip
    if loaded.fast is None:
        loaded.tokenizer, loaded.model  # noqa: B018 - load now, so a bad model fails before any record is read
    log.info("loaded %s in %.2f s", prepared.name, time.monotonic() - started)
    return loaded


def check_remote_code(prepared: Prepared, trust_remote_code: bool) -> None:
    """A model whose code transformers does not ship runs code from its repository: only when allowed.
    Decided from its config (auto_map and an unknown model_type), before transformers would refuse."""
    from transformers import CONFIG_MAPPING

    if prepared.config.get("auto_map") and prepared.model_type not in CONFIG_MAPPING and not trust_remote_code:
        raise TfxError(f"{prepared.name} runs custom code from its repository.", "Read that code, then pass --trust-remote-code to allow it.")


def load_tokenizer(prepared: Prepared, trust_remote_code: bool = False, verbose: bool = False):
    """transformers' tokenizer alone, without the model (the server renders chat templates with it)."""
    return _load_tokenizer(prepared, trust_remote_code, verbose)


def _load_tokenizer(prepared: Prepared, trust_remote_code: bool, verbose: bool):
    import transformers

    quiet_libraries(verbose)
    check_remote_code(prepared, trust_remote_code)
    with about(model=prepared.name):
        return transformers.AutoTokenizer.from_pretrained(prepared.resolved.path, trust_remote_code=trust_remote_code)


def _load_model(prepared: Prepared, device: str, dtype: Any, trust_remote_code: bool, verbose: bool):
    import transformers

    quiet_libraries(verbose)
    check_remote_code(prepared, trust_remote_code)
    if prepared.auto_class in (registry.SENTENCE_TRANSFORMER, registry.CROSS_ENCODER):
        return _load_sentence_model(prepared, device, dtype, trust_remote_code, verbose)
    auto_class = getattr(transformers, prepared.auto_class)
    try:
        with about(model=prepared.name):
            model = auto_class.from_pretrained(prepared.resolved.path, dtype=dtype, trust_remote_code=trust_remote_code)
    except ValueError as exc:  # the Auto class has no head of this kind for the model's config class
        raise TaskMismatch(f"{prepared.name} cannot be loaded for {prepared.task} ({prepared.auto_class}): {first_line(exc)}", "Check the model name and task.") from None
    model.to(device)
    model.eval()
    return model


def _load_sentence_model(prepared: Prepared, device: str, dtype: Any, trust_remote_code: bool, verbose: bool):
    """embed and rank: sentence-transformers' SentenceTransformer (its modules.json decides pooling and
    normalisation; a plain transformers model gets mean pooling) or CrossEncoder, from the local snapshot."""
    import sentence_transformers

    logging.getLogger("sentence_transformers").setLevel(logging.INFO if verbose else logging.ERROR)
    cls = getattr(sentence_transformers, prepared.auto_class)
    with about(model=prepared.name):
        model = cls(str(prepared.resolved.path), device=device, trust_remote_code=trust_remote_code, local_files_only=True, model_kwargs={"dtype": dtype})
    model.eval()
    return model


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
