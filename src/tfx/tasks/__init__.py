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
    if getattr(spec, "backend", "transformers") != "transformers":  # CTranslate2 (tfx.tasks.ct2), or auto
        from tfx.tasks.ct2 import open_ct2

        task = open_ct2(spec, prepared, device)
        if task is not None:
            return task
        spec = spec.replace(dtype="auto") if spec.backend == "auto" else spec
    device = devices.pick_device(device or spec.device)
    dtype = devices.pick_dtype(spec.dtype, device)
    loaded = loading.load(prepared, device, dtype, spec.trust_remote_code, spec.verbose, fast=uses_fast(spec))
    return make_task(spec.task, loaded, spec.settings)


def uses_fast(spec: RunSpec) -> bool:
    """Whether a run with these settings can take the fast GPT-2 path, so its weights are worth loading."""
    if spec.task != "generate":
        return False
    from tfx.fast.runner import FastPath

    return FastPath.takes(spec.settings.generate_kwargs())
