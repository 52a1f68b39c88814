"""Which backend runs a model on the server (`tfx serve --backend transformers|ct2|onnx|auto`): transformers,
CTranslate2 for the models and tasks the ct2 backend runs (tfx.ct2.MODEL_TYPES: generate on GPT-2, translate
and summarize on T5, BART, Marian), or ONNX Runtime for the encoder tasks tfx.tasks.onnx runs (classify, ner,
fill-mask, embed, rank); auto takes either where it applies, at float32 unless --compute-type says
otherwise. Every other model and task on that server keeps using transformers. A ct2 or onnx slot holds the
converted model (tasks.ct2.load_ct2, tasks.onnx.load_onnx) and builds that backend's tasks on it.

Settings CTranslate2 cannot run with transformers' result are found before anything is queued (`route`):
with --engine ct2 they are a 400 naming the setting; with --engine auto that request runs on the same model
under transformers (a slot of its own), noted once in the log."""

from __future__ import annotations

import logging
from typing import Any

from tfx import loading
from tfx.serve.config import Settings
from tfx.tasks import load_model, make_task

log = logging.getLogger("tfx")
ENGINES = ("local", "ct2", "onnx", "auto")
CT2, ONNX, TRANSFORMERS = "ct2", "onnx", "transformers"


class Backends:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = settings.engine
        self._check_tokenizers: dict[str, Any] = {}  # snapshot path -> a tokenizer for settings checks only
        self._noted: set[tuple[str, str]] = set()
        self.onnx = self.engine in (ONNX, "auto") and self._onnx_installed()
        if self.engine == ONNX:
            self.engine = "local"  # ct2 is not asked for; the encoder tasks go to onnx (`of`)
        if self.engine != "local":
            from tfx import ct2

            try:
                ct2.require()
            except ct2.Unsupported:
                if self.engine == "ct2":
                    raise
                log.warning("--engine auto: ctranslate2 is not installed, every model runs on transformers")
                self.engine = "local"
            else:
                ct2.pick_compute_type(settings.compute_type, ct2.pick_device(settings.device)[0])  # a bad value fails at start

    def _onnx_installed(self) -> bool:
        from tfx import onnx

        try:
            onnx.require()
        except onnx.Unsupported:
            if self.settings.engine == ONNX:
                raise
            log.warning("--backend auto: onnxruntime is not installed, the encoder tasks run on transformers")
            return False
        return True

    def compute_type(self, backend: str) -> str:
        """auto runs the exact kind (float32) unless --compute-type says otherwise; ct2 alone means int8 on CPU."""
        if self.settings.compute_type == "auto" and (self.settings.engine == "auto" or backend == ONNX):
            return "float32"
        return self.settings.compute_type

    def of(self, prepared: loading.Prepared) -> str:
        """The backend a model runs on for its task, before any request's settings."""
        if self.onnx:
            from tfx import onnx
            from tfx.tasks import ONNX_TASKS

            if prepared.task in ONNX_TASKS:
                try:
                    onnx.head_of(prepared.task, prepared.variant)
                    return ONNX
                except onnx.Unsupported:
                    pass
        if self.engine == "local":
            return TRANSFORMERS
        from tfx import ct2
        from tfx.tasks.ct2 import check_model

        try:
            check_model(prepared)
        except ct2.Unsupported:
            return TRANSFORMERS
        return CT2

    def preferred(self, config: dict, tasks: tuple[str, ...]) -> list[str]:
        """Tasks in the order -m tries them: with ct2, those CTranslate2 runs for this model first, so the
        model loaded at start is the one that will serve them."""
        if self.engine == "local":
            return list(tasks)
        from tfx import ct2

        runs = ct2.MODEL_TYPES.get(config.get("model_type", ""), ())
        return sorted(tasks, key=lambda task: task not in runs)

    def route(self, prepared: loading.Prepared, wanted) -> str:
        """The backend for one request: ct2 where the model's backend is ct2 and it runs these settings exactly."""
        backend = self.of(prepared)
        if backend != CT2 or wanted is None:
            return backend
        from tfx import ct2
        from tfx.tasks.ct2 import check_settings, ct2_tokenizer

        key = str(prepared.resolved.path)
        tokenizer = self._check_tokenizers.get(key)
        if tokenizer is None:
            tokenizer = self._check_tokenizers[key] = ct2_tokenizer(prepared)
        try:
            check_settings(prepared, prepared.task, wanted, tokenizer)
        except ct2.Unsupported as exc:
            if self.engine == CT2:
                raise
            if (key, exc.message) not in self._noted:
                self._noted.add((key, exc.message))
                log.warning("--engine auto: %s runs on transformers for this request (%s)", prepared.name, exc.message)
            return TRANSFORMERS
        return CT2

    def load(self, prepared: loading.Prepared, backend: str, device: str, dtype) -> loading.Loaded:
        """Through tasks.load_model, the load decision `tfx TASK` makes too (the fast path's weights included)."""
        s = self.settings
        if backend == ONNX:
            from tfx.tasks.onnx import load_onnx

            return load_onnx(prepared, self.compute_type(ONNX), s.trust_remote_code)
        where = s.device if backend == CT2 else device  # ct2 picks its own device from the option
        return load_model(prepared, backend, where, dtype, s.trust_remote_code, s.verbose, self.compute_type(backend))

    def make_task(self, backend: str, name: str, loaded: loading.Loaded, settings):
        if backend == ONNX:
            from tfx.tasks.onnx import onnx_tasks

            return onnx_tasks()[name](loaded, settings)
        if backend == CT2:
            from tfx.tasks.ct2 import CT2_TASKS

            return CT2_TASKS[name](loaded, settings)
        return make_task(name, loaded, settings)
