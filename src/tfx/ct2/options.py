"""The explicit mapping from a generation config (the model's generation_config.json, the task's own
parameters, then what the user set) to CTranslate2's decoding options. Pure Python, no import of
ctranslate2: `plan` decides before anything is loaded whether CTranslate2 can give transformers' result,
and raises Unsupported naming the setting where it cannot (--backend auto then falls back).

What differs by default and is set here: CTranslate2's translate default is 2 beams (transformers': 1);
its lengths count differently (see runner); transformers samples from the top 50 tokens unless told
otherwise (CTranslate2: top 1); several EOS ids become `end_token`; a forced first token becomes the
target prefix; bad_words_ids become suppressed sequences."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tfx.ct2 import Unsupported

# Keys that do not change the decoded tokens (or only matter with an assistant model).
IGNORED = {
    "transformers_version", "_from_model_config", "_commit_hash", "pad_token_id", "bos_token_id", "decoder_start_token_id",
    "use_cache", "return_dict_in_generate", "output_scores", "output_logits", "output_attentions", "output_hidden_states",
    "cache_implementation", "cache_config", "is_assistant", "num_assistant_tokens", "num_assistant_tokens_schedule",
    "assistant_confidence_threshold", "prompt_lookup_num_tokens", "max_matching_ngram_size", "dola_layers",
    "early_stopping", "streamer", "max_time",
}  # fmt: skip
# Keys CTranslate2 has no equivalent for: allowed only at the value that turns them off.
NEUTRAL = {
    "diversity_penalty": 0.0, "num_beam_groups": 1, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0, "renormalize_logits": False,
    "remove_invalid_values": False, "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "forced_decoder_ids": None, "sequence_bias": None, "guidance_scale": None,
    "low_memory": None, "constraints": None, "force_words_ids": None, "min_p": None, "stop_strings": None,
    "token_healing": False, "watermarking_config": None, "penalty_alpha": None, "top_k_hidden": None,
}  # fmt: skip
MAPPED = {
    "max_new_tokens", "max_length", "min_new_tokens", "min_length", "do_sample", "temperature", "top_k", "top_p",
    "num_beams", "num_return_sequences", "repetition_penalty", "no_repeat_ngram_size", "length_penalty",
    "eos_token_id", "forced_bos_token_id", "forced_eos_token_id", "bad_words_ids",
}  # fmt: skip
TRANSFORMERS_TOP_K = 50  # GenerationConfig's top_k when sampling and nobody set one


@dataclass
class Plan:
    seq2seq: bool
    beams: int = 1
    n: int = 1
    sampling: bool = False
    top_k: int = 1
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    end_ids: list[int] = field(default_factory=list)
    forced_bos: int | None = None
    forced_eos: bool = False
    suppress: list[list[int]] = field(default_factory=list)
    max_new: int | None = None
    max_length: int | None = None
    min_new: int | None = None
    min_length: int = 0

    @property
    def penalties(self) -> bool:
        return self.repetition_penalty != 1.0 or self.no_repeat_ngram_size > 0

    def budget(self, width: int) -> tuple[int, int]:
        """(most, fewest) new tokens for a batch whose longest input is `width` tokens, as generate() counts:
        decoder-only max_length/min_length include the (padded) prompt; encoder-decoder ones count the
        decoder's start token."""
        offset = 1 if self.seq2seq else width
        most = self.max_new if self.max_new is not None else (self.max_length or 20) - offset
        fewest = self.min_new if self.min_new is not None else max(self.min_length - offset, 0)
        return most, fewest


def plan(family_seq2seq: bool, defaults: dict[str, Any], kwargs: dict[str, Any], config: dict[str, Any]) -> Plan:
    """The decoding plan for generate(**kwargs) on a model with these generation defaults, or Unsupported."""
    merged = {**{k: v for k, v in defaults.items() if v is not None}, **{k: v for k, v in kwargs.items() if v is not None}}
    for key, value in merged.items():
        if key in IGNORED or key in MAPPED:
            continue
        if key in NEUTRAL:
            if value != NEUTRAL[key] and value not in (None, [], {}):
                raise Unsupported(f"the ct2 backend has no equivalent of the generation setting {key}={value!r}")
            continue
        raise Unsupported(f"the ct2 backend does not know the generation setting {key}={value!r}")
    p = Plan(seq2seq=family_seq2seq)
    p.sampling = bool(merged.get("do_sample"))
    p.beams = int(merged.get("num_beams") or 1)
    p.n = int(merged.get("num_return_sequences") or 1)
    if p.sampling and p.beams > 1:
        raise Unsupported("the ct2 backend does not sample inside a beam search (--do-sample with --num-beams)")
    if p.sampling:
        top_k = merged.get("top_k", TRANSFORMERS_TOP_K)
        p.top_k = int(top_k) if top_k is not None else TRANSFORMERS_TOP_K  # 0: the whole vocabulary, as in CTranslate2
        p.top_p = float(merged.get("top_p") or 1.0)
        p.temperature = float(merged.get("temperature") or 1.0)
    p.repetition_penalty = float(merged.get("repetition_penalty") or 1.0)
    p.no_repeat_ngram_size = int(merged.get("no_repeat_ngram_size") or 0)
    if not p.seq2seq and p.no_repeat_ngram_size == 1:
        # generate() bans every token of the left-padded batch, padding (= EOS for GPT-2) included
        raise Unsupported("the ct2 backend does not reproduce --no-repeat-ngram-size 1 on padded batches")
    if p.beams > 1 and (p.repetition_penalty != 1.0 or (p.no_repeat_ngram_size and not p.seq2seq)):
        raise Unsupported("the ct2 backend's beam search applies --repetition-penalty and prompt n-gram bans differently")
    p.length_penalty = float(merged.get("length_penalty", 1.0))
    eos = merged.get("eos_token_id", config.get("eos_token_id"))
    p.end_ids = [] if eos is None else [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]
    forced_bos = merged.get("forced_bos_token_id")
    forced_eos = merged.get("forced_eos_token_id")
    if not p.seq2seq and (forced_bos is not None or forced_eos is not None):
        raise Unsupported("the ct2 backend forces first or last tokens only for encoder-decoder models")
    p.forced_bos = int(forced_bos) if forced_bos is not None else None
    forced = [forced_eos] if isinstance(forced_eos, int) else list(forced_eos or [])
    if forced and not set(forced) <= set(p.end_ids):
        raise Unsupported(f"the ct2 backend cannot force {forced_eos} as the last token: it is not an EOS id")
    p.forced_eos = bool(forced)
    p.suppress = [list(map(int, seq)) for seq in merged.get("bad_words_ids") or []]
    p.max_new = merged.get("max_new_tokens")
    p.max_length = merged.get("max_length")
    p.min_new = merged.get("min_new_tokens")
    p.min_length = int(merged.get("min_length") or 0)
    return p
