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


# --- property-based: arbitrary bytes through the readers and the pipeline (issue 11) -------------

import threading  # noqa: E402

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from tfx import pipeline  # noqa: E402
from tfx.errors import RecordError  # noqa: E402
from tfx.results import Result  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["text", "id", "input", "error", "x"]), inner, max_size=4),
    max_leaves=12,
)
# A line: raw bytes, a JSON value (objects with "text" and reserved names among them), or JSON with bytes
# spliced in; joined by newlines, sometimes with a carriage return or a missing final newline.
_line = st.one_of(
    st.binary(max_size=80),
    _json.map(lambda v: json.dumps(v).encode()),
    st.tuples(_json.map(lambda v: json.dumps(v).encode()), st.binary(max_size=8), st.integers(0, 40)).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
    st.sampled_from(HOSTILE + [b"NaN", b"{", b'{"text": 1}', b"\r", b" ", b'{"text": "a\\u0000b"}', b'"\\ud800"']),
)
_input = st.tuples(st.lists(_line.map(lambda b: b.replace(b"\n", b"")), max_size=12), st.booleans()).map(
    lambda t: b"\n".join(t[0]) + (b"\n" if t[1] and t[0] else b"")
)


def _n_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


class Echo:
    """A runner that refuses texts with "bad" in them and echoes the rest."""

    batch_size = 3

    def check(self, text):
        if "bad" in text:
            raise RecordError("bad record")

    def cost(self, text):
        return len(text)

    def run(self, texts):
        return [Result(output=t[::-1]) for t in texts]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(_input, st.binary(max_size=600)), fmt=st.sampled_from(["text", "jsonl", "tsv"]))
def test_any_bytes_give_one_record_per_line(data, fmt):
    records = list(io.read_records([], None, fmt, stdin=stdio.BytesIO(data)))
    assert len(records) == _n_lines(data)
    assert [r.line for r in records] == list(range(1, len(records) + 1))
    assert all(isinstance(r.text, str) and (r.error is None or isinstance(r.error, str)) for r in records)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_input, fmt=st.sampled_from(["text", "jsonl", "tsv"]), out_fmt=st.sampled_from(["text", "jsonl", "tsv"]))
def test_any_bytes_through_the_pipeline_with_keep_going_give_n_records(data, fmt, out_fmt):
    out, err = stdio.StringIO(), stdio.StringIO()
    records = io.read_records([], None, fmt, stdin=stdio.BytesIO(data))
    code = pipeline.run(records, Echo(), io.Writer(out_fmt, out=out, err=err), keep_going=True)
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == _n_lines(data)
    assert code in (0, 1)
    if out_fmt == "jsonl":
        for line in lines[:-1]:
            assert isinstance(json.loads(line), dict)  # every line is JSON (no NaN written back)


def test_a_huge_line_is_skipped_in_pieces_and_the_run_goes_on(monkeypatch):
    monkeypatch.setattr(io, "MAX_LINE_BYTES", 64 << 10)
    data = b"ok\n" + b"z" * (1 << 20) + b"\nok again\n"
    out, err = stdio.StringIO(), stdio.StringIO()
    code = pipeline.run(io.read_records([], None, "text", stdin=stdio.BytesIO(data)), Echo(), io.Writer("text", out=out, err=err), keep_going=True)
    assert code == 1 and out.getvalue().split("\n") == ["ko", "", "niaga ko", ""]
    assert "line 2: the line is 1,048,577 bytes, over tfx's limit" in err.getvalue()


def test_the_reader_thread_waits_on_the_byte_bound(monkeypatch):
    """Records of 1 MiB each with a 4 MiB read-ahead: the reader never runs more than a few ahead."""
    monkeypatch.setattr(pipeline, "QUEUE_BYTES", 4 << 20)
    read = []

    def records():
        for i in range(64):
            read.append(i)
            yield io.Record(i, i + 1, "x", size=1 << 20)

    q = pipeline.prefetch(records())
    threading.Event().wait(0.3)
    assert len(read) <= 6  # 4 queued, one waiting to be put, one being made
    got = [q.get() for _ in range(65)]
    assert got[-1] is None and len(read) == 64
