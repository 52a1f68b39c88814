"""Hostile JSONL lines: each becomes that line's error record (with its id where it has one) and the run
goes on under --keep-going: N records in, N records out."""

from __future__ import annotations

import io as stdio
import json

from clihelp import tfx

from tfx import io

BERT = "tfx-test/tiny-bert"
PARIS = "Paris is the [MASK] of France."
HOSTILE = [
    b'{"id": 1, "text": "a", "n": ' + b"9" * 5000 + b"}",  # int past Python's 4,300-digit limit
    b"[" * 100_000 + b"]" * 100_000,  # nesting that would overflow the recursion limit
    b'{"id": 3, "text": "x", "v": NaN}',  # not JSON: written back it would make the output unreadable
    b'{"id": 4, "text": "caf\xe9 [MASK]"}',  # invalid UTF-8 inside a record with an id
]


def test_each_hostile_line_is_its_own_error():
    records = list(io.read_records([], None, "jsonl", stdin=stdio.BytesIO(b"\n".join(HOSTILE) + b"\n")))
    assert [r.line for r in records] == [1, 2, 3, 4]
    assert all(r.error for r in records)
    assert "nested too deeply" in records[1].error and "NaN" in records[2].error
    assert records[3].extra == {"id": 4} and "UTF-8" in records[3].error


def test_keep_going_keeps_the_line_count(tfx_env):
    good = json.dumps({"id": 0, "text": PARIS}).encode()
    stdin = b"\n".join([good, *HOSTILE, good]) + b"\n"
    r = tfx("fill-mask", "-m", BERT, "--input-format", "jsonl", "--format", "jsonl", "--keep-going", env=tfx_env, stdin=stdin)
    assert r.code == 1 and "Traceback" not in r.err
    out = [json.loads(line) for line in r.lines]  # every line is JSON (no NaN written back)
    assert len(out) == 6
    assert [("error" in o) for o in out] == [False, True, True, True, True, False]
    assert out[4]["id"] == 4 and out[0]["output"] == out[5]["output"] == "Paris is the capital of France."
