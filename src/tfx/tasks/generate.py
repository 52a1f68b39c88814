"""generate: continue prompts with a decoder-only model (or run text-to-text with an encoder-decoder).
Greedy decoding of GPT-2 models goes to the fast path (tfx.fast) where it gives transformers' result."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tfx import registry
from tfx.errors import UsageError
from tfx.results import GenerateResult, Result, TextChunk
from tfx.spec import TASK_GENERATION_KEYS, GenerateSettings
from tfx.tasks import chat
from tfx.tasks.base import Task, context_length, log, stream_from, too_long

# Used only when neither the user nor the model's generation_config.json sets a length.
DEFAULT_MAX_NEW_TOKENS = 50


class Generate(Task):
    name = "generate"
    batch_sizes = (32, 64)
    settings: GenerateSettings
    keep = "end"  # a prompt too long for the model keeps its end, where generation goes on
    constraint: Any = None  # --json / --json-schema: tfx.tasks.constrain.Constraint, built at the first batch
    pieces: Any = None  # --logprobs: tfx.tasks.logprobs.TokenPieces

    def __init__(self, loaded, settings: GenerateSettings):
        # loaded.model and loaded.tokenizer are touched only when transformers is needed: the fast path
        # must not import it.
        super().__init__(loaded, settings)
        self.seq2seq = loaded.family == registry.ENCODER_DECODER
        self.kwargs = length_kwargs(settings, loaded.generation_defaults)
        check_room(self.kwargs, loaded.config, loaded.family)
        if settings.stop:  # transformers' StopStringCriteria; the fast path does not take them
            self.kwargs["stop_strings"] = list(settings.stop)
        fast = loaded.fast
        self.fast = fast if fast is not None and fast.takes(self.kwargs) else None  # it refuses logprobs and JSON
        for key in TASK_GENERATION_KEYS:  # turned into a streamer and a logits processor by _run
            self.kwargs.pop(key, None)
        if settings.constrained():
            from tfx.tasks import constrain

            constrain.check_schema(settings)  # a schema xgrammar cannot follow fails before any record is read
        self.tokenizer = self._setup_tokenizer(self.fast.tokenizer if self.fast is not None else loaded.tokenizer)
        self.truncate = not settings.no_truncate
        self.context = None if self.seq2seq else context_length(loaded.config)
        self.seeded = Seeded(settings.seed, self.device) if settings.seed is not None else None
        self.sampling = settings.sampling(loaded.generation_defaults)
        if settings.chat:
            chat.check_template(loaded.tokenizer, loaded.name)

    def _setup_tokenizer(self, tok):
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token  # GPT-2 has no pad token; EOS is the usual stand-in
        if not self.seq2seq:
            tok.padding_side = "left"  # decoder-only batches must end where generation starts
        if tok.pad_token_id is not None:
            self.kwargs["pad_token_id"] = tok.pad_token_id
        return tok

    def _prompt_limit(self) -> int | None:
        """The most prompt tokens that leave room for the new ones inside the model's context."""
        if self.context is None:
            return None
        if "max_new_tokens" in self.kwargs:
            return max(self.context - self.kwargs["max_new_tokens"], 1)
        return max(self.context - 1, 1)

    def check(self, text: str) -> None:
        limit = self._prompt_limit()
        if not self.truncate and limit is not None:
            n = len(self.tokenizer(self.chat_prompts([text])[0])["input_ids"])
            if n > limit:
                raise too_long("prompt", n, limit)

    def run(self, texts: list[str]) -> list[GenerateResult]:
        return self._run(self.chat_prompts(texts))

    def chat_prompts(self, texts: list[str]) -> list[str]:
        """--chat: each text is one user turn, rendered by the model's chat template (tfx.tasks.chat)."""
        if not self.settings.chat:
            return texts
        return [chat.render(self.loaded.tokenizer, chat.user_turn(t), self.loaded.name, self.tokenizer) for t in texts]

    def stream(self, text: str) -> Iterator[TextChunk | Result]:
        if not self.settings.streamable(self.loaded.generation_defaults):
            yield from super().stream(text)
            return
        yield from stream_from(lambda on_text: self._run(self.chat_prompts([text]), on_text)[0])

    def _run(self, texts: list[str], on_text: Callable[[str], None] | None = None) -> list[GenerateResult]:
        import torch

        ids = self.tokenizer(texts)["input_ids"]
        limit = self._prompt_limit()
        cut = [0] * len(texts)  # tokens dropped from the start of each prompt (the pipeline reports them)
        if limit is not None:
            for i, row in enumerate(ids):
                if len(row) > limit:
                    ids[i], cut[i] = row[-limit:], len(row) - limit
        if self.fast is not None:
            out = self.fast.generate(ids, self.kwargs, on_text)
            if out is not None:
                return self._results(texts, ids, out, max(len(r) for r in ids), 1, cut)
            # a budget the fast path does not handle: transformers decides, with its own tokenizer
            self.fast, self.tokenizer = None, self._setup_tokenizer(self.loaded.tokenizer)
            return self._run(texts, on_text)
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        kwargs = dict(self.kwargs)
        streaming = on_text is not None and len(texts) == 1
        recorder = self._recorder(on_text if streaming else None)
        if recorder is not None:
            kwargs["streamer"] = recorder
        elif streaming:
            kwargs["streamer"] = _TokenStreamer(self.tokenizer, on_text, self.seq2seq)
        if self.settings.constrained():
            kwargs["logits_processor"] = [self._constraint().mask()]
        if "stop_strings" in kwargs:
            kwargs["tokenizer"] = self.tokenizer
        hooked = recorder.attached(self.loaded.model) if recorder is not None else contextlib.nullcontext()
        with self._drawing(), torch.inference_mode(), hooked:
            out = self.loaded.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        width = 0 if self.seq2seq else batch["input_ids"].shape[1]
        return self._results(texts, ids, out, width, kwargs.get("num_return_sequences", 1), cut, recorder)

    def _recorder(self, on_text: Callable | None):
        """--logprobs: the streamer and forward hook that read each step's logits (tfx.tasks.logprobs); when
        streaming, it also sends the text, one chunk per token with that token's entry."""
        if self.settings.logprobs is None:
            return None
        from tfx.tasks import logprobs

        if self.pieces is None:
            self.pieces = logprobs.TokenPieces(self.tokenizer)
        recorder = logprobs.Recorder(self.settings.logprobs)
        if on_text is not None:
            chunks = _ChunkStream(self, recorder, on_text)
            recorder.on_step, recorder.on_end = chunks.step, chunks.end
        return recorder

    def _constraint(self):
        """The compiled JSON grammar, against the vocabulary the model's logits have (tfx.tasks.constrain)."""
        if self.constraint is None:
            from tfx.tasks import constrain

            head = self.loaded.model.get_output_embeddings() if hasattr(self.loaded.model, "get_output_embeddings") else None
            vocab = head.weight.shape[0] if head is not None and hasattr(head, "weight") else len(self.tokenizer)
            self.constraint = constrain.Constraint(self.tokenizer, vocab, self._eos_ids(), self.settings)
        return self.constraint

    def _eos_ids(self) -> list[int]:
        eos = self.loaded.generation_defaults.get("eos_token_id", self.loaded.config.get("eos_token_id"))
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [] if eos is None else [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]

    def _drawing(self):
        """The random numbers of this generation: the task's own seeded stream, alone on torch's generators;
        unseeded sampling shares them; greedy and beam search draw none."""
        if self.seeded is not None:
            return self.seeded.drawing()
        return RNG.shared() if self.sampling else contextlib.nullcontext()

    def _results(self, texts, ids, out, width: int, n: int, cut: list[int], recorder: Any = None) -> list[GenerateResult]:
        results = []
        special = set(self.tokenizer.all_special_ids)
        for i, text in enumerate(texts):
            rows = [row[width:].tolist() for row in out[i * n : (i + 1) * n]]
            sequences = [self._decode(ids[i], new, text) for new in rows]
            result = GenerateResult(
                output=sequences[0][0],
                outputs=[s[0] for s in sequences] if n > 1 else None,
                generated_tokens=sum(s[1] for s in sequences),
                truncated=cut[i] > 0,
                dropped_tokens=cut[i],
            )
            if recorder is not None:
                start = 1 if self.seq2seq else 0  # an encoder-decoder's rows begin with the decoder's start token
                result.logprobs = [recorder.row(i * n + k, new[start:], lambda t: t not in special, self.pieces) for k, new in enumerate(rows)]
            if self.constraint is not None and self.settings.constrained():
                result.finish_reasons = [self._finish(new, s[0]) for new, s in zip(rows, sequences)]
                result.incomplete = not all(self.constraint.complete(new) for new in rows)
                if result.incomplete:
                    log.warning("the JSON output is incomplete: the generation ended before it closed (raise --max-new-tokens)")
            results.append(result)
        return results

    def _finish(self, new_ids: list[int], text: str) -> str:
        """OpenAI's finish reason: "stop" where the sequence ended itself (its end-of-sequence token, a stop
        string), "length" where max_new_tokens ran out first."""
        eos = set(self._eos_ids())
        ended = any(t in eos for t in new_ids) or any(s in text for s in self.settings.stop or ())
        return "stop" if ended else "length"

    def _decode(self, prompt_ids: list[int], new_ids: list[int], prompt: str) -> tuple[str, int]:
        special = set(self.tokenizer.all_special_ids)
        count = sum(1 for t in new_ids if t not in special)
        continuation = self._new_text(prompt_ids, new_ids)
        return (continuation if self.seq2seq or self.settings.continuation_only else prompt + continuation), count

    def _new_text(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        if self.seq2seq:
            return self.tokenizer.decode(new_ids, skip_special_tokens=True)
        # Decode prompt and continuation together and cut the prompt's text off, so tokenizers that merge
        # across the boundary (leading spaces) still give the right continuation.
        skip = len(self.tokenizer.decode(prompt_ids, skip_special_tokens=True))
        return self.tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)[skip:]


def length_kwargs(settings: GenerateSettings, defaults: dict[str, Any]) -> dict[str, Any]:
    """generate's kwargs: what the user set, and tfx's default length when neither the user nor the model's
    generation_config.json chose one."""
    kwargs = settings.generate_kwargs()
    if not settings.sets_length(defaults):
        kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    return kwargs


def check_room(kwargs: dict[str, Any], config: dict[str, Any], family: str) -> None:
    """A decoder-only model attends to at most its context: new tokens that leave no room for one prompt
    token, or a total length past it, would index positions it does not have. The CLI and the server
    both refuse them (the prompt is never cut to nothing to make room)."""
    context = None if family == registry.ENCODER_DECODER else context_length(config)
    if context is None:
        return
    new, total = kwargs.get("max_new_tokens"), kwargs.get("max_length")
    if new is not None and new >= context:
        raise UsageError(f"--max-new-tokens {new} leaves no room for the prompt: the model's context is {context} tokens.", f"Ask for at most {context - 1} new tokens.")
    if total is not None and total > context:
        raise UsageError(f"--max-length {total} is past the model's context of {context} tokens.", f"Use --max-length {context} or less.")


class _Gate:
    """torch's default generators are process-wide and transformers samples from them, on every model's
    thread. A seeded generation holds them alone; unseeded sampling shares them. Waiting seeded work goes
    first, so a stream of unseeded requests cannot starve it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharing = 0
        self._alone = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._alone and not self._waiting)
            self._sharing += 1
        try:
            yield
        finally:
            with self._cond:
                self._sharing -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def alone(self):
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._alone and not self._sharing)
            self._waiting -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


RNG = _Gate()


class Seeded:
    """One task's random numbers: torch.manual_seed(seed)'s stream, continued across the task's batches,
    without touching the process's generators (forked around each generation and restored after)."""

    def __init__(self, seed: int, device: str):
        self.seed, self.device = seed, device
        self.state: tuple[Any, Any] | None = None

    @contextlib.contextmanager
    def drawing(self):
        import torch

        cuda = self.device.startswith("cuda")
        index = torch.device(self.device).index if cuda else None
        if cuda and index is None:
            index = torch.cuda.current_device()
        with RNG.alone(), torch.random.fork_rng(devices=[index] if cuda else []):
            if self.state is None:
                torch.default_generator.manual_seed(self.seed)
                if cuda:
                    torch.cuda.default_generators[index].manual_seed(self.seed)
                elif self.device != "cpu":  # mps and the rest: seeded as transformers.set_seed would
                    torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self.state[0])
                if cuda:
                    torch.cuda.set_rng_state(self.state[1], index)
            yield
            self.state = (torch.get_rng_state(), torch.cuda.get_rng_state(index) if cuda else None)


class _ChunkStream:
    """A streamed generation with --logprobs: after each step, the text that token completes (tfx.tokens'
    stream, decoded as the result's is) in one TextChunk with the entries of the tokens it holds; a token
    that ends inside a character waits for the rest of it; the recorder's end sends what is left."""

    def __init__(self, task: Generate, recorder, on_text: Callable):
        self.task, self.recorder, self.on_text = task, recorder, on_text
        self.special = set(task.tokenizer.all_special_ids)
        self.text: Any = None  # the TextStream, made at the first step (once the recorder has the prompt)
        self.held: list[dict[str, Any]] = []

    def step(self, t: int) -> None:
        token = self.recorder.steps[t][0][0]
        if token in self.special:
            return
        if self.text is None:
            from tfx.tokens import TextStream

            self.text = TextStream(self.task.tokenizer, [] if self.task.seq2seq else self.recorder.prompt or [])
        self.held.append(self.recorder.entry(t, 0, self.task.pieces))
        self._send(self.text.step(token))

    def end(self) -> None:
        if self.text is not None:
            self._send(self.text.finish())

    def _send(self, piece: str | None) -> None:
        if piece:
            held, self.held = self.held, []
            self.on_text(TextChunk(piece, held))


class _TokenStreamer:
    """model.generate's streamer (put/end): the first put is the prompt (decoder-only; an encoder-decoder's
    decoder start ids are not text), then each step's token, decoded by tfx.tokens' stream."""

    def __init__(self, tokenizer, on_text: Callable[[str], None], seq2seq: bool):
        self.tokenizer, self.on_text, self.seq2seq = tokenizer, on_text, seq2seq
        self.text: Any = None

    def put(self, value) -> None:
        ids = value.reshape(-1).tolist()
        if self.text is None:
            from tfx.tokens import TextStream

            self.text = TextStream(self.tokenizer, [] if self.seq2seq else ids, self.on_text)
            return
        for token in ids:
            self.text.put(token)

    def end(self) -> None:
        if self.text is not None:
            self.text.end()
