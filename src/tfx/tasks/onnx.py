"""The encoder tasks on the ONNX Runtime backend (`--backend onnx`, or `auto`): the transformers tasks' own
preparation (Encoded's exact-length groups, truncation, the zero-shot hypotheses, ner's aggregation, fill-mask's
windows, qa's strided windows and span search) with onnxruntime computing and numpy doing what torch did after
it (softmax, sigmoid, top-k), so a run on a converted copy imports neither torch nor transformers. `open_onnx` is open_task's branch for them; with
backend "auto" a model the backend cannot run is noted on stderr and left to transformers (it returns None)."""

from __future__ import annotations

import time
from typing import Any

from tfx import copies, loading
from tfx import onnx as backend
from tfx.results import FillMaskResult
from tfx.onnx.runner import sigmoid, softmax
from tfx.tasks.base import log
from tfx.tasks.classify import Classify, Encoded
from tfx.tasks.fill_mask import FillMask
from tfx.tasks.ner import Ner
from tfx.tasks.qa import Qa


def _inputs(batch: Encoded, group: list[int], tokenizer) -> dict[str, Any]:
    from tfx.onnx.runner import pad

    return pad([batch.rows[i] for i in group], batch.names, tokenizer)


class OnnxClassify(Classify):
    def _group_scores(self, batch: Encoded, group: list[int], function: str) -> list[list[float]]:
        logits = self.model.forward(_inputs(batch, group, self.tokenizer))
        if function == "softmax":
            logits = softmax(logits)
        elif function == "sigmoid":
            logits = sigmoid(logits)
        return logits.tolist()

    def _entailment(self, rows: list[list[float]], texts: int, n: int) -> list[list[float]]:
        import numpy as np

        grid = np.asarray(rows, dtype=np.float32).reshape(texts, n, -1)
        if self.multi_label:
            return softmax(grid[..., [self.contradiction, self.entail]])[..., 1].tolist()
        return softmax(grid[..., self.entail]).tolist()


class OnnxNer(Ner):
    def scores(self, batch: Encoded, group: list[int], wide: bool):
        probs = softmax(self.model.forward(_inputs(batch, group, self.tokenizer)))
        return probs, probs.max(axis=-1), probs.argmax(axis=-1)


class OnnxFillMask(FillMask):
    def run(self, texts: list[str]) -> list[FillMaskResult]:
        import numpy as np

        from tfx.onnx.runner import pad

        ids, cut = self._encode(texts)
        rows = [{"input_ids": r, "attention_mask": [1] * len(r), "token_type_ids": [0] * len(r)} for r in ids]
        arrays = pad(rows, self.model.inputs, self.tokenizer)
        selected = arrays["input_ids"] == self.tokenizer.mask_token_id
        probs = softmax(self.model.forward(arrays)[selected])
        targets = np.asarray(self.target_ids) if self.target_ids is not None else None
        if targets is not None:
            probs = probs[:, targets]
        k = min(self.top_k or 1, probs.shape[-1])
        indices = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        scores = np.take_along_axis(probs, indices, axis=-1)
        if targets is not None:
            indices = targets[indices]
        counts = selected.sum(axis=1).tolist()
        return self._results(texts, counts, cut, scores, indices)


class OnnxQa(Qa):
    def _logits(self, enc):
        """The exported head's (start, end) logits, stacked as the graph's last axis, window_batch windows a run."""
        import numpy as np

        out = [self.model.forward({k: enc[k][at : at + self.window_batch] for k in self.model.inputs})
               for at in range(0, len(enc["input_ids"]), self.window_batch)]  # fmt: skip
        both = np.concatenate(out).astype(np.float32)
        return both[..., 0], both[..., 1]


def onnx_tasks() -> dict[str, type]:
    from tfx.tasks.onnx_sentence import OnnxEmbed, OnnxRank

    return {"classify": OnnxClassify, "ner": OnnxNer, "qa": OnnxQa, "fill-mask": OnnxFillMask, "embed": OnnxEmbed, "rank": OnnxRank}


def converted_path(prepared: loading.Prepared, head: str, quantization: str, trust_remote_code: bool = False):
    """The onnx copy of a prepared model for this head and quantization, exported first if needed."""
    resolved = prepared.resolved
    path = copies.folder("onnx", resolved.repo_id, resolved.path, head, quantization)
    _, commit = copies.source_key(resolved.repo_id, resolved.path)
    meta = {"repo_id": resolved.repo_id, "commit": commit, "version": backend.version(), "quantization": quantization, "head": head, "source": str(resolved.path), "made": time.time()}

    def run_export(tmp):
        from tfx.onnx.export import export

        export(resolved.path, tmp, head, quantization, trust_remote_code)

    return copies.ensure(path, meta, run_export, "onnx", f"ONNX for {head}")


def load_onnx(prepared: loading.Prepared, compute_type: str = "auto", trust_remote_code: bool = False) -> loading.Loaded:
    """The copy (exported first if needed) as a Loaded whose model is the onnxruntime Runner."""
    from tfx.onnx.runner import Runner

    backend.require()
    head = backend.head_of(prepared.task, prepared.variant)
    quantization = backend.pick_compute_type(compute_type)
    path = converted_path(prepared, head, quantization, trust_remote_code)
    started = time.monotonic()
    runner = Runner(path, quantization)
    log.info("loaded %s (onnx, %s) in %.2f s", prepared.name, quantization, time.monotonic() - started)
    return loading.Loaded(prepared, "cpu", load_model=lambda: runner, load_tokenizer=lambda: runner.tokenizer)


def open_onnx(spec, prepared: loading.Prepared, device: str | None = None):
    """The onnx task for spec, or None (backend auto) when transformers must run it; the reason is noted."""
    from tfx.errors import UsageError

    if spec.dtype != "auto":
        raise UsageError(f"--dtype {spec.dtype} applies to the transformers backend.", "With --backend onnx use --compute-type (float32, int8).")
    try:
        backend.require()
        backend.head_of(spec.task, prepared.variant)
        backend.pick_device(device or spec.device)
        compute = "float32" if spec.backend == "auto" and spec.compute_type == "auto" else spec.compute_type
        loaded = load_onnx(prepared, compute, spec.trust_remote_code)
        return onnx_tasks()[spec.task](loaded, spec.settings)
    except backend.Unsupported as exc:
        if spec.backend != "auto":
            raise
        copies.note(f"--backend auto: running transformers ({exc.message})")
        return None
