"""Export one task head of a cached model to ONNX (the only module of tfx.onnx that imports torch,
transformers or sentence-transformers; it runs once per copy, inside tfx.copies.ensure's temporary folder).

torch.onnx.export with dynamo=False (the TorchScript exporter, still in torch 2.13, needs no onnxscript):
transformers 5's encoders trace to a graph with dynamic batch and sequence axes. Before a copy is kept,
`verify` runs it through onnxruntime and tfx's own tokenizer on probe texts (one past the model's limit
among them; for qa also question/context pairs cut into strided windows, whose ids, offsets and sequence ids
must be transformers' own) and compares with the library's result: transformers' logits (qa: start and end,
stacked on a last axis of 2), or SentenceTransformer.encode;
fp32 must agree within 1e-4 or the export is refused (Unsupported) and nothing is kept."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from tfx import onnx as backend
from tfx.onnx import text
from tfx.onnx.runner import FACTS, Runner, embed_rows, pad

log = logging.getLogger("tfx")
TOLERANCE = 1e-4
OPSET = 17
PROBES = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog, twice!",
    "a",
    "Zebra café über ß 123 ?? and something longer to pad the batch out a little further",
]
_AUTO = {"classify": "AutoModelForSequenceClassification", "ner": "AutoModelForTokenClassification", "fill-mask": "AutoModelForMaskedLM",
         "qa": "AutoModelForQuestionAnswering"}  # fmt: skip
PER_TOKEN = ("ner", "fill-mask", "qa")  # heads whose output has a sequence axis


def export(source: Path, out: Path, head: str, quantization: str, trust_remote_code: bool = False) -> None:
    """Write model.onnx (int8: quantized), tokenizer.json and facts.json for `head` into `out`."""
    import torch

    warnings.filterwarnings("ignore")
    for name in ("transformers", "sentence_transformers", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_grad_enabled(False)
    import transformers

    transformers.logging.disable_progress_bar()  # "Loading weights" bars: tfx says it is converting, once
    module, tokenizer, facts, names = _load(source, head, trust_remote_code)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    facts["tokenizer"] = text.facts_of(tokenizer)
    facts["inputs"] = names
    facts["head"] = head
    (out / FACTS).write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")
    enc = tokenizer(PROBES[:2], PROBES[1:3] if head == "qa" else None, padding=True, return_tensors="pt")
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic["output"] = {0: "batch", 1: "sequence"} if head in PER_TOKEN else {0: "batch"}
    fp32 = out / "model.onnx"
    torch.onnx.export(module, tuple(enc[n] for n in names), str(fp32), input_names=names, output_names=["output"],
                      dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)  # fmt: skip
    verify(out, head, source, trust_remote_code)
    if quantization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(out / "model_int8.onnx"), weight_type=QuantType.QInt8)
        (out / "model_int8.onnx").replace(fp32)
    for leftover in out.glob("*.data"):
        raise backend.Unsupported(f"the model's ONNX graph needs external data ({leftover.name}): over 2 GB")


class _Forward:
    """Positional inputs -> one output tensor: the shape torch.onnx traces."""

    def __new__(cls, fn, names: list[str], extra: dict[str, Any] | None = None):
        import torch

        class Module(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, *arrays):
                return fn(self.inner, {**dict(zip(names, arrays)), **(extra or {})})

        return Module


def _input_names(tokenizer, forward_params) -> list[str]:
    names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    return [n for n in names if forward_params is None or n in forward_params]


def _load(source: Path, head: str, trust_remote_code: bool):
    import inspect

    if head in ("embed", "cross-encoder"):
        return _load_sentence(source, head, trust_remote_code)
    import transformers

    model = getattr(transformers, _AUTO[head]).from_pretrained(source, trust_remote_code=trust_remote_code).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    names = _input_names(tokenizer, inspect.signature(model.forward).parameters)
    config = model.config
    facts = {"config": {"id2label": {int(k): v for k, v in config.id2label.items()}, "label2id": dict(config.label2id),
                        "problem_type": config.problem_type, "num_labels": config.num_labels}}  # fmt: skip
    module = _Forward(_outputs(head), names)(model)
    return module, tokenizer, facts, names


def _outputs(head: str):
    """model, inputs -> the one tensor the graph outputs: the logits; qa: start and end on a last axis of 2."""
    import torch

    if head == "qa":
        return lambda m, kw: torch.stack([(out := m(**kw)).start_logits, out.end_logits], dim=-1)
    return lambda m, kw: m(**kw).logits


def _load_sentence(source: Path, head: str, trust_remote_code: bool):
    import sentence_transformers
    from sentence_transformers.base.modules import Normalize

    if head == "cross-encoder":
        model = sentence_transformers.CrossEncoder(str(source), device="cpu", trust_remote_code=trust_remote_code, local_files_only=True)
    else:
        model = sentence_transformers.SentenceTransformer(str(source), device="cpu", trust_remote_code=trust_remote_code, local_files_only=True)
    model.eval()
    modules = list(model.children())
    tokenizer = model.tokenizer
    names = _input_names(tokenizer, None)
    facts: dict[str, Any] = {"max_seq_length": model.max_seq_length, "modules": [type(m).__name__ for m in modules]}
    if head == "cross-encoder":
        facts["num_labels"] = model.num_labels
        facts["activation"] = type(model.activation_fn).__name__  # predict's activation: Sigmoid, Identity, ...
        kept = [m for m in modules if not isinstance(m, Normalize)]
        forward = lambda mods, kw: _run_modules(mods, kw)["scores"]  # noqa: E731
    else:
        facts["normalize"] = any(isinstance(m, Normalize) for m in modules)
        facts["dimension"] = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension()
        facts["prompts"] = dict(model.prompts or {})
        facts["default_prompt_name"] = model.default_prompt_name
        kept = [m for m in modules if not isinstance(m, Normalize)]  # normalised after, in numpy, when asked
        forward = lambda mods, kw: _run_modules(mods, kw)["sentence_embedding"]  # noqa: E731
    import torch

    module = _Forward(forward, names, {"modality": "text"})(torch.nn.ModuleList(kept))
    return module, tokenizer, facts, names


def _run_modules(mods, features: dict[str, Any]) -> dict[str, Any]:
    for m in mods:
        features = m(features)
    return features


def verify(out: Path, head: str, source: Path, trust_remote_code: bool) -> None:
    """The copy's fp32 result on PROBES through tfx's own tokenizer and onnxruntime, against the library's."""
    import numpy as np

    runner = Runner(out, "float32")
    tok = runner.tokenizer
    got, want = _probe(runner, tok, head, source, trust_remote_code)
    worst = max(float(np.max(np.abs(np.asarray(g, dtype=np.float64) - np.asarray(w, dtype=np.float64)))) for g, w in zip(got, want))
    log.info("onnx export of %s (%s): largest difference from the library on the probes %.2e", source, head, worst)
    if not worst <= TOLERANCE:
        raise backend.Unsupported(f"the onnx export of this model differs from its library by {worst:.1e} (over {TOLERANCE})")


def _probe(runner: Runner, tok, head: str, source: Path, trust_remote_code: bool):
    """(ours, theirs) per probe row."""
    import torch

    limit = runner.facts.get("max_seq_length") or tok.model_max_length or 512
    probes = [*PROBES, " ".join(["long"] * (limit + 8))]
    if head == "embed":
        import sentence_transformers

        st = sentence_transformers.SentenceTransformer(str(source), device="cpu", trust_remote_code=trust_remote_code, local_files_only=True)
        theirs = st.encode(probes, normalize_embeddings=False, convert_to_numpy=True, batch_size=len(probes))
        if runner.facts["normalize"]:  # encode applied the model's Normalize module: compare unit vectors
            import numpy as np

            ours = embed_rows(runner, probes)
            return [r / max(np.linalg.norm(r), 1e-12) for r in ours], list(theirs)
        return list(embed_rows(runner, probes)), list(theirs)
    if head == "cross-encoder":
        import sentence_transformers

        ce = sentence_transformers.CrossEncoder(str(source), device="cpu", trust_remote_code=trust_remote_code, local_files_only=True)
        pairs = [(PROBES[0], p) for p in probes]
        theirs = ce.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_numpy=True, batch_size=len(pairs))
        enc = tok([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=limit)
        ours = runner.forward(pad([{k: enc[k][i] for k in enc} for i in range(len(pairs))], runner.inputs, tok))
        return list(ours.reshape(len(pairs), -1)), list(np_reshape(theirs, len(pairs)))
    import transformers

    model = getattr(transformers, _AUTO[head]).from_pretrained(source, trust_remote_code=trust_remote_code).eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    positions = getattr(model.config, "max_position_embeddings", None)
    limit = min(limit, positions) if isinstance(positions, int) and positions > 0 else limit
    output = _outputs(head)
    ours, theirs = [], []
    for p in probes:  # one row at a time: no padding on either side
        enc = ref_tok(p, truncation=True, max_length=limit, return_tensors="pt")
        mine = tok(p, truncation=True, max_length=limit)
        if mine["input_ids"] != enc["input_ids"][0].tolist():
            raise backend.Unsupported("tfx's tokenizer for the onnx copy does not give transformers' ids for this model")
        with torch.inference_mode():
            theirs.append(output(model, dict(enc))[0].float().numpy())
        ours.append(runner.forward(pad([mine], runner.inputs, tok))[0])
    if head == "qa":
        mine, theirs_qa = _qa_windows(runner, ref_tok, model, probes, limit)
        ours, theirs = ours + mine, theirs + theirs_qa
    return ours, theirs


def _qa_windows(runner: Runner, ref_tok, model, probes: list[str], limit: int):
    """Question/context pairs cut into windows with a stride, as qa cuts them: tfx's tokenizer must give
    transformers' windows (ids, offsets, sequence ids, which pair each came from); then each window's logits."""
    import torch

    window = min(limit, 384)
    question_first = ref_tok.padding_side == "right"
    questions = [PROBES[0], PROBES[1], "a"]
    contexts = [probes[-1], PROBES[3], PROBES[1]]
    first, second = (questions, contexts) if question_first else (contexts, questions)
    args = dict(truncation="only_second" if question_first else "only_first", max_length=window, stride=window // 4,
                return_overflowing_tokens=True, return_offsets_mapping=True, padding=True)  # fmt: skip
    ref, mine = ref_tok(first, second, **args), runner.tokenizer(first, second, **args)
    plain = lambda rows: [[tuple(x) if isinstance(x, (list, tuple)) else x for x in r] if isinstance(r, list) else r for r in rows]  # noqa: E731
    for key in ("input_ids", "attention_mask", "offset_mapping", "overflow_to_sample_mapping", *runner.inputs):
        if plain(ref[key]) != plain(mine[key]):
            raise backend.Unsupported(f"tfx's tokenizer for the onnx copy does not give transformers' qa windows ({key}) for this model")
    if any(ref.sequence_ids(i) != mine.sequence_ids(i) for i in range(len(ref["input_ids"]))):
        raise backend.Unsupported("tfx's tokenizer for the onnx copy does not give transformers' sequence ids for this model")
    with torch.inference_mode():
        theirs = _outputs("qa")(model, {k: torch.tensor(ref[k]) for k in runner.inputs}).float().numpy()
    ours = runner.forward({k: mine[k] for k in runner.inputs})
    return list(ours), list(theirs)


def np_reshape(values, rows: int):
    import numpy as np

    return np.asarray(values).reshape(rows, -1)
