"""The tasks on the CTranslate2 backend (`--backend ct2`, or `auto`): generate, translate and summarize with
the transformers tasks' own preparation (prompt limits, T5 prefixes, language checks, derived lengths) and
CTranslate2 doing the decoding. `open_ct2` is open_task's branch for them; with backend "auto" anything the
backend cannot run exactly is noted on stderr and left to transformers (open_ct2 returns None)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tfx import ct2, loading, registry
from tfx.ct2 import options, store
from tfx.results import GenerateResult, Seq2SeqResult
from tfx.tasks.base import Task, context_length, log
from tfx.tasks.generate import Generate, check_room, length_kwargs
from tfx.tasks.seq2seq import _DECODER_CAP, _LENGTH_FACTOR, _LENGTH_SLACK, Summarize, Translate

BACKENDS = ("transformers", "ct2", "onnx", "auto")


class _Ids(list):
    """A row of ids with the .tolist() the tasks' result code calls on tensors."""

    def __getitem__(self, key):
        item = list.__getitem__(self, key)
        return _Ids(item) if isinstance(key, slice) else item

    def tolist(self) -> list[int]:
        return list(self)


class Ct2Model:
    """The converted model, converted and loaded when first used (after the settings were checked)."""

    def __init__(self, make: Callable[[], ct2.runner.Runner]):
        self._make, self._runner = make, None

    @property
    def runner(self):
        if self._runner is None:
            self._runner = self._make()
        return self._runner


class Ct2Generate(Generate):
    def __init__(self, loaded, settings):
        Task.__init__(self, loaded, settings)
        self.seq2seq = False
        self.kwargs = length_kwargs(settings, loaded.generation_defaults)
        check_room(self.kwargs, loaded.config, loaded.family)
        if settings.stop:
            self.kwargs["stop_strings"] = list(settings.stop)  # plan() refuses them: no CTranslate2 equivalent
        self.fast = None
        self.tokenizer = self._setup_tokenizer(loaded.tokenizer)
        self.truncate = not settings.no_truncate
        self.context = context_length(loaded.config)
        self.seeded, self.sampling = None, settings.sampling(loaded.generation_defaults)
        self.plan = options.plan(False, loaded.generation_defaults, self.kwargs, loaded.config)
        if settings.seed is not None:
            ct2.require().set_random_seed(settings.seed)

    def _run(self, texts: list[str], on_text: Callable[[str], None] | None = None) -> list[GenerateResult]:
        ids = self.tokenizer(texts)["input_ids"]
        limit = self._prompt_limit()
        cut = [0] * len(texts)
        if limit is not None:
            for i, row in enumerate(ids):
                if len(row) > limit:
                    ids[i], cut[i] = row[-limit:], len(row) - limit
        streamer = None
        if on_text is not None and len(texts) == 1:
            from tfx.tokens import TextStream

            streamer = TextStream(self.tokenizer, ids[0], on_text)
        out = self.loaded.model.runner.generate(ids, self.plan, streamer.put if streamer else None)
        if streamer is not None:
            streamer.end()
        rows = [_Ids(seq) for per_prompt in out for seq in per_prompt]
        return self._results(texts, ids, rows, 0, self.plan.n, cut)


class _Ct2Seq2Seq:
    """generate() for translate and summarize (every path of theirs ends there: plain runs, sentence parts,
    map-reduce chunks): the transformers task's preparation, CTranslate2's decoding."""

    def generate(self, ids: list[list[int]], kwargs: dict[str, Any], derive_length: bool) -> list[Seq2SeqResult]:
        plan = options.plan(True, self.loaded.generation_defaults, kwargs, self.loaded.config)
        cut = [0] * len(ids)
        for i, row in enumerate(ids):
            if len(row) > self.limit:
                ids[i], cut[i] = row[: self.limit - 1] + row[-1:], len(row) - self.limit
        if derive_length:
            cap = context_length(self.loaded.config) or _DECODER_CAP
            most = min(cap, _LENGTH_FACTOR * max(len(r) for r in ids) + _LENGTH_SLACK)
        else:
            most = plan.budget(0)[0]
        out = self.model.runner.translate(ids, plan, most)
        special = set(self.tokenizer.all_special_ids)
        return [
            Seq2SeqResult(
                output=self.tokenizer.decode(rows[0], skip_special_tokens=True).strip(),
                generated_tokens=sum(1 for t in rows[0] if t not in special),
                truncated=cut[i] > 0,
                dropped_tokens=cut[i],
            )
            for i, rows in enumerate(out)
        ]


class Ct2Translate(_Ct2Seq2Seq, Translate):
    def __init__(self, loaded, settings):
        Translate.__init__(self, loaded, settings)
        options.plan(True, loaded.generation_defaults, self.kwargs, loaded.config)  # Unsupported before any conversion


class Ct2Summarize(_Ct2Seq2Seq, Summarize):
    def __init__(self, loaded, settings):
        Summarize.__init__(self, loaded, settings)
        options.plan(True, loaded.generation_defaults, self.kwargs, loaded.config)


CT2_TASKS = {"generate": Ct2Generate, "translate": Ct2Translate, "summarize": Ct2Summarize}


def converted_path(prepared: loading.Prepared, compute_type: str, trust_remote_code: bool = False, verbose: bool = False):
    """The converted copy of a prepared model for this compute type, converting it first if needed."""
    version = ct2.version()
    resolved = prepared.resolved
    path = store.folder(resolved.repo_id, resolved.path, version, compute_type)
    repo_part, commit = store.source_key(resolved.repo_id, resolved.path)
    meta = {"repo_id": resolved.repo_id, "commit": commit, "version": version, "quantization": compute_type, "source": str(resolved.path), "made": time.time()}

    def run_converter(tmp):
        from tfx.ct2.convert import convert

        convert(resolved.path, tmp, compute_type, trust_remote_code, verbose)

    return store.ensure(path, meta, run_converter)


def check_model(prepared: loading.Prepared) -> None:
    reason = ct2.unsupported_model(prepared.model_type, prepared.task)
    if reason is None and prepared.family == registry.ENCODER_DECODER and prepared.task == "generate":
        reason = "the ct2 backend runs generate for decoder-only models"
    if reason is not None:
        raise ct2.Unsupported(f"{prepared.name}: {reason}")


def open_ct2(spec, prepared: loading.Prepared, device: str | None = None):
    """The ct2 task for spec, or None (backend auto) when transformers must run it; the reason is noted."""
    from tfx.errors import UsageError

    if spec.dtype != "auto":
        raise UsageError(f"--dtype {spec.dtype} applies to the transformers backend.", "With --backend ct2 use --compute-type (int8, float32, ...).")
    try:
        ct2.require()
        check_model(prepared)
        where, index = ct2.pick_device(device or spec.device)
        # auto never picks int8 unless asked: int8 changes the outputs
        compute_type = ct2.pick_compute_type("float32" if spec.backend == "auto" and spec.compute_type == "auto" else spec.compute_type, where)
        seq2seq = prepared.family == registry.ENCODER_DECODER
        tokenizer = _tokenizer(prepared)
        path_of = lambda: converted_path(prepared, compute_type, spec.trust_remote_code, spec.verbose)  # noqa: E731
        model = Ct2Model(lambda: _runner(prepared, path_of(), where, index, compute_type, seq2seq))
        loaded = loading.Loaded(prepared, where, load_model=lambda: model, load_tokenizer=lambda: tokenizer)
        task = CT2_TASKS[spec.task](loaded, spec.settings)
        model.runner  # noqa: B018 - convert and load now, so a bad model fails before any record is read
        return task
    except ct2.Unsupported as exc:
        if spec.backend != "auto":
            raise
        store.note(f"--backend auto: running transformers ({exc.message})")
        return None


def _tokenizer(prepared: loading.Prepared):
    from tfx.ct2 import text

    path, kind = prepared.resolved.path, prepared.model_type
    if kind == "gpt2":
        from tfx.fast import text as fast_text

        if fast_text.unsupported_reason(path) is None:
            return fast_text.FastTokenizer(path)  # transformers 5 rebuilds GPT-2's pipeline; this one matches it
    try:
        return text.load(path, kind)
    except (OSError, ValueError) as exc:
        raise ct2.Unsupported(f"{prepared.name}: the ct2 backend cannot read its tokenizer without transformers ({exc})") from None


def _runner(prepared, path, device: str, index: int, compute_type: str, seq2seq: bool):
    from tfx.ct2.runner import Runner

    started = time.monotonic()
    runner = Runner(path, device, index, compute_type, seq2seq)
    log.info("loaded %s (ct2, %s) in %.2f s", prepared.name, compute_type, time.monotonic() - started)
    return runner


def load_ct2(prepared: loading.Prepared, device: str = "auto", compute_type: str = "auto", trust_remote_code: bool = False, verbose: bool = False) -> loading.Loaded:
    """The converted model (converted first if needed) as a Loaded that the CT2_TASKS build on, one task per
    settings: what `tfx serve --engine ct2` keeps in a slot. Unsupported for a model the backend cannot run."""
    ct2.require()
    check_model(prepared)
    where, index = ct2.pick_device(device)
    compute = ct2.pick_compute_type(compute_type, where)
    seq2seq = prepared.family == registry.ENCODER_DECODER
    tokenizer = _tokenizer(prepared)
    model = Ct2Model(lambda: _runner(prepared, converted_path(prepared, compute, trust_remote_code, verbose), where, index, compute, seq2seq))
    loaded = loading.Loaded(prepared, where, load_model=lambda: model, load_tokenizer=lambda: tokenizer)
    model.runner  # noqa: B018 - convert and load now
    return loaded


def check_settings(prepared: loading.Prepared, task: str, settings, tokenizer) -> None:
    """Unsupported where the ct2 backend cannot run these settings with transformers' result, found by building
    the task on a model that is never loaded (tokenizer: one of ct2_tokenizer's, used for checks alone)."""

    def never():
        raise AssertionError("a settings check never runs the model")

    loaded = loading.Loaded(prepared, "cpu", load_model=lambda: Ct2Model(never), load_tokenizer=lambda: tokenizer)
    if getattr(settings, "seed", None) is not None:  # CTranslate2's seed is global: a check must not reset it
        import dataclasses

        settings = dataclasses.replace(settings, seed=None)
    CT2_TASKS[task](loaded, settings)


def ct2_tokenizer(prepared: loading.Prepared):
    """The tokenizer the ct2 tasks use for this model (without transformers)."""
    return _tokenizer(prepared)
