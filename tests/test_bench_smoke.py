"""The benchmark's machinery, end to end on the tiny models (`bench/bench.py --smoke`): it must run and
write its tables. The figures themselves mean nothing at this size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
