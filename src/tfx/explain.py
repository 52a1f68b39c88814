"""ONE ordered table that turns library exceptions (huggingface_hub, transformers, torch, safetensors,
ray, HTTP) into one line that names the fix, and `explain`, which the two catch points call: the CLI's
(cli.common.execute) and the server's (serve.app.describe).

The table is keyed by exception type, subclasses first, and matched against each class in the
exception's MRO by (top-level package, class name), so no library is imported to build it and no
decision ever depends on the wording of a message. What a message names (the model, the revision, the
server) comes from the context that `errors.about` attached to the exception where it was known."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfx import registry
from tfx.errors import HubUnreachable, ModelNotFound, NotCached, ServerError, TfxError, chain, context_of, first_line

Builder = Callable[[BaseException, dict[str, Any]], TfxError]
_LOGIN = "log in with `hf auth login` or set HF_TOKEN"


def _status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _model(ctx: dict[str, Any]) -> str:
    return str(ctx.get("model") or "the model")


def close_hint(name: str) -> str:
    close = registry.close_names(name)
    if close:
        return "Did you mean " + " or ".join(close) + "? `tfx models` lists known models; `tfx search` finds others."
    return "`tfx models` lists known models; `tfx search` finds others on the Hub."


def auth_error(name: str, gated: bool, status: int | None = None, token: str | None = None) -> TfxError:
    """token: where a Hub token comes from (hub.token_source(), attached as context), or None."""
    if not token:
        # Without a token the Hub answers 401 for private repos and for missing ones alike.
        what = "gated" if gated else "gated or private (or it does not exist)"
        close = [] if gated else registry.close_names(name)[:2]
        return ModelNotFound(
            f"{name} is {what} and the Hub wants a token.",
            f"If you have access, {_LOGIN}; for a gated model, first accept its terms on its Hub page."
            + (f" Did you mean {' or '.join(close)}?" if close else ""),
        )
    return ModelNotFound(
        f"{name} is gated or private and your Hub token has no access to it (HTTP {status or 403}).",
        f"Accept the model's terms on its Hub page, or {_LOGIN} with a token that can read it.",
    )


def _gated(exc, ctx) -> TfxError:
    return auth_error(_model(ctx), True, _status(exc), ctx.get("token"))


def _repo_missing(exc, ctx) -> TfxError:
    if _status(exc) in (401, 403):
        return auth_error(_model(ctx), False, _status(exc), ctx.get("token"))
    return ModelNotFound(f"model {_model(ctx)} does not exist on the Hub.", close_hint(_model(ctx)))


def _revision_missing(exc, ctx) -> TfxError:
    return ModelNotFound(
        f"{_model(ctx)} has no revision '{ctx.get('revision')}' on the Hub.",
        "Use a branch, tag or commit of the repository, or drop --revision.",
    )


def _entry_missing(exc, ctx) -> TfxError:
    return ModelNotFound(f"a file of {_model(ctx)} is missing on the Hub.", "Run the command again; if it persists, the repository is incomplete.")


def _hub_http(exc, ctx) -> TfxError:
    status = _status(exc)
    if status in (401, 403):
        return auth_error(_model(ctx), False, status, ctx.get("token"))
    if status == 404:
        return _repo_missing(exc, ctx)
    if status is not None and status >= 500:
        return ServerError(f"the Hub answered {status} for {_model(ctx)}.", "It is having trouble; try again in a minute.")
    return TfxError(f"the Hub refused the request for {_model(ctx)} (HTTP {status}).", "Check the model name and your token.")


def _offline(exc, ctx) -> TfxError:
    if ctx.get("action") == "search":
        return NotCached(
            "search needs the Hub, and offline mode is on.",
            "Drop --offline / HF_HUB_OFFLINE to search; offline, `tfx models` and `tfx cache ls` list what you have.",
        )
    name = _model(ctx)
    return NotCached(f"{name} is not in the local cache and offline mode is on.", f"Run `tfx pull {name}` while online, or drop --offline / HF_HUB_OFFLINE.")


def _network(exc, ctx) -> TfxError:
    if ctx.get("server") and ctx.get("action") == "connect":
        return ServerError(f"cannot reach the tfx server at {ctx['server']} ({_reason(exc)}).", "Start one with `tfx serve`, or fix --server / TFX_SERVER.")
    if ctx.get("server"):
        return ServerError(f"lost the connection to the tfx server at {ctx['server']} ({_reason(exc)}).", "Check the server's log.")
    if ctx.get("action") == "search":
        return HubUnreachable(
            "cannot search: the Hub is unreachable.",
            "Check your connection or proxy (HTTPS_PROXY, HF_ENDPOINT); offline, `tfx models` lists the models tfx knows.",
        )
    return HubUnreachable(
        f"{_model(ctx)} is not in the local cache and the Hub is unreachable.",
        "Check your connection or proxy (HTTPS_PROXY, HF_ENDPOINT), or use a model you have pulled (`tfx cache ls`).",
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or first_line(exc)


def _out_of_device_memory(exc, ctx) -> TfxError:
    return ServerError("the device ran out of memory.", "Try a smaller --batch-size, --dtype float16, or --device cpu.")


def _out_of_memory(exc, ctx) -> TfxError:
    return ServerError("out of memory.", "Try a smaller --batch-size or a smaller model.")


def _bad_weights(exc, ctx) -> TfxError:
    name = ctx.get("model") or "MODEL"
    return ServerError(f"the model's weights could not be read ({first_line(exc)}).", f"Run `tfx cache rm {name}` and `tfx pull {name}` to fetch them again.")


def _bad_model_files(exc, ctx) -> TfxError:
    return TfxError(
        f"{_model(ctx)} cannot be loaded: {first_line(exc)}",
        "Check that it is a transformers model of a supported kind; `tfx pull` it again if its files are damaged.",
    )


def _os_error(exc, ctx) -> TfxError | None:
    """Only a socket's errors (no errno file name) mean the network; a file's OSError stays unexplained."""
    return _network(exc, ctx) if ctx.get("server") and getattr(exc, "filename", None) is None else None


def _ray_failure(exc, ctx) -> TfxError:
    return ServerError(f"the Ray cluster failed: {type(exc).__name__}: {first_line(exc)}", "Run with -v to see Ray's logs.")


# (package, class name) -> builder, subclasses first. A class is matched by its name and the top-level
# package it is defined in, anywhere in the exception's MRO.
ERROR_TABLE: tuple[tuple[str, str, Builder], ...] = (
    ("huggingface_hub", "GatedRepoError", _gated),
    ("huggingface_hub", "RepositoryNotFoundError", _repo_missing),
    ("huggingface_hub", "RevisionNotFoundError", _revision_missing),
    ("huggingface_hub", "RemoteEntryNotFoundError", _entry_missing),
    ("huggingface_hub", "HfHubHTTPError", _hub_http),
    ("huggingface_hub", "OfflineModeIsEnabled", _offline),
    ("huggingface_hub", "LocalEntryNotFoundError", _network),  # raised when a download could not connect
    ("torch", "OutOfMemoryError", _out_of_device_memory),
    ("safetensors", "SafetensorError", _bad_weights),
    ("safetensors_rust", "SafetensorError", _bad_weights),
    ("ray", "RaySystemError", _ray_failure),
    ("ray", "ActorDiedError", _ray_failure),
    ("httpx", "TransportError", _network),
    ("httpx2", "TransportError", _network),
    ("requests", "ConnectionError", _network),
    ("requests", "Timeout", _network),
    ("http", "HTTPException", _network),
    ("builtins", "MemoryError", _out_of_memory),
    ("builtins", "ConnectionError", _network),
    ("builtins", "TimeoutError", _network),
    ("json", "JSONDecodeError", _bad_model_files),  # a damaged config.json or tokenizer.json
    ("builtins", "OSError", _os_error),  # after its subclasses (ConnectionError, TimeoutError)
)


def _matches(exc: BaseException, package: str, name: str) -> bool:
    return any(cls.__name__ == name and cls.__module__.split(".")[0] == package for cls in type(exc).__mro__)


def explain(exc: BaseException) -> TfxError | None:
    """The TfxError for exc: itself, or the table's message for it (or for what caused it); None for an
    exception tfx does not know, which the catch points keep loud."""
    context = context_of(exc)
    for e in chain(exc):
        if isinstance(e, TfxError):
            return e
        for package, name, build in ERROR_TABLE:
            if _matches(e, package, name):
                found = build(e, context)
                if found is not None:
                    return found
    return None
