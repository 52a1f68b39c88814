"""CTranslate2's Generator and Translator behind the two calls the tasks make, with token ids in and out
(names only at the boundary, through the converted model's own vocabulary).

How the lengths are made to count as generate() counts them (measured on tfx's tiny models):
  * decoder-only, `include_prompt_in_result=False`: each prompt is forwarded, max_length and min_length
    count new tokens only, and mixed lengths are fine, except that a batch whose shortest prompt is one
    token long decodes the others' prompts under constraint and counts them: prompts of one token go in a
    call of their own;
  * the repetition penalty and n-gram bans of transformers see the prompt; CTranslate2's do only when the
    prompt is in the result, so then `include_prompt_in_result=True` and the lengths include the prompt
    (less its first token);
  * encoder-decoder: `max_decoding_length` counts new tokens (max_length less the start token); with
    forced_eos_token_id transformers makes the last allowed token the EOS, so one token fewer is decoded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tfx.ct2 import require, threads
from tfx.ct2.options import Plan


def _vocabulary(path: Path, *names: str) -> list[str]:
    for name in names:
        file = path / name
        if file.is_file():
            return json.loads(file.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"no vocabulary in {path}")


class Runner:
    def __init__(self, path: Path, device: str, device_index: int, compute_type: str, seq2seq: bool, intra_threads: int | None = None):
        ct2 = require()
        self.path, self.seq2seq, self.compute_type = path, seq2seq, compute_type
        cls = ct2.Translator if seq2seq else ct2.Generator
        self.model = cls(
            str(path), device=device, device_index=device_index, compute_type=compute_type,
            inter_threads=1, intra_threads=intra_threads or threads(),
        )  # fmt: skip
        if seq2seq:
            self.source = _vocabulary(path, "shared_vocabulary.json", "source_vocabulary.json")
            self.target = _vocabulary(path, "shared_vocabulary.json", "target_vocabulary.json")
        else:
            self.source = self.target = _vocabulary(path, "vocabulary.json")

    def _tokens(self, ids: list[int], vocab: list[str]) -> list[str]:
        return [vocab[i] for i in ids]

    def _common(self, plan: Plan) -> dict:
        options = dict(
            beam_size=plan.beams, num_hypotheses=plan.n if not plan.sampling else 1, length_penalty=plan.length_penalty,
            repetition_penalty=plan.repetition_penalty, no_repeat_ngram_size=plan.no_repeat_ngram_size,
            return_end_token=True, sampling_topk=plan.top_k if plan.sampling else 1,
            sampling_topp=plan.top_p, sampling_temperature=plan.temperature,
        )  # fmt: skip
        if plan.end_ids:
            options["end_token"] = list(plan.end_ids)
        suppress = [seq for seq in plan.suppress if all(i < len(self.target) for i in seq)]  # others cannot be generated
        if suppress:
            options["suppress_sequences"] = [self._tokens(seq, self.target) for seq in suppress]
        return options

    def _repeat(self, rows: list[list[int]], plan: Plan) -> list[list[int]]:
        """Sampling several sequences: each prompt n times (one hypothesis each), as transformers expands."""
        return [row for row in rows for _ in range(plan.n)] if plan.sampling and plan.n > 1 else rows

    def _group(self, rows: list[list[int]], plan: Plan, hypotheses: Callable[[list[list[int]]], list[list[list[int]]]], key: Callable[[list[int]], int]):
        """Per input row, its n sequences of new ids, calling `hypotheses(rows)` once per group of rows with
        the same key (see the module's note on lengths)."""
        out: list[list[list[int]]] = [[] for _ in rows]
        rows = self._repeat(rows, plan)
        per = plan.n if plan.sampling and plan.n > 1 else 1
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(key(row), []).append(i)
        for indices in groups.values():
            for i, seqs in zip(indices, hypotheses([rows[i] for i in indices])):
                out[i // per].extend(seqs)
        return out

    def generate(self, rows: list[list[int]], plan: Plan, on_token: Callable[[int], None] | None = None) -> list[list[list[int]]]:
        """Decoder-only: per prompt, its n continuations (new ids, EOS included where reached)."""
        width = max(len(r) for r in rows)
        most, fewest = plan.budget(width)
        if most < 1:
            return [[[] for _ in range(plan.n)] for _ in rows]
        options = self._common(plan)

        def call(batch: list[list[int]]) -> list[list[list[int]]]:
            start = [self._tokens(r, self.source) for r in batch]
            kwargs = dict(options)
            if plan.penalties:  # the prompt in the result, so that the penalties see it; lengths include it
                width = len(batch[0])
                kwargs.update(include_prompt_in_result=True, max_length=most + width - 1, min_length=fewest + width - 1 if fewest else 0)
            else:
                width = 0
                kwargs.update(include_prompt_in_result=False, max_length=most, min_length=fewest)
            stopped: list[BaseException] = []
            if on_token is not None and len(batch) == 1 and plan.beams == 1 and not plan.penalties:
                kwargs["callback"] = lambda step: _feed(on_token, step.token_id, stopped)
            results = self.model.generate_batch(start, **kwargs)
            if stopped:
                raise stopped[0]  # the reader went away (or its callback failed): decoding stopped there
            return [[list(seq[width:]) for seq in r.sequences_ids] for r in results]

        # penalties: one call per prompt length; else prompts of one token apart from the longer ones
        return self._group(rows, plan, call, key=len if plan.penalties else lambda row: min(len(row), 2))

    def translate(self, rows: list[list[int]], plan: Plan, most: int) -> list[list[list[int]]]:
        """Encoder-decoder: per source, its n outputs (ids after the decoder start, a forced first token and
        the EOS included), at most `most` new tokens."""
        fewest = plan.budget(0)[1]
        if plan.forced_eos:
            most -= 1  # generate() forces EOS into the last place: the same text, one decoding step fewer
        if most < 1:
            return [[[] for _ in range(plan.n)] for _ in rows]
        options = self._common(plan)
        options.update(max_decoding_length=most, min_decoding_length=min(fewest, most), max_input_length=0)
        prefix = [self.target[plan.forced_bos]] if plan.forced_bos is not None else None

        def call(batch: list[list[int]]) -> list[list[list[int]]]:
            source = [self._tokens(r, self.source) for r in batch]
            results = self.model.translate_batch(source, target_prefix=[prefix] * len(batch) if prefix else None, **options)
            return [_ids(r, self.target) for r in results]

        return self._group(rows, plan, call, key=lambda row: 0)


def _ids(result, vocab: list[str]) -> list[list[int]]:
    ids = getattr(result, "sequences_ids", None)
    if ids is not None:
        return [list(s) for s in ids]
    index = {t: i for i, t in enumerate(vocab)}
    return [[index[t] for t in hyp] for hyp in result.hypotheses]


def _feed(on_token: Callable[[int], None], token: int, stopped: list[BaseException]) -> bool:
    """CTranslate2's step callback: True stops the decoding, so an exception is kept and raised after."""
    try:
        on_token(token)
    except BaseException as exc:  # noqa: BLE001 - re-raised once generate_batch returns
        stopped.append(exc)
        return True
    return False
