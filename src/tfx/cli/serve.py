"""The `tfx serve` command; the server itself (fastapi, uvicorn, torch) is imported only when it starts."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tfx.cli import options as o
from tfx.serve import config as c

SERVE_EXAMPLES = """Examples:

  tfx serve -m gpt2

  tfx serve -m gpt2 -m bert-base-uncased --keep-alive 30m --api-key "$(openssl rand -hex 16)"

  tfx serve --engine ct2 -m Helsinki-NLP/opus-mt-en-de      # CTranslate2, int8 on CPU

  TFX_SERVER=http://127.0.0.1:8000 tfx generate "Once upon a time"

  tfx ps; tfx stop gpt2                                      # what a running server has loaded; unload one

  curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' -d '{"model": "gpt2", "prompt": "Once upon a time", "max_tokens": 20}'
"""


def register(app: typer.Typer) -> None:
    """Add `tfx serve` to the tfx app."""
    app.command("serve", epilog=SERVE_EXAMPLES)(serve)


def serve(
    models: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Load this model at start (repeatable). Others load on first request.", show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback is reachable by others: use --api-key.")] = c.DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port, printed at start).")] = c.DEFAULT_PORT,
    keep_alive: Annotated[str, typer.Option("--keep-alive", help="Unload a model idle this long: 30s, 5m, 1h; 0 at once, -1 never.")] = c.DEFAULT_KEEP_ALIVE,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="TFX_API_KEY", help="Require Authorization: Bearer KEY on every route but /health.", show_default=False)] = None,
    max_tokens_cap: Annotated[int, typer.Option("--max-tokens-cap", help="Refuse requests asking for more new tokens than this.")] = c.DEFAULT_MAX_TOKENS_CAP,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", help="How long a batch waits for more requests to join it.")] = c.DEFAULT_BATCH_WINDOW_MS,
    batching: Annotated[
        str,
        typer.Option(
            "--batching",
            help="continuous: a generate request joins the running batch at its next step (transformers' continuous batching; "
            "requests it cannot run exactly, and other tasks, use window batching); window: batches collect for --batch-window-ms "
            "and run to their end; auto: continuous where it applies.",
        ),
    ] = c.DEFAULT_BATCHING,
    max_batch_size: Annotated[Optional[int], typer.Option("--max-batch-size", help="Most inputs in one model batch (default: the task's, as in the CLI).", show_default=False)] = None,
    max_body: Annotated[str, typer.Option("--max-body", help="Refuse request bodies larger than this (e.g. 512k, 8M).")] = c.DEFAULT_MAX_BODY,
    allow_pull: Annotated[bool, typer.Option("--allow-pull", help="Download a requested model that is not in the cache (default: only -m models may download).")] = False,
    max_inputs: Annotated[int, typer.Option("--max-inputs", help="Most inputs (or prompts) in one request.")] = c.MAX_INPUTS,
    max_request_tokens: Annotated[int, typer.Option("--max-request-tokens", help="One request's budget: inputs x sequences x new tokens (fill-mask: inputs x masks x top_k).")] = c.DEFAULT_MAX_REQUEST_TOKENS,
    max_top_k: Annotated[int, typer.Option("--max-top-k", help="Largest top_k of fill-mask and the other listing tasks.")] = c.DEFAULT_MAX_TOP_K,
    max_masks: Annotated[int, typer.Option("--max-masks", help="Most masks in one fill-mask input.")] = c.DEFAULT_MAX_MASKS,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Inputs waiting or running on one model before new requests get 503 with Retry-After.")] = c.DEFAULT_MAX_QUEUE,
    max_models: Annotated[Optional[int], typer.Option("--max-models", help="Most models loaded at once; the least recently used is unloaded first (default: no bound).", show_default=False)] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a --host other than loopback without --api-key.")] = False,
    alias: Annotated[Optional[list[str]], typer.Option("--alias", help="Answer to NAME as MODEL, listed in /v1/models as NAME (repeatable): --alias gpt=openai-community/gpt2.", show_default=False)] = None,
    allowed_hosts: Annotated[
        Optional[list[str]],
        typer.Option("--allowed-hosts", help="Host names clients may use besides localhost, 127.0.0.1, ::1 and --host (repeatable; '*': any). Others get 421.", show_default=False),
    ] = None,
    allowed_origins: Annotated[
        Optional[list[str]],
        typer.Option("--allowed-origins", help="Web origins whose pages may call the server (CORS; repeatable), e.g. http://localhost:3000. Others get 403.", show_default=False),
    ] = None,
    backend: Annotated[
        Optional[str],
        typer.Option(
            "--backend",
            help="transformers (default): PyTorch for every model; ct2: CTranslate2 for the models and tasks it runs (generate on GPT-2, "
            "translate/summarize on T5, BART, Marian; pip install 'tfx-cli[ct2]'); onnx: ONNX Runtime for the encoder tasks "
            "(classify, ner, fill-mask, embed, rank; pip install 'tfx-cli[onnx]'); auto: ct2 and onnx where they give transformers' "
            "result (float32), transformers for the rest. Models and tasks a backend does not run stay on transformers.",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="The spelling before --backend: local (transformers), ct2 or auto.", hidden=True)] = "local",
    compute_type: o.ComputeType = "auto",
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Keep models loaded and serve them over HTTP: an OpenAI-compatible /v1/completions, plus /v1/generate,
    /v1/fill-mask, /v1/translate and /v1/summarize with the CLI's parameters. Concurrent requests are batched."""
    from tfx.cli.common import execute, setup

    def body() -> int:
        from tfx.errors import UsageError

        if max_batch_size is not None and max_batch_size < 1:
            raise UsageError("--max-batch-size must be at least 1.", "Leave it out for the task's default.")
        if max_tokens_cap < 1 or batch_window_ms < 0:
            raise UsageError("--max-tokens-cap must be at least 1 and --batch-window-ms at least 0.", "Leave them out for the defaults.")
        settings = c.Settings(
            host=host, port=port, models=list(models or []), keep_alive_s=c.parse_duration(keep_alive), api_key=api_key if api_key else None,
            max_tokens_cap=max_tokens_cap, batch_window_s=batch_window_ms / 1000, max_batch_size=max_batch_size,
            max_body_bytes=c.parse_size(max_body), device=device, dtype=dtype, trust_remote_code=trust_remote_code,
            allow_pull=allow_pull, verbose=verbose, quiet=quiet, max_inputs=max_inputs, max_request_tokens=max_request_tokens,
            max_top_k=max_top_k, max_masks=max_masks, max_queue=max_queue, max_models=max_models, insecure=insecure,
            engine=serve_backend(backend, engine), compute_type=compute_type, batching=batching.strip().lower(),
            aliases=c.parse_aliases(alias or []), allowed_hosts=list(allowed_hosts or []), allowed_origins=list(allowed_origins or []),
        )  # fmt: skip
        c.check(settings)
        setup(offline, quiet, verbose, prefix="tfx serve")  # hub's environment, then setup_logging
        from tfx.serve.server import serve as run_server

        return run_server(settings)

    execute(body)



def serve_backend(backend: str | None, engine: str) -> str:
    """The server's backend: --backend, or --engine as it was spelt before (local: transformers), noted."""
    engine = engine.strip().lower()
    if backend is None:
        if engine == "ray":
            from tfx.errors import UsageError

            raise UsageError(
                "tfx serve has no --engine ray: the server runs its models in this process.",
                "Leave --engine out; for a cluster-sized batch job use a task command with --engine ray.",
            )
        if engine != "local":
            import logging

            logging.getLogger("tfx").warning("tfx serve --engine %s is now --backend %s", engine, engine)
        return engine
    backend = backend.strip().lower()
    return "local" if backend == "transformers" else backend
