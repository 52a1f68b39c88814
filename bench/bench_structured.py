"""What constrained decoding (--json, --json-schema) and --logprobs cost per generated token, side by side in one
process against plain generation, on the tiny test GPT-2 (600 words) and a GPT-2-small-size random model
(124M parameters, 50,257-entry byte-level BPE trained here: bench/models.py).

Every variant runs through the generate task (tasks.open_task, as the CLI does) on the transformers path
(TFX_FAST=0: the fast GPT-2 path takes no logits processor, so plain generation there would measure another
engine), greedy, max_new_tokens fixed, torch pinned to `--threads`. Variants alternate rep by rep after one
warm-up each; the table gives the median CPU time of the process per generated token (time.process_time:
the work done, which a shared machine disturbs far less than wall time) and the wall-clock tokens/s.
The grammar's one-off cost (xgrammar reading the vocabulary + compiling the schema) is timed apart.

    python bench/bench_structured.py [--threads 1] [--reps 5] [--new 64] [--batch 1 8]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

# A schema whose string a random model fills to the end of the budget: every variant makes the same number
# of tokens, so the per-token figures compare like with like.
SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "text": {"type": "string"}}, "required": ["id", "text"]}
VARIANTS = {
    "plain": {},
    "--json": {"json_object": True},
    "--json-schema": {"json_schema": json.dumps(SCHEMA)},
    "--logprobs 5": {"logprobs": 5},
    "--json-schema --logprobs 5": {"json_schema": json.dumps(SCHEMA), "logprobs": 5},
}


def open_generate(model: str, **settings):
    from tfx.spec import GenerateSettings, RunSpec
    from tfx.tasks import open_task

    s = GenerateSettings(**settings)
    s.validate({})
    return open_task(RunSpec("generate", s, model, device="cpu"))


def one_off(model: str, new: int) -> float:
    """Seconds from nothing to the compiled grammar: xgrammar reads the vocabulary, compiles the schema."""
    from tfx.tasks import constrain

    task = open_generate(model, max_new_tokens=new, json_schema=json.dumps({**SCHEMA, "title": "fresh"}))
    constrain.COMPILERS = constrain._Compilers()  # nothing cached
    t0 = time.perf_counter()
    task._constraint()
    return time.perf_counter() - t0


def _grammar(kw: dict) -> bool:
    return "json_schema" in kw or "json_object" in kw


def measure(model: str, batch: int, new: int, reps: int, prompts: list[str]) -> dict[str, dict[str, float]]:
    # without a grammar, min_new_tokens keeps the model from ending early (a grammar may only end at EOS)
    tasks = {name: open_generate(model, max_new_tokens=new, continuation_only=True, **({} if _grammar(kw) else {"min_new_tokens": new}), **kw) for name, kw in VARIANTS.items()}
    texts = prompts[:batch]
    cpu: dict[str, list[float]] = {n: [] for n in tasks}
    wall: dict[str, list[float]] = {n: [] for n in tasks}
    tokens: dict[str, int] = {}
    for rep in range(reps + 1):
        for name, task in tasks.items():
            c0, w0 = time.process_time(), time.perf_counter()
            results = task.run(texts)
            c1, w1 = time.process_time(), time.perf_counter()
            made = sum(r.generated_tokens for r in results)
            if rep == 0:
                continue  # warm-up
            tokens[name] = made
            cpu[name].append((c1 - c0) / made)
            wall[name].append(made / (w1 - w0))
    return {n: {"cpu_ms_per_token": 1000 * statistics.median(cpu[n]), "tokens_per_s": statistics.median(wall[n]), "tokens": tokens[n]} for n in tasks}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--out", default=str(HERE / "RESULTS-structured.json"))
    args = parser.parse_args()

    os.environ["TFX_FAST"] = "0"
    import logging

    logging.getLogger("tfx").setLevel(logging.ERROR)  # a JSON cut at the budget is expected here
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import conftest  # the tiny models' hub cache (offline)
    import models

    tiny_cache = conftest.build_tiny_models_cached()
    big_cache = models.build(HERE / ".cache" / "hub", roles=("gpt2",), log=lambda m: print(m, file=sys.stderr))
    import torch

    torch.set_num_threads(args.threads)
    prompts = models.sentences(max(args.batch), seed=3)
    load0 = os.getloadavg()
    out = {"threads": args.threads, "reps": args.reps, "max_new_tokens": args.new, "load_start": load0, "rows": []}
    for label, cache, repo, new in (("tiny GPT-2 (600 words, 2 layers)", tiny_cache, "tfx-test/tiny-gpt2", min(args.new, 40)), ("GPT-2 small, random (124M, 50,257 words)", big_cache, "openai-community/gpt2", args.new)):
        os.environ["HF_HUB_CACHE"] = str(cache)
        import huggingface_hub.constants as hc

        hc.HF_HUB_CACHE = str(cache)
        compile_s = one_off(repo, new)
        for batch in args.batch:
            figures = measure(repo, batch, new, args.reps, prompts)
            out["rows"].append({"model": label, "batch": batch, "grammar_one_off_s": compile_s, "figures": figures})
            print(json.dumps(out["rows"][-1]), file=sys.stderr)
    out["load_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(out, indent=2))
    print_table(out)


def print_table(out: dict) -> None:
    print(f"threads {out['threads']}, median of {out['reps']}, load average {out['load_start'][0]:.1f} -> {out['load_end'][0]:.1f}")
    print("| model | batch | variant | tokens | CPU ms / token | vs plain | tokens/s (wall) |")
    print("|---|---|---|---|---|---|---|")
    for row in out["rows"]:
        base = row["figures"]["plain"]["cpu_ms_per_token"]
        for name, f in row["figures"].items():
            extra = f["cpu_ms_per_token"] - base
            print(f"| {row['model']} | {row['batch']} | {name} | {f['tokens']} | {f['cpu_ms_per_token']:.2f} | {'' if name == 'plain' else f'{extra:+.2f} ms ({100 * extra / base:+.0f} %)'} | {f['tokens_per_s']:.1f} |")
        print(f"| {row['model']} | | grammar one-off (vocabulary + schema) | | {1000 * row['grammar_one_off_s']:.0f} ms | | |")


if __name__ == "__main__":
    main()
