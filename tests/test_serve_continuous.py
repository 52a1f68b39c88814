"""Continuous batching in tfx serve (serve.continuous, --batching): greedy requests get the window batcher's
texts, a request arriving mid-decode joins the running batch and finishes first, sampling takes each
request's settings, what the manager cannot honour goes to the window batcher, cancellation, unload and
shutdown stop it cleanly; and the real server with --batching continuous behind the OpenAI client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

torch = pytest.importorskip("torch")

from tfx.serve import generation  # noqa: E402 - count_usage: the completions Finish
from tfx.serve.config import Settings  # noqa: E402
from tfx.serve.continuous import GREEDY, SAMPLE, decoding_mode  # noqa: E402
from tfx.serve.models import Manager  # noqa: E402
from tfx.spec import GenerateSettings  # noqa: E402

GPT2 = "tfx-test/tiny-gpt2"
GREEDY30 = GenerateSettings(max_new_tokens=30, do_sample=False, continuation_only=True)


def snapshot(hub_cache: Path, repo: str) -> Path:
    return next((hub_cache / ("models--" + repo.replace("/", "--")) / "snapshots").iterdir())


@pytest.fixture(scope="module")
def endless(hub_cache, tmp_path_factory) -> str:
    """The tiny GPT-2 without an end-of-text token: every generation runs to its max_new_tokens."""
    out = tmp_path_factory.mktemp("endless-gpt2")
    for f in snapshot(hub_cache, GPT2).iterdir():
        shutil.copyfile(f, out / f.name)
    for name in ("config.json", "generation_config.json"):
        config = json.loads((out / name).read_text())
        config["eos_token_id"] = None
        (out / name).write_text(json.dumps(config))
    return str(out)


def manager(batching: str, models: list[str]) -> Manager:
    return Manager(Settings(batching=batching, models=models, keep_alive_s=None), "cpu", torch.float32)


@pytest.fixture(scope="module")
def managers(hub_cache, endless):
    torch.set_num_threads(1)
    both = {mode: manager(mode, [endless]) for mode in ("continuous", "window")}
    yield both
    for m in both.values():
        m.close()


def slot_of(m: Manager, name: str):
    return next(s for s in m.slots.values() if name in s.names)


def run(coro):
    return asyncio.run(coro)


async def one(m: Manager, text: str, settings=GREEDY30, name: str = GPT2):
    slot, _ = await m.slot_for(name, "generate")
    (outcome,) = await slot.run("generate", settings, [text], generation.count_usage)
    return outcome


async def streamed(m: Manager, text: str, settings=GREEDY30, name: str = GPT2, seen=None):
    slot, _ = await m.slot_for(name, "generate")
    pieces, outcome = [] if seen is None else seen, None
    async for kind, value in slot.stream("generate", settings, text, generation.count_usage).events():
        if kind == "text":
            pieces.append(value)
        elif kind == "error":
            raise value
        else:
            outcome = value
    return pieces, outcome


def test_greedy_requests_get_the_window_batchers_texts(managers):
    async def ask(m: Manager):
        slot, _ = await m.slot_for(GPT2, "generate")
        prompts = [p for p, _ in tm.GPT2_CASES]
        alone = asyncio.gather(*(one(m, p) for p in prompts))  # four requests at once
        together = slot.run("generate", GREEDY30, prompts, generation.count_usage)  # one request of four
        full = one(m, tm.GPT2_PROMPT, GenerateSettings(max_new_tokens=30, do_sample=False))  # prompt + continuation
        return await asyncio.gather(alone, together, full)

    got = {mode: run(ask(m)) for mode, m in managers.items()}
    (alone, together, full), window = got["continuous"], got["window"]
    want = [c for _, c in tm.GPT2_CASES]
    assert [o.result.output for o in alone] == [o.result.output for o in together] == want
    assert full.result.output == tm.GPT2_TEXT
    for c, w in zip(alone + together + [full], window[0] + window[1] + [window[2]]):
        assert (c.result.output, c.result.generated_tokens, c.extra, c.error) == (w.result.output, w.result.generated_tokens, w.extra, w.error)
    assert max(o.batch for o in alone + together) > 1  # they ran in the manager together
    continuous = slot_of(managers["continuous"], GPT2).continuous
    assert set(continuous.engines) == {GREEDY} and not continuous.refused


def test_streamed_pieces_join_to_the_text_and_usage_matches(managers):
    for prompt, continuation in tm.GPT2_CASES:
        pieces, outcome = run(streamed(managers["continuous"], prompt))
        _, window = run(streamed(managers["window"], prompt))
        assert len(pieces) > 2 and "".join(pieces) == continuation
        assert (outcome.result.output, outcome.extra) == (window.result.output, window.extra)


def test_a_request_arriving_mid_decode_joins_and_finishes_first(managers, endless):
    """A long request streams (56 tokens: its sentence, then end-of-text tokens that the model without an
    end-of-text id does not stop at); once its first pieces are out a short one arrives. Continuous: the
    short one joins at the next step and is done while the long one still decodes. Window: it waits."""
    long_settings = GenerateSettings(max_new_tokens=56, do_sample=False, continuation_only=True)
    short_settings = GenerateSettings(max_new_tokens=4, do_sample=False, continuation_only=True)

    async def race(m: Manager):
        order, seen = [], []

        async def long():
            pieces, outcome = await streamed(m, "Once", long_settings, endless, seen)
            order.append("long")
            return outcome

        async def short():
            while len(seen) < 3:  # the long one is decoding
                await asyncio.sleep(0.001)
            outcome = await one(m, "Hello", short_settings, endless)
            order.append("short")
            return outcome, len(seen)

        long_outcome, (short_outcome, pieces_then) = await asyncio.gather(long(), short())
        return order, long_outcome, short_outcome, pieces_then

    order, long_out, short_out, pieces_then = run(race(managers["continuous"]))
    assert order == ["short", "long"]
    assert short_out.result.generated_tokens == 4 and short_out.batch == 2  # it shared the running batch
    assert pieces_then < long_out.result.generated_tokens  # the long one was still streaming its text
    w_order, w_long, w_short, _ = run(race(managers["window"]))
    assert w_order == ["long", "short"]  # today's batcher: the short one waited for the whole long one
    assert (w_long.result.output, w_short.result.output) == (long_out.result.output, short_out.result.output)


def test_sampling_takes_each_requests_settings(managers, endless):
    m = managers["continuous"]
    hot = GenerateSettings(max_new_tokens=30, do_sample=True, temperature=5.0, top_k=0, continuation_only=True)
    top1 = GenerateSettings(max_new_tokens=30, do_sample=True, temperature=1.0, top_k=1, continuation_only=True)

    async def ask():  # a one-candidate sampler beside hot ones, in the same manager, at the same steps
        return await asyncio.gather(one(m, tm.GPT2_PROMPT, top1), *(one(m, "Once", hot, endless) for _ in range(4)))

    narrow, *wide = run(ask())
    assert narrow.result.output == tm.GPT2_CONTINUATION  # top_k 1 is greedy: its own settings held
    assert all(0 < o.result.generated_tokens <= 30 for o in wide)  # end-of-text tokens it samples are not counted
    assert len({o.result.output for o in wide}) > 1  # temperature 5 over the whole vocabulary: they differ
    for name in (GPT2, endless):  # not the window batcher
        assert SAMPLE in slot_of(m, name).continuous.engines, (name, slot_of(m, name).continuous.engines, slot_of(m, name).continuous.refused)


def test_what_the_manager_cannot_honour_goes_to_the_window_batcher(managers):
    defaults = {"do_sample": False}
    assert decoding_mode("generate", GREEDY30, defaults) == GREEDY
    assert decoding_mode("generate", GenerateSettings(do_sample=True, top_p=0.9), defaults) == SAMPLE
    assert decoding_mode("generate", GenerateSettings(), {"do_sample": True}) == SAMPLE
    for refused in (
        GenerateSettings(num_beams=2), GenerateSettings(do_sample=True, num_return_sequences=2), GenerateSettings(seed=3, do_sample=True),
        GenerateSettings(stop=(" great",)), GenerateSettings(min_new_tokens=5), GenerateSettings(max_length=20),
        GenerateSettings(repetition_penalty=1.3), GenerateSettings(no_repeat_ngram_size=2),
    ):  # fmt: skip
        assert decoding_mode("generate", refused, defaults) is None, refused
    assert decoding_mode("generate", GenerateSettings(), {"max_length": 40}) is None  # the model's length is in tokens of prompt + output
    assert decoding_mode("fill-mask", GREEDY30, defaults) is None

    beams = GenerateSettings(max_new_tokens=12, num_beams=2, continuation_only=True)
    stop = GenerateSettings(max_new_tokens=30, stop=(" great",), continuation_only=True)
    for settings in (beams, stop):
        got = [run(one(m, tm.GPT2_PROMPT, settings)) for m in (managers["continuous"], managers["window"])]
        assert got[0].result.output == got[1].result.output and got[0].extra == got[1].extra
    assert run(one(managers["continuous"], tm.GPT2_PROMPT, stop)).result.output == ", the world was a place of great"


def test_cancel_unload_and_shutdown_stop_it_cleanly(hub_cache, endless):
    m = manager("continuous", [endless])
    long_settings = GenerateSettings(max_new_tokens=56, do_sample=False, continuation_only=True)

    async def cancel_midway():
        slot, _ = await m.slot_for(endless, "generate")
        await one(m, "Hi", GenerateSettings(max_new_tokens=2, do_sample=False), endless)  # started
        engine = slot.continuous.engines[GREEDY]
        work = asyncio.ensure_future(slot.run("generate", long_settings, ["Once"]))
        while not engine.jobs:
            await asyncio.sleep(0.001)
        work.cancel()  # the client went away
        await asyncio.gather(work, return_exceptions=True)
        await asyncio.sleep(0)
        return slot, engine

    try:
        slot, engine = run(cancel_midway())
        assert not engine.jobs and slot.pending == 0 and m.stats["cancelled"] == 1
        assert engine.cb.is_running()
        slot.executor.submit(slot.unload_if_idle, 0.0, True).result(60)  # an eviction
        assert slot.loaded is None and not slot.continuous.engines and not engine.cb.is_running()
        again = run(one(m, "Once", GenerateSettings(max_new_tokens=5, do_sample=False), endless))  # loads and starts again
        assert again.result.generated_tokens == 5 and slot.continuous.engines[GREEDY] is not engine
        restarted = slot.continuous.engines[GREEDY]
    finally:
        m.close()
    assert not restarted.cb.is_running()  # its thread would keep the server's process alive


def test_window_mode_and_encoder_decoder_models_have_none(hub_cache):
    async def slots():
        window = await manager("window", []).slot_for(GPT2, "generate")
        auto = await manager("auto", []).slot_for(GPT2, "generate")
        t5 = await manager("continuous", []).slot_for("tfx-test/tiny-t5", "translate")
        return window[0], auto[0], t5[0]

    window, auto, t5 = run(slots())
    assert window.continuous is None and t5.continuous is None
    assert auto.continuous is not None and not auto.continuous.loud  # auto: continuous where it applies, quietly


# --- the real server -------------------------------------------------------------------------------

KEY = "cb-key"


@pytest.fixture(scope="module")
def server(hub_cache):
    from test_serve import Server

    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    s = Server(["-m", GPT2, "--api-key", KEY, "--batching", "continuous"], {**env, "HF_HUB_CACHE": str(hub_cache)})
    yield s
    s.stop()


def test_the_openai_client_against_batching_continuous(server):
    client = server.client(KEY)
    done = client.completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, temperature=0)
    assert done.choices[0].text == tm.GPT2_CONTINUATION and done.choices[0].finish_reason == "stop"
    assert done.usage.completion_tokens == 13
    chunks = list(client.completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=30, temperature=0, stream=True))
    assert len(chunks) > 2 and "".join(c.choices[0].text for c in chunks) == tm.GPT2_CONTINUATION
    short = client.completions.create(model=GPT2, prompt=tm.GPT2_PROMPT, max_tokens=3, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3

    def ask(i: int):
        prompt, continuation = tm.GPT2_CASES[i % len(tm.GPT2_CASES)]
        raw = client.completions.with_raw_response.create(model=GPT2, prompt=prompt, max_tokens=30, temperature=0)
        return continuation, raw.parse().choices[0].text, int(raw.headers["x-tfx-batch-size"])

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, range(12)))
    assert all(got == want for want, got, _ in answers)
    assert max(size for _, _, size in answers) > 1
    status, _, body = server.request("POST", "/v1/generate", {"model": GPT2, "inputs": [p for p, _ in tm.GPT2_CASES], "do_sample": False}, key=KEY)
    assert status == 200 and [r["output"] for r in body["results"]] == tm.GPT2_SENTENCES
    assert "Traceback" not in "".join(server.log)


def test_an_unknown_batching_mode_is_a_one_line_error(tfx_env):
    assert_clean_error(tfx("serve", "--batching", "sometimes", env=tfx_env), 2, "--batching", "continuous")


def test_logprobs_and_grammars_stay_with_the_window_batcher():
    """transformers' manager has neither the logprob hook nor the grammar: those requests never go there."""
    from tfx.serve.continuous import GREEDY, decoding_mode
    from tfx.spec import GenerateSettings

    assert decoding_mode("generate", GenerateSettings(max_new_tokens=8), {}) == GREEDY
    for settings in (GenerateSettings(max_new_tokens=8, logprobs=0), GenerateSettings(max_new_tokens=8, json_object=True), GenerateSettings(max_new_tokens=8, json_schema='{"type": "object"}')):
        assert decoding_mode("generate", settings, {}) is None
