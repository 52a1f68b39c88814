"""Continuous against window batching in `tfx serve` (issue 15): 16 concurrent clients with staggered arrivals
and mixed lengths, p50 / p99 request latency and total tokens/s, both modes side by side in one run.

    python bench/bench_serve_cb.py                      # GPT-2 small's size (124M), random weights, fp32
    python bench/bench_serve_cb.py --smoke              # a tiny GPT-2 of the same make: a quick check
    python bench/bench_serve_cb.py --rounds 3 --out /tmp/cb.md

The model is GPT2Config() with random weights, saved into a temporary Hugging Face cache as
tfx-bench/gpt2-small, with a byte-level tokenizer padded to GPT-2's 50,257 ids. It has no end-of-text id, so
every request makes exactly its max_tokens (min_new_tokens would force the lengths too, but transformers'
continuous batching has no per-request processor for it: such requests go to the window batcher, which is
not what is measured). Each round, the 16 clients send one greedy /v1/completions request each, at arrival
times drawn once (uniform over --spread seconds) with max_tokens drawn from 8..128; the same schedule runs
against a `--batching window` and a `--batching continuous` server (both up, torch pinned to --threads
threads each, rounds alternating which goes first). The greedy texts of the two modes are compared."""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

REPO = "tfx-bench/gpt2-small"
MODES = ("window", "continuous")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a 2-layer GPT-2 of the same make and 1 round: a quick check")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, help="schedules run against each mode (default 2; smoke 1)")
    parser.add_argument("--spread", type=float, default=4.0, help="arrivals are uniform over this many seconds")
    parser.add_argument("--min-tokens", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each server (OMP_NUM_THREADS)")
    parser.add_argument("--scenarios", default="mixed,buckets", help="mixed: max_tokens any of 8..128; buckets: one of 8, 16, 32, 64, 128")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.smoke else 2)

    with tempfile.TemporaryDirectory(prefix="tfx-bench-cb-") as cache:
        started = time.monotonic()
        build_model(Path(cache), args.smoke)
        print(f"model built in {time.monotonic() - started:.0f} s", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
        env.update(HF_HUB_CACHE=cache, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        load_before = os.getloadavg()
        servers = {mode: Server(mode, env) for mode in MODES}
        try:
            for server in servers.values():  # first-call costs (the manager's start) are not what is measured
                server.complete("Warm up", 8)
            rng = random.Random(15)
            runs: dict[str, dict[str, list[dict]]] = {}
            for scenario in args.scenarios.split(","):
                runs[scenario] = {mode: [] for mode in MODES}
                buckets = [n for n in (8, 16, 32, 64, 128, 256, 512) if args.min_tokens <= n <= args.max_tokens]
                for r in range(rounds):
                    lengths = [rng.randint(args.min_tokens, args.max_tokens) if scenario == "mixed" else rng.choice(buckets) for _ in range(args.clients)]
                    schedule = [(rng.uniform(0, args.spread), n, f"Client {i} says: once upon a time there was") for i, n in enumerate(lengths)]
                    for mode in MODES if r % 2 == 0 else MODES[::-1]:
                        result = one_round(servers[mode], schedule)
                        runs[scenario][mode].append(result)
                        print(f"{scenario} round {r + 1} {mode}: {summary(result)}", file=sys.stderr)
        finally:
            for server in servers.values():
                server.stop()
        load_after = os.getloadavg()
    table = report(args, rounds, runs, load_before, load_after)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


def build_model(cache: Path, smoke: bool) -> None:
    """GPT2Config() (or a 2-layer one for --smoke) with random weights, no end-of-text id, in an HF cache."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    commit = "0" * 40
    repo = cache / ("models--" + REPO.replace("/", "--"))
    out = repo / "snapshots" / commit
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    torch.manual_seed(0)
    config = GPT2Config(bos_token_id=None, eos_token_id=None, **({"n_layer": 2, "n_embd": 128, "n_head": 4} if smoke else {}))
    model = GPT2LMHeadModel(config).eval()
    model.generation_config = GenerationConfig(do_sample=False)
    model.save_pretrained(out)
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    letters, n = "abcdefghijklmnopqrstuvwxyz", 0
    while len(vocab) < config.vocab_size - 1:  # made-up words, so random ids decode to readable text
        word, k = "", n
        while True:
            word, k = word + letters[k % 26], k // 26
            if not k:
                break
        vocab.setdefault("Ġ" + word, len(vocab))
        n += 1
    vocab["<|endoftext|>"] = config.vocab_size - 1
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    eos = "<|endoftext|>"
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=eos, eos_token=eos, unk_token=eos, model_max_length=1024).save_pretrained(out)


class Server:
    def __init__(self, batching: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfx", "serve", "--port", "0", "-m", REPO, "--keep-alive", "-1", "--quiet", "--batching", batching, "--max-tokens-cap", "1000"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.log: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            for raw in self.proc.stderr:
                self.log.append(raw.decode("utf-8", "replace"))
                if "serving on" in self.log[-1]:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(300)
        found = [m.group(1) for line in self.log if (m := re.search(r"serving on (http://\S+)", line))]
        if not found:
            self.stop()
            raise SystemExit("tfx serve did not start:\n" + "".join(self.log))
        parts = urlsplit(found[0])
        self.host, self.port = parts.hostname, parts.port

    def complete(self, prompt: str, max_tokens: int) -> tuple[str, int, int]:
        """One greedy /v1/completions request -> (text, completion tokens, the batch size it reports)."""
        body = json.dumps({"model": REPO, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=900)
        try:
            conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = json.loads(response.read())
            if response.status != 200:
                raise SystemExit(f"the server answered {response.status}: {data}")
            return data["choices"][0]["text"], data["usage"]["completion_tokens"], int(response.getheader("x-tfx-batch-size"))
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def one_round(server: Server, schedule: list[tuple[float, int, str]]) -> dict:
    """Each client waits for its arrival time, then sends its request; -> latencies, texts, tokens, wall."""
    start = time.monotonic() + 0.2

    def client(item):
        at, max_tokens, prompt = item
        time.sleep(max(0.0, start + at - time.monotonic()))
        sent = time.monotonic()
        text, tokens, batch = server.complete(prompt, max_tokens)
        done = time.monotonic()
        if tokens != max_tokens:
            raise SystemExit(f"asked for {max_tokens} tokens, got {tokens}")
        return {"latency": done - sent, "text": text, "tokens": tokens, "batch": batch, "sent": sent, "done": done}

    with ThreadPoolExecutor(len(schedule)) as pool:
        answers = list(pool.map(client, schedule))
    wall = max(a["done"] for a in answers) - min(a["sent"] for a in answers)
    return {"answers": answers, "wall": wall, "tokens": sum(a["tokens"] for a in answers)}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def stats(results: list[dict]) -> dict[str, float]:
    latencies = [a["latency"] for r in results for a in r["answers"]]
    return {
        "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "mean": statistics.mean(latencies),
        "tps": sum(r["tokens"] for r in results) / sum(r["wall"] for r in results), "batch": max(a["batch"] for r in results for a in r["answers"]),
        "n": len(latencies),
    }  # fmt: skip


def summary(result: dict) -> str:
    s = stats([result])
    return f"p50 {s['p50']:.2f} s, p99 {s['p99']:.2f} s, {s['tps']:.1f} tokens/s, wall {result['wall']:.1f} s"


def report(args, rounds: int, runs: dict[str, dict[str, list[dict]]], load_before, load_after) -> str:
    what = "2-layer GPT-2 (smoke)" if args.smoke else "GPT-2 small size (124M), random weights, fp32"
    lines = [
        f"{what}; {args.clients} clients x {rounds} rounds per scenario, arrivals uniform over {args.spread:g} s, greedy;",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads} per server; {datetime.date.today()};",
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        "",
        "| max_tokens | batching | p50 latency | p99 latency | mean latency | total tokens/s | largest batch reported | same text |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, by_mode in runs.items():
        w, c = stats(by_mode["window"]), stats(by_mode["continuous"])
        same = sum(a["text"] == b["text"] for rw, rc in zip(by_mode["window"], by_mode["continuous"]) for a, b in zip(rw["answers"], rc["answers"]))
        lengths = f"{args.min_tokens}..{args.max_tokens}" if scenario == "mixed" else "8/16/32/64/128"
        lines += [
            f"| {lengths} | window | {w['p50']:.2f} s | {w['p99']:.2f} s | {w['mean']:.2f} s | {w['tps']:.1f} | {w['batch']} | |",
            f"| {lengths} | continuous | {c['p50']:.2f} s | {c['p99']:.2f} s | {c['mean']:.2f} s | {c['tps']:.1f} | {c['batch']} | {same}/{w['n']} |",
            f"| {lengths} | **window / continuous** | {w['p50'] / c['p50']:.2f}x | **{w['p99'] / c['p99']:.2f}x** | {w['mean'] / c['mean']:.2f}x | {c['tps'] / w['tps']:.2f}x (c / w) | | |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
