"""Greedy decoding for GPT-2-family models with its own forward pass, reading `model.safetensors` directly.

Why not `model.generate`: on a CPU, decoding is a string of matrix-vector products (batch 1, bound by
memory bandwidth) or skinny matrix products (a batch), and transformers spends a sizable share of each
step elsewhere: a KV cache grown by concatenation, generic generation bookkeeping, and weight layouts
(GPT-2's Conv1D `x @ W`) that the BLAS serves slowly for these shapes. Here:

- every projection is stored as `[out, in]` and computed as `W @ x.T`, which MKL streams at 70-85 % of
  the memory's read rate for 2-4 rows (a single row is duplicated: MKL's one-row kernels read ~2x slower);
- the KV cache is allocated once, for the prompt plus the new tokens, and written in place;
- the vocabulary projection runs on the last position only.

The arithmetic is GPT-2's own (same ops, same order, fp32), and the loop keeps `generate`'s rules:
left padding with positions counted from each row's first real token, EOS ends a row (later tokens are
the pad id), and the batch stops when every row has ended or the budget is spent."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

# config.json values this implementation computes exactly; anything else falls back to transformers.
_REQUIRED = {
    "model_type": "gpt2",
    "add_cross_attention": False,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "tie_word_embeddings": True,
}
_ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}
# generation_config.json keys that change nothing in greedy decoding here, whatever their value.
_HARMLESS_GENERATION = {
    "_from_model_config", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id",
    "max_length", "max_new_tokens", "use_cache", "do_sample", "num_beams", "num_return_sequences",
    "temperature", "top_k", "top_p", "output_scores", "return_dict_in_generate", "output_attentions",
    "output_hidden_states", "output_logits",
}  # fmt: skip
# Keys whose value here leaves greedy decoding as it is (transformers' own neutral values). Any other key
# is judged by its value too: unset (None, false, empty) is harmless, anything else is not.
_NEUTRAL_GENERATION = {
    "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0,
    "min_new_tokens": 0, "num_beam_groups": 1, "diversity_penalty": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0, "early_stopping": False,
    "renormalize_logits": False, "remove_invalid_values": False, "min_p": None, "top_h": None,
}  # fmt: skip
_LINEAR_ROWS = 64  # up to this many rows (a decode step's batch), W @ x.T beats F.linear; beyond, F.linear


def unsupported_reason(path: Path, config: dict[str, Any], generation: dict[str, Any]) -> str | None:
    """None when this module computes what transformers' GPT2LMHeadModel.generate would, greedily."""
    for key, value in _REQUIRED.items():
        if config.get(key, value) != value:
            return f"config {key}={config.get(key)!r}"
    if config.get("activation_function", "gelu_new") not in _ACTIVATIONS:
        return f"activation {config.get('activation_function')}"
    if not (path / "model.safetensors").is_file():
        return "no single model.safetensors"
    extra = sorted(k for k, v in generation.items() if k not in _HARMLESS_GENERATION and not _neutral(k, v))
    if extra:
        return f"generation_config sets {extra}"
    if generation.get("do_sample") or (generation.get("num_beams") or 1) > 1:
        return "the model's generation_config samples or uses beams"
    return None


def _neutral(key: str, value: Any) -> bool:
    if key in _NEUTRAL_GENERATION:
        return value is None or value == _NEUTRAL_GENERATION[key]
    return value is None or value is False or value == [] or value == {}


_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def read_safetensors(path: Path, transposed: Callable[[str], bool]) -> dict[str, Any]:
    """Every tensor of a .safetensors file in its own memory, fp32; those `transposed(name)` picks are
    stored transposed ([in, out] -> [out, in]). Plain reads into the final tensors, no mmap and no
    per-tensor temporaries (freed temporaries fragment the heap: ~120 MB of RSS for GPT-2 small)."""
    import torch

    with open(path, "rb", buffering=0) as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        base = 8 + size
        for name, info in header.items():
            if info["dtype"] not in _DTYPES:
                raise ValueError(f"unsupported tensor type {info['dtype']} for {name}")
        scratch_bytes = max((e - s for n, i in header.items() for s, e in [i["data_offsets"]] if transposed(n) or i["dtype"] != "F32"), default=0)
        scratch = torch.empty(scratch_bytes, dtype=torch.uint8)
        tensors = {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            start, end = info["data_offsets"]
            shape = info["shape"]
            direct = not transposed(name) and info["dtype"] == "F32"
            target = torch.empty(shape, dtype=torch.float32) if direct else scratch[: end - start]
            f.seek(base + start)
            view, done = memoryview(target.view(torch.uint8).reshape(-1).numpy()), 0
            while done < end - start:
                n = f.readinto(view[done:])
                if not n:
                    raise ValueError(f"{path.name} is truncated")
                done += n
            if not direct:
                source = target.view(getattr(torch, _DTYPES[info["dtype"]])).reshape(shape)
                if transposed(name):
                    source = source.t()
                target = torch.empty(source.shape, dtype=torch.float32)
                target.copy_(source)
            tensors[name] = target
        del scratch
    return tensors


class GPT2Greedy:
    def __init__(self, config: dict[str, Any], weights: dict[str, Any]):
        self.n_layer = config.get("n_layer", 12)
        self.n_head = config.get("n_head", 12)
        self.n_embd = config.get("n_embd", 768)
        self.n_positions = config.get("n_positions", 1024)
        self.eps = config.get("layer_norm_epsilon", 1e-5)
        self.approximate = _ACTIVATIONS[config.get("activation_function", "gelu_new")]
        w = weights
        self.wte, self.wpe = w["wte.weight"], w["wpe.weight"]
        self.ln_f = (w["ln_f.weight"], w["ln_f.bias"])
        self.layers = []
        for i in range(self.n_layer):
            p = f"h.{i}."
            self.layers.append(
                tuple(
                    w[p + k]
                    for k in (
                        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                        "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                        "mlp.c_proj.weight", "mlp.c_proj.bias",
                    )
                )
            )  # fmt: skip

    @classmethod
    def load(cls, path: Path, config: dict[str, Any]) -> GPT2Greedy:
        def conv1d(name: str) -> bool:  # GPT-2's Conv1D stores [in, out]; the decoder wants [out, in]
            return name.endswith(".weight") and (".attn.c_" in name or ".mlp.c_" in name)

        raw = read_safetensors(path / "model.safetensors", conv1d)
        weights = {k.removeprefix("transformer."): v for k, v in raw.items()}
        if "lm_head.weight" in weights and weights["lm_head.weight"].data_ptr() != weights["wte.weight"].data_ptr():
            import torch

            if not torch.equal(weights["lm_head.weight"], weights["wte.weight"]):
                raise ValueError("untied lm_head")
        return cls(config, weights)

    @property
    def nbytes(self) -> int:
        """Bytes of weights one decode step reads (every projection and the vocabulary matrix)."""
        total = self.wte.numel() * 4
        for layer in self.layers:
            total += sum(t.numel() * 4 for t in layer)
        return total

    # ---- the forward pass ----------------------------------------------------------------------------

    @staticmethod
    def _project(x, weight, bias):
        """x [M, in] -> x @ weight.T + bias, computed as weight @ x.T: with the weight as MKL's left operand
        it streams a decode step's skinny products faster than F.linear does (see bench/RESULTS.md)."""
        import torch

        rows = x.shape[0]
        if rows > _LINEAR_ROWS:
            return torch.nn.functional.linear(x, weight, bias)
        if rows == 1:  # a real copy: a stride-0 (expanded) operand sends MKL down a slow path
            y = torch.mm(weight, x.repeat(2, 1).t())[:, :1]
        elif bias is not None:
            y = torch.addmm(bias.unsqueeze(1), weight, x.t())
            return y.t().contiguous()
        else:
            return torch.mm(weight, x.t()).t().contiguous()
        return y.t() + bias if bias is not None else y.t()

    def _forward(self, ids, positions, start: int, mask, cache_k, cache_v):
        """Hidden state after ln_f at each row's last position; ids/positions [B, T] go to cache slots
        start..start+T. mask: [B, 1, T, start+T] bool (True = may attend) for a prompt; for one new token,
        an additive [B, 1, 1, start+1] float mask, or None when every position may be attended."""
        import torch
        import torch.nn.functional as F

        batch, width = ids.shape
        heads, dim = self.n_head, self.n_embd // self.n_head
        end = start + width
        scale = 1.0 / dim**0.5
        x = (F.embedding(ids, self.wte) + F.embedding(positions, self.wpe)).view(batch * width, self.n_embd)
        for i, (ln1w, ln1b, qkvw, qkvb, ow, ob, ln2w, ln2b, fcw, fcb, pw, pb) in enumerate(self.layers):
            a = F.layer_norm(x, (self.n_embd,), ln1w, ln1b, self.eps)
            qkv = self._project(a, qkvw, qkvb).view(batch, width, 3, heads, dim)
            q = qkv[:, :, 0].transpose(1, 2)
            cache_k[i][:, :, start:end].copy_(qkv[:, :, 1].transpose(1, 2))
            cache_v[i][:, :, start:end].copy_(qkv[:, :, 2].transpose(1, 2))
            if width == 1:  # one query: four small ops cost less than SDPA's CPU kernel (~1.5 ms a call)
                scores = torch.matmul(q, cache_k[i][:, :, :end].transpose(-1, -2)).mul_(scale)
                if mask is not None:
                    scores.add_(mask)
                a = torch.matmul(torch.softmax(scores, dim=-1), cache_v[i][:, :, :end])
            else:
                a = F.scaled_dot_product_attention(q, cache_k[i][:, :, :end], cache_v[i][:, :, :end], attn_mask=mask)
            a = a.transpose(1, 2).reshape(batch * width, self.n_embd)
            x = x + self._project(a, ow, ob)
            m = F.layer_norm(x, (self.n_embd,), ln2w, ln2b, self.eps)
            m = F.gelu(self._project(m, fcw, fcb), approximate=self.approximate)
            x = x + self._project(m, pw, pb)
        last = x.view(batch, width, self.n_embd)[:, -1]
        return F.layer_norm(last, (self.n_embd,), self.ln_f[0], self.ln_f[1], self.eps)

    def _next_tokens(self, hidden):
        return self._project(hidden, self.wte, None).contiguous().argmax(dim=-1)

    # ---- greedy decoding -----------------------------------------------------------------------------

    def generate(self, input_ids, attention_mask, max_new_tokens: int, eos_token_ids: list[int], pad_token_id: int | None, on_token: Callable[[int], None] | None = None, stop: Callable[[], bool] | None = None):
        """[B, T] left-padded prompts -> [B, T + n] sequences, n <= max_new_tokens, as generate() returns them.
        stop: asked after every token; True ends the generation there (nobody wants the rest)."""
        import torch

        with torch.inference_mode():
            batch, width = input_ids.shape
            total = width + max_new_tokens
            if total > self.n_positions:
                raise ValueError(f"{total} positions exceed the model's {self.n_positions}")
            dim = self.n_embd // self.n_head
            cache_k = torch.empty(self.n_layer, batch, self.n_head, total, dim)
            cache_v = torch.empty(self.n_layer, batch, self.n_head, total, dim)
            valid = torch.ones(batch, total, dtype=torch.bool)
            valid[:, :width] = attention_mask.bool()
            positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
            causal = torch.ones(width, width, dtype=torch.bool).tril()
            # A padding query may attend to itself only: a row with nothing to attend to would give NaN.
            mask = (causal & valid[:, None, :width]) | torch.eye(width, dtype=torch.bool)
            hidden = self._forward(input_ids, positions, 0, mask[:, None] if width > 1 else None, cache_k, cache_v)
            tokens = self._next_tokens(hidden)
            eos = torch.tensor(eos_token_ids or [], dtype=torch.long)
            unfinished = torch.ones(batch, dtype=torch.bool)
            out = torch.empty(batch, max_new_tokens, dtype=torch.long)
            step_pos = positions[:, -1:]
            bias = None if bool(valid.all()) else torch.zeros(batch, 1, 1, total).masked_fill_(~valid[:, None, None, :], float("-inf"))
            n = 0
            while True:
                if pad_token_id is not None:
                    tokens = torch.where(unfinished, tokens, pad_token_id)
                out[:, n] = tokens
                n += 1
                if on_token is not None:
                    on_token(int(tokens[0]))
                if len(eos):
                    unfinished &= ~torch.isin(tokens, eos)
                if n == max_new_tokens or not bool(unfinished.any()) or (stop is not None and stop()):
                    break
                step_pos = step_pos + 1
                at = width + n - 1
                hidden = self._forward(tokens[:, None], step_pos, at, None if bias is None else bias[..., : at + 1], cache_k, cache_v)
                tokens = self._next_tokens(hidden)
            return torch.cat([input_ids, out[:, :n]], dim=1)
