"""Load test of `tfx serve` (issue 20, "Tests"): well-behaved clients and hostile ones at once, for a bounded time.

Starts `tfx serve --port 0` (loopback only) on the tiny test models, fetches one reference answer per kind,
then runs for --seconds:
- --clients well-behaved clients (default 8): half POST /v1/completions on tfx-test/tiny-gpt2 (max_tokens 8,
  temperature 0), half POST /v1/embeddings on tfx-test/tiny-minilm; every answer is checked against the
  reference (same text; same vector within 1e-4);
- hostile clients, one of each: 8 MB prompts to /v1/completions, bodies cut mid-send (raw socket,
  Content-Length larger than what is sent, then close), streams dropped before any text, cross-origin
  text/plain posts.
Reports answers per kind, p50/p99 latency of the well-behaved, the server's RSS and peak RSS (VmRSS /
VmHWM of /proc/PID/status) before and after the load, wrong or lost answers (must be 0), any 5xx, and
tracebacks in the server's log. Every loop stops by itself at the deadline; exit 1 when an answer was wrong
or lost, or a 5xx came back.

    python bench/bench_serve_load.py --seconds 30            # the tests' tiny-model cache
    python bench/bench_serve_load.py --hub-cache DIR --json out.json
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPT2 = "tfx-test/tiny-gpt2"
MINILM = "tfx-test/tiny-minilm"
PROMPT = "The quick brown fox"
EMBED_INPUT = "a sentence to embed"
BIG = 8_000_000  # characters of the hostile prompt: under the default --max-body (8 MiB) with the JSON around it
TEST_ENV = {
    "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TOKENIZERS_PARALLELISM": "false",
}  # fmt: skip  # as tests/conftest.py HF_TEST_ENV


def find_cache() -> str:
    """The tests' tiny-model hub cache that holds both models (.pytest_cache/tfx-tiny-models/*/hub)."""
    for hub in sorted(glob.glob(str(ROOT / ".pytest_cache" / "tfx-tiny-models" / "*" / "hub"))):
        if all((Path(hub) / ("models--" + m.replace("/", "--"))).is_dir() for m in (GPT2, MINILM)):
            return hub
    sys.exit("no tiny-model cache with both models: run the test suite once (tests/test_serve.py), or pass --hub-cache DIR")


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of the process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) // 1024
    return out


class Server:
    def __init__(self, hub_cache: str, extra: list[str]):
        env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
        env.update(TEST_ENV, HF_HUB_CACHE=hub_cache, HF_HOME=env.get("HF_HOME") or str(Path(hub_cache).parent / "hf-home"))
        cmd = [sys.executable, "-m", "tfx", "serve", "--host", "127.0.0.1", "--port", "0", "-m", GPT2, "-m", MINILM, "--keep-alive", "-1", *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.log.append(line)
                if "serving on http://" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(180)
        found = [m for line in self.log if (m := re.search(r"serving on http://([^:/\s]+):(\d+)", line))]
        if not found:
            self.stop()
            sys.exit("tfx serve did not start:\n" + "".join(self.log[-30:]))
        self.host, self.port = found[0].group(1), int(found[0].group(2))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.latency: dict[str, list[float]] = {}
        self.wrong: list[str] = []
        self.lost: list[str] = []
        self.server_errors: list[str] = []

    def add(self, kind: str, status: int | str, seconds: float | None = None) -> None:
        with self.lock:
            key = f"{kind} {status}"
            self.counts[key] = self.counts.get(key, 0) + 1
            if seconds is not None:
                self.latency.setdefault(kind, []).append(seconds)
            if isinstance(status, int) and status >= 500:
                self.server_errors.append(key)


def post(server: Server, path: str, body: bytes, headers: dict | None = None, timeout: float = 120) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def completion(server: Server) -> tuple[int, str | None]:
    status, data = post(server, "/v1/completions", json.dumps({"model": GPT2, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}).encode())
    return status, json.loads(data)["choices"][0]["text"] if status == 200 else None


def embedding(server: Server) -> tuple[int, list[float] | None]:
    status, data = post(server, "/v1/embeddings", json.dumps({"model": MINILM, "input": EMBED_INPUT}).encode())
    return status, json.loads(data)["data"][0]["embedding"] if status == 200 else None


def same(kind: str, got, want) -> bool:
    if kind == "generate":
        return got == want
    return got is not None and len(got) == len(want) and max(abs(a - b) for a, b in zip(got, want)) < 1e-4


def well_behaved(server: Server, kind: str, reference, deadline: float, tally: Tally) -> None:
    ask = completion if kind == "generate" else embedding
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            status, got = ask(server)
        except Exception as exc:  # noqa: BLE001 - a lost answer, counted
            tally.add(kind, "lost")
            tally.lost.append(f"{kind}: {type(exc).__name__}: {exc}")
            continue
        tally.add(kind, status, time.monotonic() - start)
        if status != 200:
            tally.lost.append(f"{kind}: HTTP {status}")
        elif not same(kind, got, reference):
            tally.wrong.append(f"{kind}: {str(got)[:80]!r}")


def hostile(server: Server, kind: str, deadline: float, tally: Tally) -> None:
    big = json.dumps({"model": GPT2, "prompt": "word " * (BIG // 5), "max_tokens": 8}).encode()
    while time.monotonic() < deadline:
        try:
            if kind == "big-prompt":
                status, _ = post(server, "/v1/completions", big)
            elif kind == "cut-body":
                with socket.create_connection((server.host, server.port), timeout=30) as s:
                    head = f"POST /v1/completions HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                    s.sendall(head.encode() + b'{"model": "' + GPT2.encode() + b'", "prompt": "half a bo')
                status = "sent"
                time.sleep(0.05)
            elif kind == "dropped-stream":
                conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
                body = {"model": GPT2, "prompt": PROMPT, "max_tokens": 48, "stream": True}
                conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
                response = conn.getresponse()  # the headers; no text read
                status = response.status
                conn.close()
            else:  # cross-origin text/plain, as a page on another origin may send without a preflight
                status, _ = post(server, "/v1/completions", json.dumps({"model": GPT2, "prompt": PROMPT}).encode(), {"Content-Type": "text/plain", "Origin": "http://evil.example"})
            tally.add(kind, status)
        except Exception as exc:  # noqa: BLE001 - the hostile client's own failure, counted
            tally.add(kind, type(exc).__name__)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8, help="well-behaved clients, half generate, half embeddings")
    parser.add_argument("--hub-cache", default=None, help="HF hub cache holding tfx-test/tiny-gpt2 and tiny-minilm")
    parser.add_argument("--no-hostile", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("serve_args", nargs="*", help="more `tfx serve` arguments (after --)")
    args = parser.parse_args()
    load = os.getloadavg()
    server = Server(args.hub_cache or find_cache(), args.serve_args)
    try:
        references = {}
        for kind, ask in (("generate", completion), ("embeddings", embedding)):
            status, references[kind] = ask(server)
            if status != 200:
                sys.exit(f"reference {kind} answered {status}")
        before = memory(server.proc.pid)
        tally = Tally()
        deadline = time.monotonic() + args.seconds
        kinds = ["generate", "embeddings"] * (args.clients // 2) + ["generate"] * (args.clients % 2)
        threads = [threading.Thread(target=well_behaved, args=(server, k, references[k], deadline, tally)) for k in kinds]
        if not args.no_hostile:
            threads += [threading.Thread(target=hostile, args=(server, k, deadline, tally)) for k in ("big-prompt", "cut-body", "dropped-stream", "cross-origin")]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
        time.sleep(1)
        after = memory(server.proc.pid)
    finally:
        server.stop()
    tracebacks = sum("Traceback" in line for line in server.log)
    figures = {
        "seconds": round(wall, 1), "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
        "answers": dict(sorted(tally.counts.items())),
        "p50_ms": {k: round(1000 * percentile(v, 0.5), 1) for k, v in tally.latency.items()},
        "p99_ms": {k: round(1000 * percentile(v, 0.99), 1) for k, v in tally.latency.items()},
        "rss_mb_before": before, "rss_mb_after": after, "wrong": len(tally.wrong), "lost": len(tally.lost),
        "server_5xx": len(tally.server_errors), "tracebacks_in_log": tracebacks,
    }  # fmt: skip
    print(f"| | {'figure':s} |\n|---|---|")
    print(f"| wall time | {figures['seconds']} s (load average {figures['load_before'][0]} before, {figures['load_after'][0]} after) |")
    for key, count in figures["answers"].items():
        print(f"| answers: {key} | {count} |")
    for kind in figures["p50_ms"]:
        print(f"| {kind} p50 / p99 | {figures['p50_ms'][kind]} / {figures['p99_ms'][kind]} ms |")
    print(f"| server RSS / peak before | {before.get('VmRSS')} / {before.get('VmHWM')} MB |")
    print(f"| server RSS / peak after | {after.get('VmRSS')} / {after.get('VmHWM')} MB |")
    print(f"| wrong / lost answers | {figures['wrong']} / {figures['lost']} |")
    print(f"| 5xx answers | {figures['server_5xx']} |")
    print(f"| tracebacks in the server log | {tracebacks} |")
    for line in (tally.wrong + tally.lost)[:10]:
        print("  ", line, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 1 if tally.wrong or tally.lost or tally.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
