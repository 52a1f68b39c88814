"""`GET /metrics` in Prometheus' text format (prometheus-client), from a registry of the app's own, so several
apps in one process (the tests) never share or collide on a series.

    tfx_requests_total{endpoint,model,status}        every answer, errors included (the middleware)
    tfx_request_duration_seconds{endpoint,model}     from the request's arrival to its last byte
    tfx_time_to_first_token_seconds{endpoint,model}  streams: from the arrival to the first event sent
    tfx_batch_size                                   inputs per model batch
    tfx_prompt_tokens_total / tfx_generated_tokens_total{model}
    tfx_queue_depth{model,head,backend}              inputs waiting or running (read from the slots at scrape time)
    tfx_models_loaded, tfx_model_memory_bytes{model,head,backend,device}   (at scrape time)

Label values are bounded: an endpoint is a route of the app (else "other"), a model one the server has
(else ""), so a client sending made-up names or paths cannot grow the series without end."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from tfx.serve.http import MODEL_KEY, TOKENS_KEY, answered, state

access = logging.getLogger("tfx.access")  # one line per request on stderr (serve.server sets it up; --quiet: off)
router = APIRouter()
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self, manager):  # manager: the serve.models.Manager whose slots the gauges read
        self.manager = manager
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tfx_requests", "HTTP requests answered, by endpoint, model and status.", ["endpoint", "model", "status"], registry=r)
        self.latency = Histogram("tfx_request_duration_seconds", "Seconds from a request's arrival to its answer's last byte.", ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram(
            "tfx_time_to_first_token_seconds", "Streamed answers: seconds from the request's arrival to its first event.", ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=r
        )  # fmt: skip
        self.batch = Histogram("tfx_batch_size", "Inputs in each model batch.", buckets=BATCH_BUCKETS, registry=r)
        self.prompt_tokens = Counter("tfx_prompt_tokens", "Prompt tokens of generations (completions and chat).", ["model"], registry=r)
        self.generated_tokens = Counter("tfx_generated_tokens", "Tokens generated (completions, chat, generate, translate, summarize).", ["model"], registry=r)
        r.register(SlotCollector(manager))

    def expose(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def count_outcome(self, slot, outcome: Any) -> None:
        """On a model's thread, after one input ran: its tokens. The completions' Usage knows the prompt's and
        each sequence's; other tasks' results know the tokens they generated."""
        model = slot.prepared.name
        usage = outcome.extra
        if hasattr(usage, "prompt_tokens") and hasattr(usage, "sequence_tokens"):
            self.prompt_tokens.labels(model).inc(usage.prompt_tokens)
            self.generated_tokens.labels(model).inc(sum(usage.sequence_tokens))
        elif outcome.result is not None and outcome.result.tokens:
            self.generated_tokens.labels(model).inc(outcome.result.tokens)


class SlotCollector:
    """The gauges read from the slots when Prometheus scrapes."""

    def __init__(self, manager):
        self.manager = manager

    def describe(self):
        return []  # the families are made at collect time

    def collect(self):
        queue = GaugeMetricFamily("tfx_queue_depth", "Inputs waiting or running on a model.", labels=["model", "head", "backend"])
        memory = GaugeMetricFamily("tfx_model_memory_bytes", "Bytes of a loaded model's weights (ct2: its converted files).", labels=["model", "head", "backend", "device"])
        depth: dict[tuple[str, ...], float] = {}
        sizes: dict[tuple[str, ...], float] = {}
        loaded = 0
        for slot in list(self.manager.slots.values()):
            labels = (slot.prepared.name, slot.head, slot.backend)
            depth[labels] = depth.get(labels, 0) + slot.pending
            current = slot.loaded
            if current is not None:
                loaded += 1
                key = (*labels, current.device)
                sizes[key] = sizes.get(key, 0) + memory_bytes(current)
        for labels, value in depth.items():  # two revisions of one name are one series
            queue.add_metric(list(labels), value)
        for labels, value in sizes.items():
            memory.add_metric(list(labels), value)
        yield queue
        yield GaugeMetricFamily("tfx_models_loaded", "Models in memory now.", value=loaded)
        yield memory


def memory_bytes(loaded: Any) -> int:
    """A loaded model's weights, without loading anything it has not loaded yet: the torch model's
    parameters and buffers (each storage once: tied weights count once), the fast GPT-2 path's tensors, or a
    ct2 model's converted files."""
    model = loaded.__dict__.get("_model")  # Loaded loads its model on first use: never load it here
    runner = getattr(model, "_runner", None)  # a tasks.ct2.Ct2Model
    if runner is not None:
        return sum(f.stat().st_size for f in Path(runner.path).iterdir() if f.is_file())
    torch = sys.modules.get("torch")
    if torch is None:  # no torch tensor can exist
        return 0
    seen: set[int] = set()
    total = 0

    def add(tensor) -> None:
        nonlocal total
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()

    if hasattr(model, "parameters") and hasattr(model, "buffers"):
        for tensor in (*model.parameters(), *model.buffers()):
            add(tensor)
    if loaded.fast is not None:
        _walk(getattr(loaded.fast, "decoder", None), torch.Tensor, add, 3)
    return total


def _walk(obj: Any, tensor_type: type, add, depth: int) -> None:
    """The tensors held by obj's attributes, lists, tuples and dicts, a few levels down."""
    if isinstance(obj, tensor_type):
        add(obj)
        return
    if depth == 0 or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return
    for item in items:
        _walk(item, tensor_type, add, depth - 1)


class MetricsMiddleware:
    """Counts and times every HTTP answer (errors, 401s and 404s included): endpoint, model, status; and
    writes its access-log line: method, path, status, model, tokens, milliseconds."""

    def __init__(self, app, metrics: Metrics, routes: set[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})  # what request.state reads and writes
        status, streaming, first = 500, False, None

        async def sending(message) -> None:
            nonlocal status, streaming, first
            if message["type"] == "http.response.start":
                status = message["status"]
                streaming = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream") for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body" and streaming and first is None and message.get("body"):
                first = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = self.endpoint(scope)
            named = state.get(MODEL_KEY)
            model = named if isinstance(named, str) and self.metrics.manager.knows(named) else ""
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(endpoint, model, str(status)).inc()
            self.metrics.latency.labels(endpoint, model).observe(elapsed)
            if first is not None:
                self.metrics.first_token.labels(endpoint, model).observe(first - started)
            if access.isEnabledFor(logging.INFO):
                tokens = state.get(TOKENS_KEY)
                path = scope.get("path", "")
                path = path if len(path) <= 200 else path[:200] + "..."
                access.info(
                    "%s %s %d model=%s tokens=%s %.1fms", scope.get("method", "-"), path.encode("unicode_escape").decode("ascii"), status,
                    model or "-", tokens if isinstance(tokens, int) else "-", elapsed * 1000,
                )  # fmt: skip

    def endpoint(self, scope) -> str:
        route = getattr(scope.get("route"), "path", None)
        if isinstance(route, str) and route in self.routes:
            return route
        return scope["path"] if scope.get("path") in self.routes else "other"


@router.get("/metrics")
@answered
async def scrape(request: Request):
    _, manager = state(request)
    body, content_type = manager.metrics.expose()
    return Response(body, media_type=content_type)
