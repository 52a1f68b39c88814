"""An onnx copy loaded: the onnxruntime session (one intra-op thread per core this process was given), its
tokenizer and the facts recorded at export. `forward(arrays)` -> the graph's one output as a numpy array."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tfx import onnx as backend
from tfx.onnx import text

FACTS = "facts.json"


class Runner:
    def __init__(self, path: Path, quantization: str):
        ort = backend.require()
        self.path = path
        self.facts = json.loads((path / FACTS).read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = backend.threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.quantization = quantization
        self.session = ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = text.Tokenizer(path, self.facts["tokenizer"])
        model_config = self.facts.get("config", {})
        self.config = SimpleNamespace(**model_config)
        if "id2label" in model_config:
            self.config.id2label = {int(k): v for k, v in model_config["id2label"].items()}

    def forward(self, arrays: dict[str, Any]):
        import numpy as np

        feed = {name: np.asarray(arrays[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feed)[0]

    def get_output_embeddings(self) -> None:
        return None  # fill-mask's hook on the vocabulary projection: the graph computes every position

    def __call__(self, **arrays: Any) -> SimpleNamespace:
        """The transformers-model shape the tasks call: model(**inputs).logits."""
        return SimpleNamespace(logits=self.forward(arrays))


# numpy for what torch did after the forward pass (the pipelines' softmax and sigmoid), for every onnx task
def softmax(x, axis: int = -1):
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))


def pad(rows: list[dict[str, list[int]]], names: list[str], tokenizer) -> dict[str, Any]:
    """The model's inputs for rows of an encoding, padded on the tokenizer's side, as int64 arrays."""
    import numpy as np

    width = max(len(r["input_ids"]) for r in rows)
    fill = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id or 0, "attention_mask": 0}
    left = tokenizer.padding_side == "left"
    out = {}
    for name in names:
        array = np.full((len(rows), width), fill.get(name, 0), dtype=np.int64)
        for i, r in enumerate(rows):
            values = r[name]
            if left:
                array[i, width - len(values) :] = values
            else:
                array[i, : len(values)] = values
        out[name] = array
    return out


def embed_rows(runner: Runner, texts: list[str]):
    """Pooled (not normalised) vectors of texts, tokenized the way sentence-transformers does."""
    tok = runner.tokenizer
    enc = tok(texts, truncation="longest_first", max_length=runner.facts["max_seq_length"] or tok.model_max_length)
    return runner.forward(pad([{k: enc[k][i] for k in enc} for i in range(len(texts))], runner.inputs, tok))
