"""Sending task commands to a running `tfx serve` (--server URL / TFX_SERVER).

Records still flow through the local pipeline (runner.Pump: reading, ordering, --keep-going, writing); only the
model runs on the server, behind a RemoteTask with a local task's interface. So outputs, exit codes and
streaming are those of a local run. Standard library only: a remote run never imports torch."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from tfx.errors import TfxError, UsageError

log = logging.getLogger("tfx")

API_KEY_ENV = "TFX_API_KEY"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 3600.0  # a queue of long generations on a CPU server can take minutes; Ctrl-C still works
# The CLI's parameter names that the server's task endpoints spell differently.
WIRE_NAMES = {"src": "from", "tgt": "to"}


def run_remote(opts) -> int:
    """runner.run for --server: the same pipeline, with the model on the server."""
    from tfx import runner

    server_side = (("--device", opts.device, "auto"), ("--dtype", opts.dtype, "auto"), ("--engine", getattr(opts, "engine", "local"), "local"), ("--trust-remote-code", opts.trust_remote_code, False))
    for flag, value, default in server_side:
        if value != default:
            log.warning("%s is the server's choice; ignored with --server", flag)
    server = Server(opts.server)
    try:
        health = server.health()
        name = runner.model_name(opts)
        streaming = runner.wants_stream(opts)
        task = RemoteTask(server, opts.task, name, opts.params, opts.revision, health.get("device", "cpu"), runner.stdout_text if streaming else None)
        return runner.pump_records(opts, task, name, streaming)
    finally:
        server.close()


class RemoteTask:
    """A task whose model runs on the server: check, cost, run and default_batch_size, as a local task has.
    Bad records come back as {"error": ...} results, which Pump treats as it treats a local RecordError."""

    def __init__(self, server: Server, task: str, model: str, params: dict[str, Any], revision: str | None, device: str, on_text=None):
        self.server = server
        self.task = task
        self.model = model
        self.device = device
        self.on_text = on_text
        self.body = {"model": model}
        if revision:
            self.body["revision"] = revision
        for key, value in params.items():
            if value is not None:  # False stays: --greedy (do_sample False) overrides a model that samples
                self.body[WIRE_NAMES.get(key, key)] = value

    def check(self, text: str) -> None:
        """The server checks each record and answers an error result for a bad one."""

    def cost(self, text: str) -> int:
        return len(text)

    def default_batch_size(self) -> int:
        from tfx.tasks import default_batch_size

        return default_batch_size(self.task, self.device)

    def run(self, texts: list[str]) -> list[dict[str, Any]]:
        path = f"/v1/{self.task}"
        if self.on_text is not None and len(texts) == 1:
            return [self._stream(path, {**self.body, "inputs": texts, "stream": True})]
        answer = self.server.post(path, {**self.body, "inputs": texts})
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(texts):
            raise TfxError(f"the server at {self.server.url} sent an answer tfx cannot read.", "Check that --server points at `tfx serve` of this version.")
        return [_result(record) for record in results]

    def _stream(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for event in self.server.events(path, body):
            if "text" in event:
                self.on_text(event["text"])
            elif "result" in event:
                return _result(event["result"])
            elif "error" in event:
                raise _error_from(event["error"], self.server.url, 400)
        raise TfxError(f"the server at {self.server.url} ended the stream early.", "Check the server's log.")


def _result(record: dict[str, Any]) -> dict[str, Any]:
    """A server record is the CLI's jsonl record; the writer adds input and model back itself."""
    return {k: v for k, v in record.items() if k not in ("input", "model")}


class Server:
    """One keep-alive HTTP connection to a tfx server."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        parts = urlsplit(self.url if "://" in self.url else "http://" + self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--server '{url}' is not an http:// or https:// URL.", "Use e.g. --server http://127.0.0.1:8000.")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if self.https else 80)
        except ValueError:
            raise UsageError(f"--server '{url}' has a bad port.", "Use e.g. --server http://127.0.0.1:8000.") from None
        path = parts.path.rstrip("/")
        self.prefix = path[: -len("/v1")] if path.endswith("/v1") else path  # the URL an OpenAI client is given works too
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(API_KEY_ENV)
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.conn: http.client.HTTPConnection | None = None

    def health(self) -> dict[str, Any]:
        answer = self.request("GET", "/health")
        if not isinstance(answer, dict) or answer.get("status") != "ok":
            raise TfxError(f"{self.url} did not answer like a tfx server.", "Check --server / TFX_SERVER.")
        return answer

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._send(method, path, body)
        data = response.read()
        return self._decode(response.status, data)

    def events(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events of a streamed request, as dicts, until [DONE]."""
        response = self._send("POST", path, body)
        if response.status != 200 or not response.getheader("content-type", "").startswith("text/event-stream"):
            self._decode(response.status, response.read())
            raise TfxError(f"the server at {self.url} did not stream.", "Check that --server points at `tfx serve`.")
        try:
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            raise self._lost(exc) from None

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> http.client.HTTPResponse:
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            reused = self.conn is not None
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=payload, headers=self.headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if not reused or attempt == 2:  # a reused connection the server had closed while idle: retry once
                    raise self._lost(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._lost(exc) from None
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=CONNECT_TIMEOUT_S)
            try:
                conn.connect()
            except (OSError, http.client.HTTPException) as exc:
                raise TfxError(
                    f"cannot reach the tfx server at {self.url} ({_reason(exc)}).",
                    "Start one with `tfx serve`, or fix --server / TFX_SERVER.",
                ) from None
            conn.sock.settimeout(READ_TIMEOUT_S)
            self.conn = conn
        return self.conn

    def _lost(self, exc: BaseException) -> TfxError:
        return TfxError(f"lost the connection to the tfx server at {self.url} ({_reason(exc)}).", "Check the server's log.")

    def _decode(self, status: int, data: bytes) -> Any:
        try:
            answer = json.loads(data)
        except ValueError:
            raise TfxError(f"{self.url} did not answer like a tfx server (HTTP {status}).", "Check --server / TFX_SERVER.") from None
        if status >= 400:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise _error_from(error if isinstance(error, dict) else {}, self.url, status)
        return answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _error_from(error: dict[str, Any], url: str, status: int) -> TfxError:
    """The server's error body as the TfxError a local run would have raised (same words, same exit code)."""
    tfx = error.get("tfx")
    if isinstance(tfx, dict) and isinstance(tfx.get("message"), str):
        return TfxError(tfx["message"], tfx.get("hint"), int(tfx.get("exit_code") or 1))
    message = str(error.get("message") or f"HTTP {status}").strip().splitlines()[0].rstrip(".")
    hints = {
        401: f"Set {API_KEY_ENV} to the server's --api-key.",
        413: "Send less at once: use a smaller --batch-size.",
    }
    return TfxError(f"the server at {url} refused the request ({status}): {message}.", hints.get(status, "Check the server's log."))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0]
