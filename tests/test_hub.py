"""Models and the Hub: pull, first use, offline rules, Hub failures, search, cache ls/rm, models, env, compare.

Network tests run the real `tfx` (and the real huggingface_hub client) against tests/fake_hub.py, a loopback
server that speaks the Hub's endpoints and records every request; nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import re
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, read_pty, tfx
from fake_hub import FakeHub, files_of

GPT2 = "tfx-test/tiny-gpt2"
# The tiny snapshot holds exactly what running needs (config, generation config, tokenizer, safetensors).
CORE = {"config.json", "generation_config.json", "tokenizer_config.json", "model.safetensors"}
DECOYS = {
    "tf_model.h5": b"\x89HDF\r\n" + os.urandom(4000),
    "flax_model.msgpack": os.urandom(4000),
    "pytorch_model.bin": os.urandom(4000),  # never loadable: picking it would fail the run
    "rust_model.ot": os.urandom(1000),
    "onnx/model.onnx": os.urandom(1000),
    "README.md": b"# tiny gpt2\n",
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
}
TIME_BOUND_S = 10


def snapshot(cache: Path, repo_id: str) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


def serve_tiny_gpt2(hub: FakeHub, cache: Path) -> None:
    hub.add_repo(GPT2, {**files_of(snapshot(cache, GPT2)), **DECOYS}, pipeline_tag="text-generation", downloads=500, likes=7)


@pytest.fixture(scope="module")
def needed(hub_cache) -> set[str]:
    names = set(files_of(snapshot(hub_cache, GPT2)))
    assert CORE <= names and not names & set(DECOYS)
    return names


@pytest.fixture(scope="module")
def fake_hub(hub_cache):
    hub = FakeHub()
    serve_tiny_gpt2(hub, hub_cache)
    hub.add_repo("tfx-test/private-model", {"config.json": b"{}"}, private=True)
    hub.add_repo("tfx-test/gated-model", files_of(snapshot(hub_cache, GPT2)), gated=True)
    # Listing-only entries for search: a more downloaded gpt, another task, and a non-transformers repo.
    hub.add_repo("tfx-test/gpt-big", pipeline_tag="text-generation", downloads=9000, likes=40)
    hub.add_repo("tfx-test/gpt-mask", pipeline_tag="fill-mask", downloads=100000, likes=2)
    hub.add_repo("tfx-test/gpt-keras", pipeline_tag="text-generation", downloads=50000, tags=["keras"])
    with hub:
        yield hub


@pytest.fixture
def online_env(tfx_env, tmp_path, fake_hub):
    """Online (HF_HUB_OFFLINE unset), pointed at the fake Hub, with a fresh empty cache."""
    env = dict(tfx_env)
    env.pop("HF_HUB_OFFLINE", None)
    env["HF_ENDPOINT"] = fake_hub.url
    env["HF_HUB_CACHE"] = str(tmp_path / "cache")
    env["HF_HOME"] = str(tmp_path / "home")  # its own converted-copy store too: `cache rm` removes a repo's copies
    fake_hub.clear()
    return env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(*args: str, env: dict, stdin: str | None = None):
    started = time.monotonic()
    result = tfx(*args, env=env, stdin=stdin, timeout=60)
    return result, time.monotonic() - started


# ---- which files ------------------------------------------------------------------------------------------


def test_select_files_takes_config_tokenizer_and_one_weights_format():
    from tfx.hub import select_files

    needed = sorted(CORE | {"tokenizer.json", "vocab.json", "merges.txt"})
    assert sorted(select_files(needed + list(DECOYS))) == needed
    assert select_files(["config.json", "pytorch_model.bin", "tf_model.h5", "vocab.txt"]) == ["config.json", "vocab.txt", "pytorch_model.bin"]
    sharded = ["config.json", "model.safetensors.index.json", "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors",
               "pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin"]  # fmt: skip
    assert select_files(sharded) == ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert select_files(["config.json", "tf_model.h5", "flax_model.msgpack"]) == ["config.json"]


def test_download_bar_counts_bytes_through_huggingface_hubs_tqdm_hook():
    from tfx.hub import DownloadBar

    bar = DownloadBar(100, "model", enabled=True)
    hook = bar.tqdm_class()
    with hook(total=60, initial=0, desc="model.safetensors", unit="B", unit_scale=True) as progress:
        progress.update(40)
        progress.update_transfer(999)  # network bytes are not file bytes
        progress.set_postfix_str("1 MB/s")
    assert bar.progress.tasks[0].completed == 40
    bar.stop()


# ---- pull and first use ------------------------------------------------------------------------------------


def test_pull_fetches_only_what_running_needs_and_again_is_a_no_op(fake_hub, online_env, needed):
    r = tfx("pull", GPT2, env=online_env)
    assert r.code == 0, r.err
    path = Path(r.out.strip())
    assert path.is_dir() and path.is_relative_to(online_env["HF_HUB_CACHE"])
    assert {p.name for p in path.iterdir()} == needed
    size = sum(len(data) for data in files_of(path).values())
    announce, done = r.err.splitlines()
    assert f"{len(needed)} files" in announce and f"{size / 1000:.1f} kB" in announce  # the total, before the download
    assert done.startswith("tfx: pulled")
    assert sorted(fake_hub.fetched(GPT2)) == sorted(needed)
    assert set(fake_hub.fetched(GPT2, "HEAD")) == needed  # the dry run and the download ask about nothing else
    assert not [p for p in fake_hub.paths() if any(d in p for d in DECOYS)]
    assert fake_hub.paths().count(f"/api/models/{GPT2}") == 1
    assert fake_hub.fetched(GPT2)[-1] == "model.safetensors"  # weights last: a snapshot with weights is complete

    fake_hub.clear()
    again = tfx("pull", GPT2, env=online_env)
    assert again.code == 0, again.err
    assert again.out == r.out and "already in the cache" in again.err
    assert fake_hub.paths() == []


def test_pull_checks_the_task_with_the_hubs_config_before_downloading(fake_hub, online_env):
    r = tfx("pull", GPT2, "--task", "fill-mask", env=online_env)
    assert_clean_error(r, 1, "decoder-only model", "fill-mask needs an encoder-only model")
    assert fake_hub.paths() == [f"/api/models/{GPT2}"]


def test_pull_after_an_interrupted_download_fetches_only_what_is_missing(fake_hub, online_env, needed):
    first = tfx("pull", GPT2, env=online_env)
    assert first.code == 0, first.err
    weights = Path(first.out.strip()) / "model.safetensors"
    blob = weights.resolve()
    weights.unlink()
    blob.unlink()  # as if the download had stopped before the weights
    fake_hub.clear()
    again = tfx("pull", GPT2, env=online_env)
    assert again.code == 0, again.err
    assert again.out == first.out
    size = len(files_of(snapshot(Path(online_env["HF_HUB_CACHE"]), GPT2))["model.safetensors"])
    assert f"1 of {len(needed)} files, {size / 1000:.1f} kB" in again.err  # the dry run knew what was cached
    assert fake_hub.fetched(GPT2) == ["model.safetensors"]


def test_pull_refuses_a_revision_that_is_not_a_ref_name_before_any_request(fake_hub, online_env):
    for revision in ("../../../etc", "/main", "main\x1b[31m", "a" * 256, "v1..v2"):
        r = tfx("pull", GPT2, "--revision", revision, env=online_env)
        assert_clean_error(r, 2, "is not a branch, tag or commit name")
        assert "\x1b" not in r.err
    assert fake_hub.paths() == []
    unknown = tfx("pull", GPT2, "--revision", "no-such-branch", env=online_env)  # a ref name: the Hub decides
    assert_clean_error(unknown, 1, "has no revision 'no-such-branch'")


def test_first_use_downloads_the_minimum_then_runs_without_the_hub(hub_cache, tfx_env, tmp_path, needed):
    with FakeHub() as hub:
        serve_tiny_gpt2(hub, hub_cache)
        env = {**tfx_env, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "cache")}
        env.pop("HF_HUB_OFFLINE")
        first = tfx("generate", "-m", GPT2, tm.GPT2_PROMPT, env=env)
        assert first.code == 0, first.err
        assert first.out == tm.GPT2_TEXT + "\n"
        assert sorted(hub.fetched(GPT2)) == sorted(needed)
        assert not [p for p in hub.paths() if any(d in p for d in DECOYS)]
        hub.clear()
        cached = tfx("generate", "-m", GPT2, tm.GPT2_PROMPT, env=env)  # online, but cached: no request at all
        assert cached.out == first.out and cached.err == ""
        assert hub.paths() == []
    offline = tfx("generate", "-m", GPT2, tm.GPT2_PROMPT, env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.code == 0, offline.err
    assert offline.out == first.out


def test_progress_bar_on_a_terminal_stderr(fake_hub, online_env):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tfx", "pull", GPT2], stdout=subprocess.PIPE, stderr=slave, env=online_env)
    os.close(slave)
    chunks = read_pty(master)  # read while it runs, so a full terminal buffer never blocks it
    os.close(master)
    out = proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert re.search(r"\d+\.\d/\d+\.\d", shown) and "\x1b[" in shown  # a live bar: "done/total kB"
    assert b"\x1b" not in out and Path(out.decode().strip()).is_dir()  # stdout, a pipe, gets only the path


# ---- failures ----------------------------------------------------------------------------------------------


def test_missing_model_says_it_does_not_exist_with_close_names(fake_hub, online_env):
    r, seconds = timed("generate", "-m", "gpt-2", "Hello", env=online_env)
    assert_clean_error(r, 1, "gpt-2 does not exist on the Hub", "Did you mean gpt2")
    assert seconds < TIME_BOUND_S


def test_private_and_gated_models_say_how_to_log_in(fake_hub, online_env):
    private = tfx("pull", "tfx-test/private-model", env=online_env)
    assert_clean_error(private, 1, "gated or private", "hf auth login", "HF_TOKEN")
    gated = tfx("generate", "-m", "tfx-test/gated-model", "Hello", env=online_env)
    assert_clean_error(gated, 1, "tfx-test/gated-model is gated", "hf auth login", "HF_TOKEN")
    assert fake_hub.fetched("tfx-test/gated-model", "GET") == []
    secret = "hf_fake_secret_token_123"
    with_token = tfx("pull", "tfx-test/private-model", env={**online_env, "HF_TOKEN": secret})
    assert_clean_error(with_token, 1, "your Hub token has no access")
    assert secret not in with_token.err + with_token.out


def test_unreachable_hub_fails_fast_with_the_fix(online_env):
    refused = {**online_env, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    r, seconds = timed("generate", "-m", GPT2, "Hello", env=refused)
    assert_clean_error(r, 1, "not in the local cache and the Hub is unreachable", "HTTPS_PROXY")
    assert seconds < TIME_BOUND_S
    # A firewall that drops packets: the connection opens and nothing ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        hanging = {**online_env, "HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        r, seconds = timed("pull", "gpt2", env=hanging)
    assert_clean_error(r, 1, "not in the local cache and the Hub is unreachable")
    assert seconds < TIME_BOUND_S


def test_offline_makes_no_request_at_all(fake_hub, online_env):
    r = tfx("pull", GPT2, "--offline", env=online_env)
    assert_clean_error(r, 1, "not in the local cache and offline mode is on")
    r = tfx("generate", "--offline", "-m", GPT2, "Hello", env=online_env)
    assert_clean_error(r, 1, "not in the local cache and offline mode is on", f"tfx pull {GPT2}")
    r = tfx("search", "gpt", env={**online_env, "HF_HUB_OFFLINE": "1"})
    assert_clean_error(r, 1, "search needs the Hub, and offline mode is on")
    assert r.out == ""
    assert fake_hub.paths() == []


# ---- search ------------------------------------------------------------------------------------------------


def test_search_lists_transformers_models_most_downloaded_first(fake_hub, online_env):
    r = tfx("search", "gpt", "--task", "text-generation", "--limit", "2", "--format", "json", env=online_env)
    assert r.code == 0, r.err
    assert json.loads(r.out) == [
        {"id": "tfx-test/gpt-big", "task": "text-generation", "downloads": 9000, "likes": 40},
        {"id": GPT2, "task": "text-generation", "downloads": 500, "likes": 7},
    ]
    ((_, path, query),) = [req for req in fake_hub.requests if req[1] == "/api/models"]
    assert query["sort"] == ["downloads"] and query["limit"] == ["2"] and query["filter"] == ["transformers"]

    refused = {**online_env, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    r, seconds = timed("search", "gpt", env=refused)
    assert_clean_error(r, 1, "cannot search: the Hub is unreachable", "HTTPS_PROXY")
    assert seconds < TIME_BOUND_S
    assert_clean_error(tfx("search", "gpt", "--task", "poetry", env=online_env), 2, "unknown task 'poetry'")

    table = tfx("search", "gpt", "--task", "generate", env=online_env)  # tfx's task names work too
    assert table.code == 0, table.err
    assert table.lines[0].split() == ["model", "task", "downloads", "likes"]
    assert [line.split()[0] for line in table.lines[1:]] == ["tfx-test/gpt-big", GPT2]
    assert "\x1b" not in table.out


# ---- cache -------------------------------------------------------------------------------------------------


def test_cache_ls_and_rm(fake_hub, online_env):
    empty = tfx("cache", "ls", env=online_env)
    assert empty.code == 0 and empty.out == "" and "no models" in empty.err
    assert tfx("pull", GPT2, env=online_env).code == 0

    listed = tfx("cache", "ls", "--format", "json", env=online_env)
    (entry,) = json.loads(listed.out)
    assert entry["repo_id"] == GPT2 and entry["size_on_disk"] > 500_000
    assert len(entry["revisions"]) == 1 and entry["refs"] == ["main"]
    table = tfx("cache", "ls", env=online_env)
    assert table.lines[0].split() == ["model", "size", "revisions", "last", "used", "converted", "copies"]
    assert table.lines[1].startswith(GPT2) and "1 (main)" in table.lines[1]

    declined = tfx("cache", "rm", GPT2, env=online_env, stdin="n\n")
    assert declined.code == 1 and "Delete" in declined.err and "nothing deleted" in declined.err
    assert json.loads(tfx("cache", "ls", "-f", "json", env=online_env).out)
    folder = Path(online_env["HF_HUB_CACHE"]) / "models--tfx-test--tiny-gpt2"
    on_disk = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    removed = tfx("cache", "rm", "--yes", GPT2, env=online_env)
    assert removed.code == 0, removed.err
    assert f"deleted models--tfx-test--tiny-gpt2; freed {on_disk / 1000:.1f} kB" in removed.err
    assert not folder.exists()
    assert json.loads(tfx("cache", "ls", "-f", "json", env=online_env).out) == []
    assert_clean_error(tfx("cache", "rm", "--yes", GPT2, env=online_env), 1, "not in the cache")
    assert fake_hub.paths().count(f"/api/models/{GPT2}") == 1  # ls and rm never ask the Hub


# ---- models, env, compare ------------------------------------------------------------------------------------


def test_models_by_family_with_cache_state(tfx_env):
    r = tfx("models", "--format", "json", env=tfx_env)
    assert r.code == 0, r.err
    entries = {e["name"]: e for e in json.loads(r.out)}
    assert entries["gpt2"]["cached"] and entries["gpt2"]["size_on_disk"] > 0
    assert entries["gpt2"]["repo_id"] == "openai-community/gpt2" and entries["gpt2"]["default_for"] == ["generate"]
    assert not entries["gpt2-xl"]["cached"] and entries["gpt2-xl"]["size_on_disk"] == 0
    assert {e["family"] for e in entries.values()} == {"encoder-only", "decoder-only", "encoder-decoder"}
    text = tfx("models", env=tfx_env)
    assert text.code == 0 and "\x1b" not in text.out
    assert text.out.startswith("How to choose")
    for heading in ("encoder-only: understanding", "decoder-only: generation", "encoder-decoder: sequence-to-sequence"):
        assert heading in text.out
    gpt2_row = next(line for line in text.lines if line.startswith("gpt2 "))
    assert "generate" in gpt2_row and "124M" in gpt2_row and re.search(r"\d B|kB|MB", gpt2_row)


def test_env_reports_versions_devices_cache_and_token_never_its_value(tfx_env, hub_cache):
    secret = "hf_do_not_print_me_42"
    env = {**tfx_env, "HF_TOKEN": secret}
    r = tfx("env", "--format", "json", env=env)
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert set(info["versions"]) == {"tfx", "torch", "transformers", "tokenizers", "huggingface_hub"}
    assert all(info["versions"].values())
    assert info["cache"]["dir"] == str(hub_cache) and info["cache"]["size_on_disk"] > 0
    assert info["offline"] is True
    assert info["token"] == {"configured": True, "source": "HF_TOKEN"}
    assert isinstance(info["devices"]["cuda"], list) and isinstance(info["devices"]["mps"], bool)
    text = tfx("env", "--no-devices", env=env)
    assert "hub token" in text.out and "configured (HF_TOKEN)" in text.out
    assert secret not in r.out + r.err + text.out + text.err
    assert "not configured" in tfx("env", "--no-devices", env=tfx_env).out


def test_compare_runs_the_same_input_through_each_model(tfx_env):
    r = tfx("compare", "generate", tm.GPT2_PROMPT, "-m", GPT2, "-m", "distilgpt2", "--max-new-tokens", "20", "--format", "jsonl", env=tfx_env)
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.lines]
    assert [row["model"] for row in rows] == [GPT2, "distilgpt2"]
    for row in rows:
        assert row["input"] == tm.GPT2_PROMPT and row["output"] == tm.GPT2_TEXT
        assert row["seconds"] >= 0 and row["load_seconds"] >= 0


def test_compare_usage_errors(tfx_env):
    assert_clean_error(tfx("compare", "generate", "Hi", "-m", GPT2, "--to", "fr", env=tfx_env), 2, "--to does not apply to generate")
    assert_clean_error(tfx("compare", "generate", "Hi", env=tfx_env), 2, "-m gpt2 -m distilgpt2")
    assert_clean_error(tfx("compare", "translate", "Hi", "-m", "t5-small", env=tfx_env), 2, "--to")
    assert_clean_error(tfx("compare", "poetry", "Hi", "-m", GPT2, env=tfx_env), 2, "unknown task")


# ---- startup cost ------------------------------------------------------------------------------------------

LIGHT_COMMANDS = [
    ["--help"], ["models"], ["models", "--format", "json"], ["env"], ["cache", "ls"], ["cache", "rm", "--help"],
    ["search", "--help"], ["search", "gpt"], ["pull", "--help"], ["pull", GPT2], ["compare", "--help"],
]  # fmt: skip
PROBE = """
import json, sys
from tfx.cli import app
seen = {}
for argv in json.loads(sys.argv[1]):
    try:
        app(argv, prog_name="tfx", standalone_mode=False)
    except SystemExit:
        pass
    seen[" ".join(argv)] = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print("\\nPROBE " + json.dumps(seen))
"""


def test_light_commands_never_import_torch_or_transformers(fake_hub, online_env):
    # `env` still reports devices: torch answers in a child process.
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(LIGHT_COMMANDS)], capture_output=True, text=True, env=online_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.split("\nPROBE ")[-1])
    assert seen == {" ".join(argv): [] for argv in LIGHT_COMMANDS}
    assert "cpu" in proc.stdout  # env's device line
