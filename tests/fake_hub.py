"""A loopback HTTP server that speaks the parts of the Hugging Face Hub API that huggingface_hub 2.x calls
for tfx: model info, the repository tree (snapshot_download lists it, dry runs included), file resolution
(HEAD and GET) and the model listing used by search. Any POST (an OAuth token refresh, say) is recorded and
refused with 400.

It runs on 127.0.0.1 in a thread (`with FakeHub() as hub:`; point HF_ENDPOINT at `hub.url`) and records every
request, so tests can assert exactly which files were fetched. Special repos answer like the real Hub:
`private=True` gives 401 RepoNotFound everywhere, `gated=True` gives model info but 401 GatedRepo on files,
and an unknown repo gives 404 RepoNotFound.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".ot", ".model", ".spm")


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes] = field(default_factory=dict)
    private: bool = False
    gated: bool = False
    pipeline_tag: str | None = None
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=lambda: ["transformers", "pytorch"])

    @property
    def sha(self) -> str:
        listing = "".join(f"{name}:{hashlib.sha1(data).hexdigest()}\n" for name, data in sorted(self.files.items()))
        return hashlib.sha1(f"{self.repo_id}\n{listing}".encode()).hexdigest()

    def info(self, with_blobs: bool) -> dict:
        config = {}
        if "config.json" in self.files:
            full = json.loads(self.files["config.json"])
            config = {k: full[k] for k in ("architectures", "model_type") if k in full}
        siblings = []
        for name, data in sorted(self.files.items()):
            sibling = {"rfilename": name}
            if with_blobs:
                sibling.update(size=len(data), blobId=git_blob_sha(data))
                if name.endswith(LFS_SUFFIXES):
                    sibling["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(sibling)
        return {
            "_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id, "sha": self.sha,
            "private": self.private, "gated": "manual" if self.gated else False, "disabled": False,
            "pipeline_tag": self.pipeline_tag, "library_name": "transformers", "tags": self.tags,
            "downloads": self.downloads, "likes": self.likes, "config": config, "siblings": siblings,
            "lastModified": "2024-01-01T00:00:00.000Z", "createdAt": "2024-01-01T00:00:00.000Z",
        }  # fmt: skip

    def tree(self) -> list[dict]:
        entries = []
        for name, data in sorted(self.files.items()):
            entry = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": name}
            if name.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        folders = sorted({name.rsplit("/", 1)[0] for name in self.files if "/" in name})
        return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders] + entries

    def listing(self) -> dict:
        return {
            "_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id, "likes": self.likes,
            "downloads": self.downloads, "pipeline_tag": self.pipeline_tag, "library_name": "transformers",
            "tags": self.tags, "private": False, "createdAt": "2024-01-01T00:00:00.000Z",
        }  # fmt: skip


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def files_of(directory: Path) -> dict[str, bytes]:
    """The files of a model directory (a cache snapshot's symlinks are followed)."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir()) if p.is_file()}


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # -- content --------------------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes] | None = None, **kwargs) -> Repo:
        repo = Repo(repo_id, dict(files or {}), **kwargs)
        self.repos[repo_id] = repo
        return repo

    # -- what was asked ---------------------------------------------------------------------------------------

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [p for m, p, _ in self.requests if method is None or m == method]

    def fetched(self, repo_id: str, method: str = "GET") -> list[str]:
        """Files of repo_id requested with `method` through /resolve/, in order."""
        prefix = f"/{repo_id}/resolve/"
        out = []
        for path in self.paths(method):
            if path.startswith(prefix):
                out.append(path[len(prefix) :].split("/", 1)[1])
        return out

    # -- server ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    server_version = "FakeHub/1.0"

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.fake._lock:
            self.fake.requests.append(("POST", urlsplit(self.path).path, {}))
        self._error(400, "BadRequest", "tfx never posts to the Hub")

    # -- routing --------------------------------------------------------------------------------------------

    def _route(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        with self.fake._lock:
            self.fake.requests.append(("HEAD" if head else "GET", path, query))
        if path == "/api/models":
            return self._list(query)
        if path.startswith("/api/models/"):
            return self._info(path[len("/api/models/") :], query)
        if "/resolve/" in path:
            repo_id, rest = path[1:].split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            return self._file(repo_id, revision, filename, head)
        self._error(404, "EntryNotFound", "Not found")

    def _repo(self, repo_id: str, files: bool) -> Repo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None or repo.private:
            # Like the Hub: without a token a private repo and a missing one look alike, except for the status.
            status = 401 if repo is not None else 404
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and files:
            self._error(401, "GatedRepo", "Access to model is restricted. You must have access to it and be authenticated.")
            return None
        return repo

    def _info(self, rest: str, query: dict) -> None:
        if "/tree/" in rest:
            return self._tree(*rest.split("/tree/", 1))
        repo_id, _, revision = rest.partition("/revision/")
        repo = self._repo(repo_id, files=False)
        if repo is None:
            return
        if revision and revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(repo.info(with_blobs="blobs" in query))

    def _tree(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id, files=False)
        if repo is None:
            return
        if revision.split("/", 1)[0] not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(repo.tree())

    def _list(self, query: dict) -> None:
        search = (query.get("search") or [""])[0].lower()
        tag = (query.get("pipeline_tag") or [None])[0]
        filters = query.get("filter") or []
        limit = int((query.get("limit") or ["1000"])[0])
        found = [
            r for r in self.fake.repos.values()
            if not r.private and search in r.repo_id.lower() and (tag is None or r.pipeline_tag == tag)
            and all(f in r.tags for f in filters)
        ]  # fmt: skip
        if (query.get("sort") or [""])[0] == "downloads":
            found.sort(key=lambda r: r.downloads, reverse=True)
        self._json([r.listing() for r in found[:limit]])

    def _file(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
        repo = self._repo(repo_id, files=True)
        if repo is None:
            return
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        data = repo.files.get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist", commit=repo.sha)
        lfs = filename.endswith(LFS_SUFFIXES)
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha(data)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", repo.sha)
        if lfs:
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    # -- answers --------------------------------------------------------------------------------------------

    def _json(self, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
