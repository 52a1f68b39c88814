"""The benchmark's machinery, end to end on the tiny models (`bench/bench.py --smoke`): it must run and
write its tables. The figures themselves mean nothing at this size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_writes_the_tables(tfx_env, hub_cache, tmp_path):
    out = tmp_path / "RESULTS.md"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--smoke", "--hub-cache", str(hub_cache), "--out", str(out)],
        capture_output=True, text=True, env=tfx_env, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    for heading in ("## Machine", "## generate:", "### Decode rate", "## fill-mask:", "## translate:", "## Start-up", "## Peak RSS", "## Targets"):
        assert heading in text, heading
    assert "| program | wall, whole program (s) |" in text
    generate_rows = [line for line in text.splitlines() if line.startswith("| ") and "model.generate" in line]
    assert len(generate_rows) >= 2
    # tfx agrees with transformers on every record, and the light commands import neither torch nor transformers.
    assert "tfx vs one batched generate 4/4" in text and "tfx took its fast path: True" in text
    assert "none imports either" in text
    assert (tmp_path / "RESULTS.json").exists()


def test_bench_ct2_smoke_writes_its_section(tfx_env, hub_cache, tmp_path):
    """bench/bench_ct2.py --smoke: conversion, every kind of program (transformers, fast GPT-2, ct2 fp32 / int8)
    as its own process, the tables and targets; on the tiny models fp32 CTranslate2 gives transformers' text."""
    pytest.importorskip("ctranslate2")
    out = tmp_path / "ct2.md"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_ct2.py"), "--smoke", "--hub-cache", str(hub_cache), "--out", str(out)],
        capture_output=True, text=True, env=tfx_env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    for heading in ("## CTranslate2 backend", "### GPT-2 small, batch 1", "### Marian", "### Targets", "### CT2 float32 against"):
        assert heading in text, heading
    assert "Conversion on first use" in text and "int8: " in text
    assert "ct2_fp32 = transformers 1/1" in text and "fast = transformers 1/1" in text and "fast path taken: True" in text
    assert "ct2_fp32 = transformers 5/5" in text  # the Marian scenario's 5 sentences
    ct2_rows = [line for line in text.splitlines() if line.startswith("| tfx, ct2")]
    assert len(ct2_rows) == 4 and all(line.endswith("| no / no |") for line in ct2_rows)  # neither torch nor transformers
    assert (tmp_path / "ct2.json").exists()


def test_bench_ct2_replaces_only_its_section(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_ct2

    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\nbench.py's tables\n", encoding="utf-8")
    bench_ct2.write(results, "first\n", replace_section=True)
    bench_ct2.write(results, "second\n", replace_section=True)
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# results\n\nbench.py's tables\n") and "second" in text and "first" not in text
    assert text.count(bench_ct2.START) == 1 and text.count(bench_ct2.END) == 1
