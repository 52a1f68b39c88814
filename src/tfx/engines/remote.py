"""The remote engine: task commands sent to a running `tfx serve` (--server URL / TFX_SERVER).

Records still flow through the one pipeline (reading, ordering, --keep-going, writing); only the model runs
on the server, behind a RemoteTask with a local task's interface. So outputs, exit codes and streaming are
those of a local run. Standard library only: a remote run never imports torch."""

from __future__ import annotations

import http.client
import json
import logging
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from tfx import pipeline, results
from tfx.errors import TfxError, UsageError, about
from tfx.results import Failed, Result, TextChunk
from tfx.spec import RunSpec
from tfx.tasks import default_batch_size

log = logging.getLogger("tfx")

API_KEY_ENV = "TFX_API_KEY"
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 3600.0  # a queue of long generations on a CPU server can take minutes; Ctrl-C still works


def run(spec: RunSpec) -> int:
    """The same pipeline as a local run, with the model on the server."""
    server_side = (("--device", spec.device, "auto"), ("--dtype", spec.dtype, "auto"), ("--trust-remote-code", spec.trust_remote_code, False))
    for flag, value, default in server_side:
        if value != default:
            log.warning("%s is the server's choice; ignored with --server", flag)
    server = Server(spec.engine.server)
    try:
        with about(server=server.url):
            health = server.health()
            task = RemoteTask(server, spec, health.get("device", "cpu"))
            return pipeline.run_spec(spec, task)
    finally:
        server.close()


class RemoteTask:
    """A task whose model runs on the server: check, cost, run, stream and batch_size, as a local task has.
    Bad records come back as Failed results, which the pipeline treats as it treats a local RecordError."""

    def __init__(self, server: Server, spec: RunSpec, device: str):
        self.server = server
        self.task = spec.task
        self.listing = getattr(spec.settings, "top_k", None) is not None and spec.task == "fill-mask"
        self.batch_size = default_batch_size(spec.task, device)
        self.window_batches = pipeline.window_batches(spec.task)
        self.body = {"model": spec.model, **spec.settings.wire()}
        if spec.revision:
            self.body["revision"] = spec.revision

    def check(self, text: str) -> None:
        """The server checks each record and answers an error result for a bad one."""

    def cost(self, text: str) -> int:
        return len(text)

    def run(self, texts: list[str]) -> list[Result]:
        answer = self.server.post(f"/v1/{self.task}", {**self.body, "inputs": texts})
        records = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(records, list) or len(records) != len(texts) or not all(isinstance(r, dict) for r in records):
            raise TfxError(f"the server at {self.server.url} sent an answer tfx cannot read.", "Check that --server points at `tfx serve` of this version.")
        return [self._result(record) for record in records]

    def stream(self, text: str) -> Iterator[TextChunk | Result]:
        for event in self.server.events(f"/v1/{self.task}", {**self.body, "inputs": [text], "stream": True}):
            if "text" in event:
                yield TextChunk(str(event["text"]))
            elif "result" in event:
                yield self._result(event["result"])
                return
            elif "error" in event:
                raise _error_from(event["error"], self.server.url, 400)
        raise TfxError(f"the server at {self.server.url} ended the stream early.", "Check the server's log.")

    def _result(self, record: dict[str, Any]) -> Result:
        """A server record is the CLI's jsonl record: an error, or the task's fields."""
        if "error" in record:
            return Failed(error=str(record["error"]))
        return results.from_record(self.task, record, self.listing)


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
        except (OSError, http.client.HTTPException):
            self.close()
            raise  # explained at the catch point: "lost the connection to the tfx server at URL"
        except ValueError:
            self.close()
            raise TfxError(f"the server at {self.url} sent an event tfx cannot read.", "Check that --server points at `tfx serve` of this version.") from None

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> http.client.HTTPResponse:
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            reused = self.conn is not None
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=payload, headers=self.headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if not reused or attempt == 2:  # a reused connection the server had closed while idle: retry once
                    raise
            except (OSError, http.client.HTTPException):
                self.close()
                raise
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=CONNECT_TIMEOUT_S)
            with about(server=self.url, action="connect"):
                conn.connect()
            conn.sock.settimeout(READ_TIMEOUT_S)
            self.conn = conn
        return self.conn

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


# ---- `tfx chat --server`: the server's OpenAI chat endpoint ------------------------------------------------


class ChatClient:
    """A conversation's turns sent to a tfx server's /v1/chat/completions, streamed: the server renders the
    chat template, this side keeps the history. Standard library only, as the rest of this engine."""

    def __init__(self, url: str):
        self.server = Server(url)
        with about(server=self.server.url):
            self.info = self.server.health()

    def only_model(self) -> str:
        """The model to talk to when none is named: the server's one model."""
        ids = [m.get("id") for m in self.info.get("models") or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if len(ids) != 1:
            listed = f" (it has {', '.join(ids)})" if ids else ""
            raise UsageError(f"name the model to chat with on {self.server.url}{listed}.", "Add -m MODEL.")
        return ids[0]

    def stream(self, model: str, messages: list[dict[str, str]], settings: Any) -> Iterator[str]:
        body = {"model": model, "messages": messages, "stream": True, **chat_params(settings)}
        try:
            with about(server=self.server.url):
                for event in self.server.events("/v1/chat/completions", body):
                    if isinstance(event.get("error"), dict):
                        raise _error_from(event["error"], self.server.url, 400)
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
                        if isinstance(piece, str) and piece:
                            yield piece
        finally:  # the stream ends at [DONE] with its body unread: a new connection per turn (turns are seconds apart)
            self.server.close()

    def close(self) -> None:
        self.server.close()


def chat_params(settings: Any) -> dict[str, Any]:
    """GenerateSettings in OpenAI's chat terms: each set field by its OpenAI name (the settings schema), tfx's
    own (top_k, num_beams, ...) by theirs, which the server also takes; do_sample as OpenAI says it (a
    temperature of 0 is greedy, a temperature samples)."""
    from tfx.settings import schema

    chat_fields = {"max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty", "no_repeat_ngram_size", "seed", "stop"}
    params: dict[str, Any] = {}
    for f in schema(type(settings)):
        value = getattr(settings, f.name)
        if f.name not in chat_fields or value is None or f.name == "do_sample":
            continue
        params[f.opt.openai or f.name] = list(value) if isinstance(value, tuple) else value
    if settings.do_sample is False:
        params["temperature"] = 0
    elif settings.do_sample and "temperature" not in params:
        params["temperature"] = 1.0
    return params
