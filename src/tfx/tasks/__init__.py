"""One module per task. Each task turns a batch of input texts into result dataclasses (tfx.results);
none prints. `open_task` is the load sequence every engine and the server share."""

from __future__ import annotations

import importlib
from typing import Any

from tfx.spec import RunSpec, Settings

# task name -> (module, class): importing this package loads no model and no torch.
TASK_CLASSES = {
    "generate": ("tfx.tasks.generate", "Generate"),
    "fill-mask": ("tfx.tasks.fill_mask", "FillMask"),
    "translate": ("tfx.tasks.seq2seq", "Translate"),
    "summarize": ("tfx.tasks.seq2seq", "Summarize"),
    "classify": ("tfx.tasks.classify", "Classify"),  # also zero-shot (--labels)
    "ner": ("tfx.tasks.ner", "Ner"),
    "qa": ("tfx.tasks.qa", "Qa"),
    "embed": ("tfx.tasks.embed", "Embed"),
    "rank": ("tfx.tasks.rank", "Rank"),
}


def task_class(name: str):
    module, cls = TASK_CLASSES[name]
    return getattr(importlib.import_module(module), cls)


def make_task(name: str, loaded, settings: Settings):
    return task_class(name)(loaded, settings)


def default_batch_size(name: str, device: str) -> int:
    """The batch size a task chooses on `device`, without a model (it depends on the device alone)."""
    return task_class(name).default_batch_size(device)


def open_task(spec: RunSpec, device: str | None = None, prepared: Any = None):
    """The one load sequence: resolve and check (unless `prepared` is given), pick the device and dtype,
    load, build the task. Returns the task; its `loaded` holds the model."""
    from tfx import devices, loading

    prepared = prepared or loading.prepare(spec.model, spec.task, spec.settings, spec.revision)
    if getattr(spec, "backend", "transformers") != "transformers":  # ct2, onnx, or auto: one of them or None
        task = open_backend(spec, prepared, device)
        if task is not None:
            return task
    device = devices.pick_device(device or spec.device)
    dtype = devices.pick_dtype(spec.dtype, device)
    loaded = load_model(prepared, "transformers", device, dtype, spec.trust_remote_code, spec.verbose, settings=spec.settings)
    return make_task(spec.task, loaded, spec.settings)


def load_model(prepared: Any, backend: str, device: str, dtype: Any, trust_remote_code: bool = False, verbose: bool = False, compute_type: str = "auto", settings: Settings | None = None):
    """The one load decision for a prepared model (open_task's and `tfx serve`'s): CTranslate2's converted
    model (backend "ct2"), else transformers, with the fast GPT-2 path's weights where the settings can take
    it. settings None: a server's model, which serves every request's settings, so a generate model loads
    them wherever the path applies (loading.load decides by device, dtype and family)."""
    if backend == "ct2":
        from tfx.tasks.ct2 import load_ct2

        return load_ct2(prepared, device, compute_type, trust_remote_code, verbose)
    from tfx import loading

    fast = prepared.task == "generate" if settings is None else takes_fast(prepared.task, settings)
    return loading.load(prepared, device, dtype, trust_remote_code, verbose, fast=fast)


ONNX_TASKS = ("classify", "ner", "qa", "embed", "rank", "fill-mask")  # the encoder tasks tfx.tasks.onnx runs


def open_backend(spec: RunSpec, prepared: Any, device: str | None = None):
    """The task on spec.backend: ct2 (tfx.tasks.ct2: generate, translate, summarize), onnx (tfx.tasks.onnx:
    the encoder tasks), or auto: whichever of the two runs this task, at float32 unless --compute-type says
    otherwise, converting on first use; None (transformers runs it) where auto finds neither applies. An
    explicit --dtype keeps auto on transformers (the other backends take --compute-type)."""
    if spec.backend == "auto" and spec.dtype != "auto":
        return None
    if spec.backend == "onnx" or (spec.backend == "auto" and spec.task in ONNX_TASKS):
        from tfx.tasks.onnx import open_onnx

        return open_onnx(spec, prepared, device)
    from tfx.tasks.ct2 import open_ct2

    return open_ct2(spec, prepared, device)


def uses_fast(spec: RunSpec) -> bool:
    """Whether a run with these settings can take the fast GPT-2 path, so its weights are worth loading."""
    return takes_fast(spec.task, spec.settings)


def takes_fast(task: str, settings: Settings) -> bool:
    if task != "generate":
        return False
    from tfx.fast.runner import FastPath

    return FastPath.takes(settings.generate_kwargs())
