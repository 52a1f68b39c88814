"""The hub layer's hardening and the huggingface_hub behaviour it relies on or works around.

Revisions are ref names; ref files are read only when small and regular; `tfx cache rm` deletes exactly the
named repository; declining it without a terminal is a plain "no"; `tfx env` masks credentials in URLs;
token discovery makes no request. The `test_library_*` tests pin what huggingface_hub 2.4.0 does where tfx
keeps its own code (or leans on a detail): when one fails, the library changed, and the comment in the
tfx module it names says what to revisit. Nothing leaves 127.0.0.1 (tests/fake_hub.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from clihelp import assert_clean_error, tfx
from fake_hub import FakeHub
from test_hub import DECOYS, GPT2, serve_tiny_gpt2

from tfx import errors, hub

COMMIT = "a" * 40


def make_repo(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = COMMIT, refs: tuple[str, ...] = ("main",)) -> Path:
    """A repository laid out as huggingface_hub caches it (blobs, relative links in snapshots/, refs); its snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snap


MODEL_FILES = {"config.json": b'{"model_type": "gpt2"}', "tokenizer.json": b"{}", "model.safetensors": b"\0" * 5000}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache this process's huggingface_hub (and so tfx.hub) reads."""
    from huggingface_hub import constants

    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


@pytest.fixture
def cache_env(tfx_env, cache) -> dict[str, str]:
    return {**tfx_env, "HF_HUB_CACHE": str(cache)}


def finishes(call, seconds: float = 10):
    """call()'s result, failing the test (instead of hanging it) if it has not returned in time."""
    box = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call} hung"
    return box[0]


def python(code: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout)


# ---- revisions --------------------------------------------------------------------------------------------

GOOD_REVISIONS = ["main", "v1.0", "refs/pr/3", "release/2024-01_rc+1", COMMIT, "feature/ünïcode", "a" * 255]
BAD_REVISIONS = [
    "", "..", "a/../b", "v1..v2", "/main", "main/", "a//b", ".hidden", "a/.b", "a.lock", "a/b.lock", "main.", "@", "a@{1}",
    "a" * 256, "ma\x00in", "ma\nin", "ma\x1bin", "ma\x7fin", "a b", "a\u00a0b", "a\u202eb", "a~1", "a^", "a:b", "a?", "a*", "a[1]", "a\\b",
]  # fmt: skip


@pytest.mark.parametrize("revision", GOOD_REVISIONS)
def test_validate_revision_accepts_branch_tag_and_commit_names(revision):
    assert hub.validate_revision(revision) == revision
    assert hub.validate_revision(None) is None


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_validate_revision_rejects_what_git_would_refuse(revision):
    with pytest.raises(errors.UsageError) as caught:
        hub.validate_revision(revision)
    assert "is not a branch, tag or commit name" in caught.value.message and caught.value.exit_code == 2
    assert not any(c in caught.value.message for c in "\x00\n\x1b\x7f\u202e")  # shown escaped, never raw
    assert len(caught.value.message) < 120


@pytest.mark.parametrize("call", ["resolve", "find_cached", "cached_snapshot", "plan_download", "download_model"])
def test_every_way_in_checks_the_revision_first(call, cache):
    make_repo(cache, "t/m", MODEL_FILES)
    (cache / "models--t--m" / "etc").mkdir()
    (cache / "models--t--m" / "etc" / "main").write_text(COMMIT)  # what "../etc/main" would read
    with pytest.raises(errors.UsageError, match="is not a branch, tag or commit name"):
        getattr(hub, call)("t/m", "../etc/main")


# ---- ref files --------------------------------------------------------------------------------------------


def test_ref_files_are_read_only_when_small_and_regular(cache):
    snap = make_repo(cache, "t/m", MODEL_FILES, refs=())
    refs = cache / "models--t--m" / "refs"
    os.mkfifo(refs / "main")  # open() for reading would wait for a writer forever
    (refs / "zero").symlink_to("/dev/zero")  # read() would never end
    (refs / "big").write_text(COMMIT + "\n" + "x" * 10_000_000)
    (refs / "dir").mkdir()
    (refs / "good").write_text(COMMIT + "\n")
    repo = cache / "models--t--m"
    assert finishes(lambda: [hub.read_ref(repo, r) for r in ("main", "zero", "big", "dir", "missing")]) == [None] * 5
    assert hub.read_ref(repo, "good") == COMMIT
    # A broken main is no ref: the newest usable snapshot stands in for it; a named one is simply not cached.
    assert finishes(lambda: hub.find_cached("t/m")) == ("t/m", snap)
    assert finishes(lambda: hub.find_cached("t/m", "zero")) is None
    assert hub.find_cached("t/m", "good") == ("t/m", snap)


def test_a_named_revision_whose_ref_is_unreadable_says_so_not_not_cached(cache, cache_env):
    make_repo(cache, "t/m", MODEL_FILES)
    refs = cache / "models--t--m" / "refs"
    os.mkfifo(refs / "stuck")
    (refs / "folder").mkdir()
    (refs / "junk").write_text("not a commit\n")
    (refs / "huge").write_text(COMMIT * 100)
    for ref, what in (("stuck", "is a FIFO"), ("folder", "is a directory"), ("junk", "holds no commit hash"), ("huge", "not a 100-byte ref")):
        r = tfx("classify", "-m", "t/m", "--revision", ref, "--offline", "some text", env=cache_env, timeout=60)
        assert_clean_error(r, 1, what, f"refs/{ref}", "Remove it")
    assert_clean_error(tfx("classify", "-m", "t/m", "--revision", "absent", "--offline", "x", env=cache_env, timeout=60), 1, "not in the local cache")


def test_cache_listing_stops_at_a_ref_that_is_not_a_small_file(cache, cache_env):
    make_repo(cache, "t/m", MODEL_FILES)
    os.mkfifo(cache / "models--t--m" / "refs" / "stuck")
    for args in (["cache", "ls"], ["models", "--format", "json"]):
        r = tfx(*args, env=cache_env, timeout=60)
        assert_clean_error(r, 1, "ref that is not a small file", "refs/stuck")


def test_library_scan_cache_dir_and_local_lookup_block_on_a_fifo_ref(cache, tfx_env):
    """Pins why tfx checks refs before scan_cache_dir (hub/manage.py) and reads them itself (hub/cache.py)."""
    make_repo(cache, "t/m", MODEL_FILES, refs=())
    os.mkfifo(cache / "models--t--m" / "refs" / "main")
    env = {**tfx_env, "HF_HUB_CACHE": str(cache)}
    calls = {
        "scan": "from huggingface_hub import scan_cache_dir; scan_cache_dir()",
        "lookup": "from huggingface_hub import snapshot_download; snapshot_download('t/m', local_files_only=True)",
    }
    procs = {k: subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k, code in calls.items()}
    try:
        time.sleep(6)
        assert {k: p.poll() for k, p in procs.items()} == {"scan": None, "lookup": None}  # both still blocked
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


# ---- the library's snapshot_download, as tfx uses it ------------------------------------------------------------


@pytest.fixture(scope="module")
def decoy_hub(hub_cache):
    with FakeHub() as fake:
        serve_tiny_gpt2(fake, hub_cache)
        yield fake


@pytest.fixture
def online(tfx_env, tmp_path, decoy_hub) -> dict[str, str]:
    env = {**tfx_env, "HF_ENDPOINT": decoy_hub.url, "HF_HUB_CACHE": str(tmp_path / "online-cache")}
    env.pop("HF_HUB_OFFLINE", None)
    decoy_hub.clear()
    return env


PIN_DOWNLOAD = """
import json, sys
from huggingface_hub import snapshot_download
from tfx.hub import DownloadBar, select_files
repo, sha, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
files = select_files(names)
dry = snapshot_download(repo, revision=sha, allow_patterns=files, dry_run=True, tqdm_class=DownloadBar(0, "", False).tqdm_class())
made = []
class Recorder:
    def __init__(self, *args, **kwargs):
        self.unit, self.n, self.total, self.format_dict = kwargs.get("unit"), 0, kwargs.get("total"), {}
        made.append(self)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        pass
    def update(self, n=1):
        self.n += n or 0
    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *a, **k: None
snapshot_download(repo, revision=sha, allow_patterns=["config.json"], tqdm_class=Recorder)
bar = DownloadBar(0, "", enabled=False)
rest = [f for f in files if f != "config.json"]
snapshot_download(repo, revision=sha, allow_patterns=rest[:2], tqdm_class=bar.tqdm_class())
snapshot_download(repo, revision=sha, allow_patterns=rest[2:], tqdm_class=bar.tqdm_class())
print(json.dumps({
    "dry": {d.filename: [type(d).__name__, d.file_size, d.is_cached, d.will_download] for d in dry},
    "bars": sorted([[m.unit, m.n] for m in made], key=str), "completed": bar.completed, "files": files,
}))
"""


def test_library_dry_run_and_tqdm_class_as_tfx_relies_on(decoy_hub, online):
    """Pins hub/download.py (dry-run sizes) and hub/progress.py (three bars per call, two of them bytes)."""
    repo = decoy_hub.repos[GPT2]
    argv = [sys.executable, "-c", PIN_DOWNLOAD, GPT2, repo.sha, json.dumps(sorted(repo.files))]
    proc = subprocess.run(argv, capture_output=True, text=True, env=online, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    sizes = {name: len(repo.files[name]) for name in seen["files"]}
    assert seen["dry"] == {name: ["DryRunFileInfo", size, False, True] for name, size in sizes.items()}
    assert seen["bars"] == sorted([["B", sizes["config.json"]], ["B", sizes["config.json"]], [None, 1]], key=str)
    assert seen["completed"] == sum(sizes.values()) - sizes["config.json"]  # each byte once, across two calls
    assert not set(seen["files"]) & set(DECOYS)


def test_library_local_files_only_refuses_tfx_snapshots_and_accepts_weightless_ones(decoy_hub, online, cache, monkeypatch):
    """Pins why hub/cache.py looks snapshots up itself instead of snapshot_download(local_files_only=True)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    online = {**online, "HF_HUB_CACHE": str(cache)}
    pulled = tfx("pull", GPT2, env=online)
    assert pulled.code == 0, pulled.err
    snap = Path(pulled.out.strip())
    repo, commit = snap.parent.parent, snap.name
    assert (repo / "trees" / f"{commit}.json").is_file()  # snapshot_download cached the repository's listing

    def local(revision=commit, **kwargs):
        return snapshot_download(GPT2, revision=revision, cache_dir=cache, local_files_only=True, **kwargs)

    with pytest.raises(IncompleteSnapshotError):
        local()  # the decoys are "missing"
    with pytest.raises(IncompleteSnapshotError):  # tfx's file set as fixed patterns: pytorch_model.bin is "missing"
        local(allow_patterns=["*.json", "*.txt", "*.model", "model*.safetensors", "pytorch_model*.bin"])
    assert local(allow_patterns=sorted(p.name for p in snap.iterdir())) == str(snap)  # only the exact names pass
    assert hub.find_cached(GPT2) == (GPT2, snap)

    (repo / "refs" / "main").unlink()  # a cache filled by commit: no ref
    with pytest.raises(LocalEntryNotFoundError):
        local(revision=None)
    assert hub.find_cached(GPT2) == (GPT2, snap)

    shutil.rmtree(repo / "trees")  # a cache made without the listing (transformers, older tools)
    (snap / "model.safetensors").unlink()  # and a download that stopped before the weights
    fresh = python(  # a new process: snapshot_download also keeps the listings it read in memory
        f"from huggingface_hub import snapshot_download as s; print(s({GPT2!r}, revision={commit!r}, local_files_only=True))",
        {**online, "HF_HUB_OFFLINE": "1"},
    )
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == str(snap)  # accepted as it is
    assert hub.find_cached(GPT2) is None
    assert hub.find_cached(GPT2, commit) is None


# ---- tfx cache rm -------------------------------------------------------------------------------------------


def test_cache_rm_deletes_only_the_named_repo_when_repos_share_a_commit(cache, cache_env):
    # Copies of one model (forks, renamed repos) share its commit. Eight of them, so that deleting by commit
    # in "whichever repository comes first" would hit the named one only by a 1-in-8 (then 1-in-7) chance.
    names = ["alice/orig", "alice/copy", *(f"fork{i}/m" for i in range(6))]
    snaps = {name: make_repo(cache, name, {**MODEL_FILES, "name.txt": name.encode()}) for name in names}
    from huggingface_hub import scan_cache_dir

    # The library deletes by commit, in whichever repository it meets first: one of them, whatever was meant.
    strategy = scan_cache_dir(cache).delete_revisions(COMMIT)
    assert len(strategy.repos) == 1 and strategy.repos <= {snap.parent.parent for snap in snaps.values()}

    for gone in ("alice/copy", "fork3/m"):
        folder = cache / ("models--" + gone.replace("/", "--"))
        on_disk = sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        r = tfx("cache", "rm", "--yes", gone, env=cache_env)
        assert r.code == 0, r.err
        assert r.err.strip() == f"tfx: deleted {folder.name}; freed {hub.format_size(on_disk)}."
        assert not folder.exists()
    kept = [name for name in names if name not in ("alice/copy", "fork3/m")]
    for name in kept:
        assert {p.name: p.read_bytes() for p in snaps[name].iterdir()} == {**MODEL_FILES, "name.txt": name.encode()}
    listed = json.loads(tfx("cache", "ls", "--format", "json", env=cache_env).out)
    assert sorted(m["repo_id"] for m in listed) == sorted(kept)


def test_cache_rm_never_follows_a_link_out_of_the_cache(cache, cache_env, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    make_repo(elsewhere, "evil/link", MODEL_FILES)
    (cache / "models--evil--link").symlink_to(elsewhere / "models--evil--link")
    r = tfx("cache", "rm", "--yes", "evil/link", env=cache_env)
    assert_clean_error(r, 1, "is not a folder inside the cache", "nothing deleted")
    assert (cache / "models--evil--link").is_symlink() and len(list((elsewhere / "models--evil--link" / "blobs").iterdir())) == 3

    # Links inside a repository (snapshot -> blob) are removed, never followed, even when they lead out.
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    snap = make_repo(cache, "bob/m", MODEL_FILES)
    (snap / "notes.txt").symlink_to(precious)
    r = tfx("cache", "rm", "--yes", "bob/m", env=cache_env)
    assert r.code == 0, r.err
    assert not (cache / "models--bob--m").exists() and precious.read_text() == "keep me"


@pytest.mark.parametrize("stdin", ["eof", "closed"])
def test_declining_cache_rm_without_a_terminal_deletes_nothing(cache, cache_env, stdin):
    make_repo(cache, "t/m", MODEL_FILES)
    command = [sys.executable, "-m", "tfx", "cache", "rm", "t/m"]
    if stdin == "closed":
        command = ["sh", "-c", 'exec "$@" 0<&-', "sh", *command]
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=cache_env, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "nothing deleted" in proc.stderr and "Delete t/m" in proc.stderr
    assert "Abort" not in proc.stderr and "error" not in proc.stderr
    assert (cache / "models--t--m").is_dir()


# ---- tfx env and tokens ---------------------------------------------------------------------------------------


def test_mask_url_hides_credentials_whatever_they_hold():
    from tfx.cli.envcmd import mask_url

    assert mask_url("https://huggingface.co") == "https://huggingface.co"
    assert mask_url("https://user:pass@hub.example/api") == "https://***@hub.example/api"
    assert mask_url("http://bob:p@ss/w?rd#x@proxy:3128") == "http://***@proxy:3128"
    assert mask_url("hf_token@hub.example") == "***@hub.example"
    assert mask_url("alice:secret@proxy:8080") == "***@proxy:8080"


def test_env_masks_credentials_in_the_endpoint_and_proxy_urls(tfx_env):
    env = {**tfx_env, "HF_ENDPOINT": "https://hubuser:endpoint-s3cret@hub.example", "HTTPS_PROXY": "http://bob:proxy-hunter2@proxy:3128",
           "http_proxy": "carol:plain-pw@proxy2:8080"}  # fmt: skip
    text = tfx("env", "--no-devices", env=env)
    data = tfx("env", "--no-devices", "--format", "json", env=env)
    assert text.code == data.code == 0, text.err + data.err
    for secret in ("endpoint-s3cret", "proxy-hunter2", "plain-pw", "hubuser", "bob:", "carol"):
        assert secret not in text.out + text.err + data.out + data.err
    assert "https://***@hub.example" in text.out and "HTTPS_PROXY=http://***@proxy:3128" in text.out
    info = json.loads(data.out)
    assert info["endpoint"] == "https://***@hub.example"
    assert info["proxies"] == {"HTTPS_PROXY": "http://***@proxy:3128", "http_proxy": "***@proxy2:8080"}


def test_library_get_token_may_call_the_hub_and_tfx_env_never_does(decoy_hub, online, tmp_path):
    """Pins why hub/settings.token_source reads the token sources itself instead of calling get_token()."""
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text("hf_oauth_about_to_expire")
    (home / "stored_tokens").write_text(
        f"[login]\nhf_token = hf_oauth_about_to_expire\nrefresh_token = r1\nexpires_at = {int(time.time()) + 60}\n"
    )
    env = {**online, "HF_HOME": str(home)}
    proc = python("from huggingface_hub import get_token; print(get_token())", env)
    assert proc.returncode == 0, proc.stderr
    assert ("POST", "/oauth/token", {}) in decoy_hub.requests  # a refresh, over the network
    decoy_hub.clear()
    r = tfx("env", "--no-devices", "--format", "json", env=env)
    assert r.code == 0, r.err
    assert json.loads(r.out)["token"] == {"configured": True, "source": str(home / "token")}
    oidc = tfx("env", "--no-devices", "--format", "json", env={**env, "HF_OIDC_RESOURCE": "alice/m", "HF_OIDC_ID_TOKEN": "x"})
    assert json.loads(oidc.out)["token"] == {"configured": True, "source": "HF_OIDC_RESOURCE"}
    assert decoy_hub.requests == []
    assert "hf_oauth_about_to_expire" not in r.out + r.err


# ---- resolution without a request -------------------------------------------------------------------------------


def test_uncached_models_raise_not_cached_offline_or_when_downloads_are_off(cache, monkeypatch):
    make_repo(cache, "t/m", MODEL_FILES)
    assert hub.resolve("t/m").path == cache / "models--t--m" / "snapshots" / COMMIT  # offline, cached: found
    with pytest.raises(errors.NotCached, match="not in the local cache and offline mode is on"):
        hub.resolve("t/absent")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(errors.NotCached, match="Run `tfx pull t/absent`"):
        hub.resolve("t/absent", download=False)
    with pytest.raises(errors.ModelNotFound, match="is not a model name"):
        hub.resolve("t/../absent")


def test_download_groups_fetch_the_weights_after_everything_else_and_the_index_last():
    files = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "tokenizer.json"]
    assert hub.download_groups(files) == [
        ["config.json", "tokenizer.json"],
        ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
        ["model.safetensors.index.json"],
    ]
    assert hub.download_groups(["config.json", "vocab.txt", "pytorch_model.bin"]) == [["config.json", "vocab.txt"], ["pytorch_model.bin"]]


def test_hub_commands_import_nothing_heavy(tfx_env):
    proc = python(
        """
        import json, sys
        import tfx.hub, tfx.cli.hubcmds, tfx.cli.envcmd
        print(json.dumps(sorted(m for m in ("huggingface_hub", "rich", "torch", "transformers", "httpx2") if m in sys.modules)))
        """,
        tfx_env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
