"""tfx as a Unix filter, at the process level with real pipes: order, streaming, broken pipes, SIGINT,
bad records, pass-through fields, bounded memory."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
import tiny_models as tm
from clihelp import read_pty, tfx

BERT = "tfx-test/tiny-bert"
CASES = tm.FILL_MASK_CASES


def start(args: list[str], env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tfx", *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


class LineReader:
    """Lines from a pipe with a time-out; reads the raw fd so select() sees what is really pending."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buffer = b""

    def line(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                return b""
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self.buffer += chunk
        line, sep, self.buffer = self.buffer.partition(b"\n")
        return line + sep

    def rest(self) -> bytes:
        data = self.buffer
        while chunk := os.read(self.fd, 65536):
            data += chunk
        self.buffer = b""
        return data


def test_order_is_kept_when_batching_sorts_by_length(tfx_env):
    # Long and short inputs interleaved: batches are formed by length, output stays in input order.
    import re

    lines = []
    for i in range(40):
        case, _ = CASES[i % len(CASES)]
        lines.append(case if i % 3 == 0 else f"Record {i} says: " + case[:-1] + " and so on" * (i % 7) + ".")
    stdin = "\n".join(lines) + "\n"
    batched = tfx("fill-mask", "-m", BERT, "--batch-size", "3", env=tfx_env, stdin=stdin)
    assert batched.code == 0, batched.err
    assert len(batched.lines) == len(lines)
    for text, out in zip(lines, batched.lines):
        before, after = text.split("[MASK]")
        assert re.fullmatch(re.escape(before) + r"\S+" + re.escape(after), out), (text, out)
    for i in range(0, 40, 3):  # the memorised sentences, unpadded, get their memorised word
        case, word = CASES[i % len(CASES)]
        assert batched.lines[i] == case.replace("[MASK]", word)
    one_by_one = tfx("fill-mask", "-m", BERT, "--batch-size", "1", env=tfx_env, stdin=stdin)
    assert one_by_one.lines == batched.lines


def test_empty_lines_get_empty_records_and_formats(tfx_env):
    stdin = f"{CASES[0][0]}\n\n{CASES[1][0]}\n"
    text = tfx("fill-mask", "-m", BERT, env=tfx_env, stdin=stdin)
    assert text.out.split("\n") == [CASES[0][0].replace("[MASK]", CASES[0][1]), "", CASES[1][0].replace("[MASK]", CASES[1][1]), ""]
    tsv = tfx("fill-mask", "-m", BERT, "--format", "tsv", env=tfx_env, stdin=stdin)
    assert tsv.lines[0] == CASES[0][0] + "\t" + CASES[0][0].replace("[MASK]", CASES[0][1])
    assert len(tsv.lines) == 3


def test_newlines_inside_outputs_stay_on_one_line(tfx_env):
    # The tiny GPT-2 continues this prompt; the prompt's own newline is part of the output text.
    prompt = 'Line one\\nOnce upon a time'
    r = tfx("generate", "-m", "tfx-test/tiny-gpt2", "--input-format", "jsonl", "--max-new-tokens", "5", env=tfx_env, stdin=json.dumps({"text": "Line one\nOnce upon a time"}) + "\n")
    assert r.code == 0, r.err
    assert len(r.lines) == 1 and r.lines[0].startswith(prompt)
    exact = tfx("generate", "-m", "tfx-test/tiny-gpt2", "--input-format", "jsonl", "--format", "jsonl", "--max-new-tokens", "5", env=tfx_env, stdin=json.dumps({"text": "Line one\nOnce upon a time"}) + "\n")
    assert json.loads(exact.out)["output"].startswith("Line one\nOnce upon a time")


def test_jsonl_pass_through_fields(tfx_env):
    stdin = "".join(json.dumps({"id": i, "text": c, "meta": {"k": [i]}}) + "\n" for i, (c, _) in enumerate(CASES))
    r = tfx("fill-mask", "-m", BERT, "--input-format", "jsonl", "--format", "jsonl", env=tfx_env, stdin=stdin)
    assert r.code == 0, r.err
    records = [json.loads(line) for line in r.lines]
    assert [(x["id"], x["meta"], x["input"]) for x in records] == [(i, {"k": [i]}, c) for i, (c, _) in enumerate(CASES)]
    assert [x["output"] for x in records] == [c.replace("[MASK]", w) for c, w in CASES]


def test_input_file(tfx_env, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("".join(c + "\n" for c, _ in CASES))
    r = tfx("fill-mask", "-m", BERT, "--input", str(path), env=tfx_env)
    assert r.lines == [c.replace("[MASK]", w) for c, w in CASES]
    missing = tfx("fill-mask", "-m", BERT, "--input", str(tmp_path / "nope.txt"), env=tfx_env)
    assert missing.code == 1 and "cannot read --input" in missing.err and "Traceback" not in missing.err


BAD = [
    ("invalid JSON", "jsonl", b'{"text": "oops'),
    ('no "text" field', "jsonl", b'{"txt": "Paris is the [MASK] of France."}'),
    ("invalid UTF-8", "text", b"Paris is the \xff[MASK] of France."),
    ("no mask", "text", b"There is nothing to fill here."),
]


def _stdin_with_bad_line(fmt: str, bad: bytes) -> tuple[bytes, list[str]]:
    good = [c for c, _ in CASES]
    encode = (lambda t: json.dumps({"text": t}).encode()) if fmt == "jsonl" else (lambda t: t.encode())
    lines = [encode(t) for t in good[:2]] + [bad] + [encode(t) for t in good[2:]]
    return b"\n".join(lines) + b"\n", good


@pytest.mark.parametrize("needle, fmt, bad", BAD)
def test_bad_record_stops_after_writing_everything_before_it(tfx_env, needle, fmt, bad):
    stdin, good = _stdin_with_bad_line(fmt, bad)
    r = tfx("fill-mask", "-m", BERT, "--input-format", fmt, "--batch-size", "2", env=tfx_env, stdin=stdin)
    assert r.code == 1
    assert r.lines == [c.replace("[MASK]", w) for c, w in CASES[:2]]
    assert "line 3" in r.err and needle in r.err and "--keep-going" in r.err
    assert "Traceback" not in r.err


@pytest.mark.parametrize("needle, fmt, bad", BAD)
def test_keep_going_writes_an_error_record_and_goes_on(tfx_env, needle, fmt, bad):
    stdin, good = _stdin_with_bad_line(fmt, bad)
    r = tfx("fill-mask", "-m", BERT, "--input-format", fmt, "--format", "jsonl", "--keep-going", env=tfx_env, stdin=stdin)
    assert r.code == 1, r.err
    records = [json.loads(line) for line in r.lines]
    assert len(records) == len(CASES) + 1
    assert needle in records[2]["error"] and "output" not in records[2]
    assert [x["output"] for i, x in enumerate(records) if i != 2] == [c.replace("[MASK]", w) for c, w in CASES]
    assert "line 3" in r.err
    text = tfx("fill-mask", "-m", BERT, "--input-format", fmt, "--keep-going", env=tfx_env, stdin=stdin)
    assert text.code == 1 and text.lines[2] == "" and len(text.lines) == len(CASES) + 1


def test_too_long_record_with_no_truncate(tfx_env):
    long = "Paris is the [MASK] of France." + " and so on" * 200
    stdin = f"{CASES[0][0]}\n{long}\n{CASES[1][0]}\n"
    r = tfx("fill-mask", "-m", BERT, "--no-truncate", "--keep-going", env=tfx_env, stdin=stdin)
    assert r.code == 1
    assert r.lines == [CASES[0][0].replace("[MASK]", CASES[0][1]), "", CASES[1][0].replace("[MASK]", CASES[1][1])]
    assert "line 2" in r.err and "tokens" in r.err


def test_head_ends_quietly(tfx_env):
    stdin = (CASES[0][0] + "\n") * 3000
    proc = subprocess.run(
        f"{sys.executable} -m tfx fill-mask -m {BERT} | head -1",
        shell=True, input=stdin.encode(), capture_output=True, env=tfx_env, executable="/bin/bash", timeout=120,
    )  # fmt: skip
    assert proc.stdout.decode() == CASES[0][0].replace("[MASK]", CASES[0][1]) + "\n"
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr, proc.stderr
    status = subprocess.run(
        f"set -o pipefail; {sys.executable} -m tfx fill-mask -m {BERT} | head -1 >/dev/null; echo $?",
        shell=True, input=stdin.encode(), capture_output=True, env=tfx_env, executable="/bin/bash", timeout=120,
    )  # fmt: skip
    assert status.stdout.decode().strip() in {"0", "141"}


def test_first_results_arrive_while_stdin_is_open_and_sigint_exits_130(tfx_env):
    proc = start(["fill-mask", "-m", BERT], tfx_env)
    try:
        for case, _ in CASES:
            proc.stdin.write((case + "\n").encode())
        proc.stdin.flush()
        reader = LineReader(proc.stdout)
        got = [reader.line(60) for _ in CASES]  # stdin is still open
        assert [g.decode().rstrip("\n") for g in got] == [c.replace("[MASK]", w) for c, w in CASES]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        rest, err = reader.rest(), proc.stderr.read()
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert rest == b""
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err


def test_sigint_during_a_long_run_keeps_finished_records(tfx_env):
    proc = start(["generate", "-m", "tfx-test/tiny-gpt2", "--batch-size", "1", "--max-new-tokens", "40"], tfx_env)
    proc.stdin.write(("Once upon a time\n" * 2000).encode())
    proc.stdin.close()
    reader = LineReader(proc.stdout)
    first = reader.line(60)
    assert first.startswith(b"Once upon a time")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    rest, err = reader.rest(), proc.stderr.read()
    assert proc.returncode == 130
    lines = (first + rest).decode().splitlines()
    assert 1 <= len(lines) < 2000
    assert all(line.startswith("Once upon a time") for line in lines)  # no half-written record
    assert b"Traceback" not in err


def _peak_rss_kb(args: list[str], env: dict, n_lines: int) -> tuple[int, int, float]:
    """Peak RSS (kB) of a tfx run fed n_lines slowly enough to stream; lines out; seconds to first line."""
    code = (
        "import resource, subprocess, sys, select\n"
        f"p = subprocess.Popen({[sys.executable, '-m', 'tfx', *args]!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        f"line = ({CASES[0][0] + chr(10)!r}).encode()\n"
        "p.stdin.write(line * 64); p.stdin.flush()\n"
        "ready, _, _ = select.select([p.stdout], [], [], 120)\n"
        "first = p.stdout.readline() if ready else b''\n"
        "import threading\n"
        f"def feed():\n    p.stdin.write(line * ({n_lines} - 64)); p.stdin.close()\n"
        "t = threading.Thread(target=feed); t.start()\n"
        "n = 1 + sum(1 for _ in p.stdout)\n"
        "t.join()\n"
        "p.wait()\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, n, int(bool(first)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=600)
    rss, n, first = out.stdout.decode().split()
    return int(rss), int(n), int(first)


def test_ten_thousand_lines_stream_with_bounded_memory(tfx_env):
    small_rss, small_n, _ = _peak_rss_kb(["fill-mask", "-m", BERT, "-q"], tfx_env, 500)
    big_rss, big_n, first_before_close = _peak_rss_kb(["fill-mask", "-m", BERT, "-q"], tfx_env, 10_000)
    assert (small_n, big_n) == (500, 10_000)
    assert first_before_close  # a result came back while most of the input was not even written
    assert big_rss - small_rss < 60_000, (small_rss, big_rss)  # 20x the input, < 60 MB more memory


def _run_with_tty_stderr(args: list[str], env: dict, stdin: bytes) -> tuple[bytes, bytes]:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tfx", *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    proc.stdin.write(stdin)
    proc.stdin.close()
    err = b"".join(read_pty(master))
    out = proc.stdout.read()
    proc.wait()
    os.close(master)
    return out, err


def test_progress_only_on_a_terminal_stderr_never_on_stdout(tfx_env):
    stdin = ("".join(c + "\n" for c, _ in CASES) * 50).encode()
    env = dict(tfx_env, TERM="xterm")
    out, err = _run_with_tty_stderr(["fill-mask", "-m", BERT, "--batch-size", "4"], env, stdin)
    assert b"records" in err and b"rec/s" in err
    assert b"\x1b" not in out and len(out.splitlines()) == 200
    out_q, err_q = _run_with_tty_stderr(["fill-mask", "-m", BERT, "-q"], env, stdin)
    assert b"rec/s" not in err_q and out_q == out
    piped = tfx("fill-mask", "-m", BERT, env=env, stdin=stdin)
    assert "rec/s" not in piped.err and piped.err == ""


def test_token_streaming_on_a_terminal(tfx_env):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tfx", "generate", "-m", "tfx-test/tiny-gpt2", tm.GPT2_PROMPT], env=tfx_env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = read_pty(master)
    proc.wait()
    os.close(master)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert text == tm.GPT2_TEXT + "\n"
    assert b"\x1b" not in b"".join(chunks)
    assert len(chunks) > 1  # arrived in pieces, as tokens were made


def test_no_color_and_dumb_terminals_are_respected_on_stderr(tfx_env):
    import re

    stdin = ("".join(c + "\n" for c, _ in CASES) * 20).encode()
    _, dumb = _run_with_tty_stderr(["fill-mask", "-m", BERT, "--batch-size", "4"], dict(tfx_env, TERM="dumb"), stdin)
    assert b"\x1b" not in dumb
    _, plain = _run_with_tty_stderr(["fill-mask", "-m", BERT, "--batch-size", "4"], dict(tfx_env, TERM="xterm", NO_COLOR="1"), stdin)
    assert b"rec/s" in plain
    assert not re.search(rb"\x1b\[[0-9;]*[34]\d(;\d+)*m", plain)  # no colour codes, only cursor moves
