"""`tfx models` shows the cache (issue 21, item 4): cached models outside tfx's catalogue, with the family
and tasks their config.json gives and the parameters their safetensors headers count (the reference: the
safetensors library's own reading of the file), `--cached`, `--format json`, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clihelp import tfx

PROBE = """
import sys
from tfx.cli import app
try:
    app(["models", "--cached", "--format", "json"], prog_name="tfx", standalone_mode=False)
except SystemExit:
    pass
print("\\nPROBE", sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""


def snapshot(cache: Path, repo_id: str) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


def test_uncatalogued_cached_models_appear_with_family_tasks_and_size(tfx_env, hub_cache):
    from safetensors import safe_open

    r = tfx("models", "--format", "json", env=tfx_env)
    assert r.code == 0, r.err
    entries = {e["name"]: e for e in json.loads(r.out)}
    expected = {
        "tfx-test/tiny-sst2": ("encoder-only", ["classify"]),
        "tfx-test/tiny-ner": ("encoder-only", ["ner"]),
        "tfx-test/tiny-minilm": ("encoder-only", ["embed", "rank"]),
        "tfx-test/tiny-chat": ("decoder-only", ["generate"]),
        "tfx-test/tiny-t5": ("encoder-decoder", ["translate", "summarize", "generate"]),
    }
    for name, (family, tasks) in expected.items():
        e = entries[name]
        assert (e["family"], e["tasks"], e["cached"], e["catalogued"]) == (family, tasks, True, False), e
        assert e["size_on_disk"] > 0
    with safe_open(str(snapshot(hub_cache, "tfx-test/tiny-sst2") / "model.safetensors"), "np") as f:
        params = sum(int(__import__("math").prod(f.get_slice(k).get_shape())) for k in f.keys())
    assert entries["tfx-test/tiny-sst2"]["params"] == params
    assert entries["gpt2"]["catalogued"] and not entries["gpt2-xl"]["cached"]  # the catalogue is still there
    text = tfx("models", env=tfx_env)
    row = next(line for line in text.lines if line.startswith("tfx-test/tiny-sst2 "))
    assert "classify" in row and "in the cache: DistilBertForSequenceClassification" in row


def test_cached_lists_only_the_cache(tfx_env):
    from tfx import hub

    r = tfx("models", "--cached", "--format", "json", env=tfx_env)
    assert r.code == 0, r.err
    entries = json.loads(r.out)
    assert entries and all(e["cached"] for e in entries)
    listed = {e["repo_id"] for e in entries}
    uncatalogued = {m.repo_id for m in hub.cached_models() if m.repo_id.startswith("tfx-test/")}
    assert uncatalogued <= listed and "openai-community/gpt2-xl" not in listed


def test_models_never_imports_torch(tfx_env):
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=tfx_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\nPROBE ")[-1].strip() == "[]"
    assert "tfx-test/tiny-sst2" in proc.stdout  # it did list the cache
