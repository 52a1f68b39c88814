"""What a resident `tfx serve` buys: per-call latency of `tfx generate --server` against cold `tfx generate`
calls, and the throughput of concurrent requests (batched by the server) against sequential ones.

    python bench/bench_serve.py                 # GPT-2 small's real size, random weights (built once, ~0.5 GB)
    python bench/bench_serve.py --smoke         # the tiny test GPT-2: a quick check for CI
    python bench/bench_serve.py --out bench/serve.md

Cold and server calls are interleaved, so a drift in the machine's speed hits both alike. The figures are
printed as a markdown table (and written to --out)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
TINY_MODEL = "tfx-test/tiny-gpt2"
PROMPT = "Once upon a time"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model, few calls: a quick check that it all runs")
    parser.add_argument("--calls", type=int, help="sequential CLI calls of each kind (default 20; smoke 3)")
    parser.add_argument("--concurrency", type=int, help="requests sent at once, and one by one (default 32; smoke 8)")
    parser.add_argument("--new-tokens", type=int, help="tokens generated per request (default 32; smoke 8)")
    parser.add_argument("--hf-cache", type=Path, help="smoke: an HF cache that already holds the tiny models")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    calls = args.calls or (3 if args.smoke else 20)
    concurrency = args.concurrency or (8 if args.smoke else 32)
    new_tokens = args.new_tokens or (8 if args.smoke else 32)

    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    if args.smoke:
        env["HF_HUB_CACHE"] = str(tiny_cache(args.hf_cache))
        model, what = TINY_MODEL, "tiny test GPT-2 (smoke)"
    else:
        model, what = str(random_gpt2()), "GPT-2 small size (124M), random weights, fp32"

    started = time.monotonic()
    server = Server(model, env)
    startup = time.monotonic() - started
    try:
        cold, warm, same = cli_calls(model, env, server.url, calls, new_tokens)
        seq, conc = throughput(server, model, concurrency, new_tokens)
    finally:
        server.stop()
    table = report(what, calls, concurrency, new_tokens, startup, cold, warm, same, seq, conc)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


# --- models --------------------------------------------------------------------------------------


def tiny_cache(given: Path | None) -> Path:
    """The tiny GPT-2 in an HF cache: the one given, else built once under bench/.cache."""
    if given:
        return given
    path = CACHE / "tiny-hub"
    if not (path / "models--tfx-test--tiny-gpt2").is_dir():
        sys.path.insert(0, str(ROOT / "tests"))
        import tiny_models

        print("building the tiny GPT-2 ...", file=sys.stderr)
        tiny_models.build_all(path, roles=["gpt2"])
    return path


def random_gpt2() -> Path:
    """GPT-2 small's architecture and vocabulary size with random weights, so timings are real-size with no
    download. Its tokenizer is byte-level with no merges, padded to GPT-2's 50,257 ids."""
    path = CACHE / "gpt2-random"
    if (path / "config.json").exists() and (path / "tokenizer.json").exists():
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    print("building a random-weight GPT-2 small ...", file=sys.stderr)
    torch.manual_seed(0)
    config = GPT2Config()
    GPT2LMHeadModel(config).save_pretrained(path)
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    letters = "abcdefghijklmnopqrstuvwxyz"
    n = 0
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
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=eos, eos_token=eos, unk_token=eos, model_max_length=1024).save_pretrained(path)
    return path


# --- the server ----------------------------------------------------------------------------------


class Server:
    def __init__(self, model: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tfx", "serve", "--port", "0", "-m", model, "--keep-alive", "-1", "--quiet"],
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
        self.url = found[0]
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def complete(self, model: str, prompt: str, new_tokens: int) -> tuple[str, int, int]:
        """One /v1/completions request, greedy -> (text, completion tokens, batch size it ran in)."""
        body = json.dumps({"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
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
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --- measurements --------------------------------------------------------------------------------


def cli_calls(model: str, env: dict[str, str], url: str, calls: int, new_tokens: int):
    """`calls` cold `tfx generate` runs and as many through the server, alternating; -> (cold s, warm s,
    how many pairs printed the same text)."""
    args = [sys.executable, "-m", "tfx", "generate", "-m", model, "--max-new-tokens", str(new_tokens), "--greedy", PROMPT]
    cold, warm, same = [], [], 0
    for i in range(calls):
        outs = []
        for times, extra in ((cold, []), (warm, ["--server", url])):
            started = time.monotonic()
            proc = subprocess.run(args + extra, env=env, capture_output=True, text=True, timeout=600)
            times.append(time.monotonic() - started)
            if proc.returncode != 0:
                raise SystemExit(f"tfx generate {' '.join(extra)} failed:\n{proc.stderr}")
            outs.append(proc.stdout)
        same += outs[0] == outs[1]
        print(f"call {i + 1}/{calls}: cold {cold[-1]:.2f} s, --server {warm[-1]:.2f} s", file=sys.stderr)
    return cold, warm, same


def throughput(server: Server, model: str, n: int, new_tokens: int):
    """n requests one after another, then n at once; -> ((wall s, tokens, largest batch) for each)."""
    prompts = [f"{PROMPT} {'there was ' * (i % 4)}a story number {i}" for i in range(n)]
    server.complete(model, prompts[0], new_tokens)  # warm-up: first-call costs are not what is measured

    def timed(run):
        started = time.monotonic()
        answers = run()
        return time.monotonic() - started, sum(a[1] for a in answers), max(a[2] for a in answers)

    seq = timed(lambda: [server.complete(model, p, new_tokens) for p in prompts])
    print(f"{n} sequential requests: {seq[0]:.2f} s", file=sys.stderr)
    with ThreadPoolExecutor(n) as pool:
        conc = timed(lambda: list(pool.map(lambda p: server.complete(model, p, new_tokens), prompts)))
    print(f"{n} concurrent requests: {conc[0]:.2f} s", file=sys.stderr)
    return seq, conc


def report(what, calls, n, new_tokens, startup, cold, warm, same, seq, conc) -> str:
    def stats(xs):
        p90 = statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) >= 2 else xs[0]
        return statistics.median(xs), p90

    (cold_med, cold_p90), (warm_med, warm_p90) = stats(cold), stats(warm)
    lines = [
        f"### tfx serve: {what}",
        "",
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; {new_tokens} new tokens per request, "
        f"greedy; server start with the model loaded: {startup:.1f} s.",
        "",
        f"| {calls} sequential `tfx generate` calls | cold (no server) | `--server` | speed-up |",
        "|---|---|---|---|",
        f"| median latency per call | {cold_med:.2f} s | {warm_med:.2f} s | {cold_med / warm_med:.1f}x |",
        f"| p90 latency per call | {cold_p90:.2f} s | {warm_p90:.2f} s | {cold_p90 / warm_p90:.1f}x |",
        f"| fastest call | {min(cold):.2f} s | {min(warm):.2f} s | {min(cold) / min(warm):.1f}x |",
        f"| same output | | {same}/{calls} | |",
        "",
        f"| {n} `/v1/completions` requests | sequential | concurrent | speed-up |",
        "|---|---|---|---|",
        f"| wall time | {seq[0]:.2f} s | {conc[0]:.2f} s | {seq[0] / conc[0]:.1f}x |",
        f"| requests/s | {n / seq[0]:.2f} | {n / conc[0]:.2f} | |",
        f"| generated tokens/s | {seq[1] / seq[0]:.0f} | {conc[1] / conc[0]:.0f} | |",
        f"| largest batch the server ran | {seq[2]} | {conc[2]} | |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
