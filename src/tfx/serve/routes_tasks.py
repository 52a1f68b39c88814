"""The task endpoints, one per tfx task (`POST /v1/generate`, `/v1/fill-mask`, ... `/v1/rank`) with the CLI's
settings under their HTTP names: what `tfx TASK --server` sends. Each answers {"model", "results"} (one jsonl
record per input, error records included) or, streamed, {"text"} pieces then {"result"}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tfx import registry
from tfx.serve import limits
from tfx.serve.events import SSE_DONE, sse
from tfx.serve.http import BATCH_HEADER, ApiError, answered, body_schema, note, read_json, sse_error, state, unless_gone
from tfx.serve.schemas import TASK_REQUESTS, TaskRequest
from tfx.serve.work import Outcome
from tfx.settings import SettingError
from tfx.tasks import generate
from tfx.tasks.base import context_length

router = APIRouter()


def check_work(task: str, wanted, texts: list[str], prepared, settings) -> None:
    """What needs the model's configs, before anything is queued: the settings against its generation
    config, the room in its context, the request budget."""
    namer = TASK_REQUESTS[task].namer()
    try:
        wanted.validate(prepared.generation_defaults)
    except SettingError as err:  # named as the body names it, never as a CLI flag
        message, hint = err.render(namer)
        raise ApiError(400, message + (f" {hint}" if hint else ""), "invalid_parameter", namer(err.fields[0]) if err.fields else None) from None
    if task == "generate":
        check_room(generate.length_kwargs(wanted, prepared.generation_defaults), prepared, namer)
    limits.check_budget(task, wanted, texts, settings, prepared)


def check_room(kwargs: dict[str, Any], prepared, namer) -> None:
    """generate.check_room's rule (new tokens must leave the prompt room in a decoder's context), its message
    naming the body's fields rather than the CLI's flags."""
    context = None if prepared.family == registry.ENCODER_DECODER else context_length(prepared.config)
    if context is None:
        return
    new, total = kwargs.get("max_new_tokens"), kwargs.get("max_length")
    if new is not None and new >= context:
        field = namer("max_new_tokens")
        raise ApiError(400, f"{field} is {new}, which leaves no room for the prompt in {prepared.name}'s context of {context} tokens; ask for at most {context - 1}", "invalid_parameter", field)
    if total is not None and total > context:
        field = namer("max_length")
        raise ApiError(400, f"{field} is {total}, past {prepared.name}'s context of {context} tokens; ask for at most {context}", "invalid_parameter", field)


def task_route(task: str):
    schema = TASK_REQUESTS[task]

    async def run_task(request: Request):
        settings, manager = state(request)
        body: TaskRequest = await read_json(request, schema, settings.max_body_bytes)
        texts = body.texts()
        if texts is None:
            raise ApiError(400, "give either input (a string) or inputs (a list of strings)", "missing_field", "inputs")
        limits.check_inputs(len(texts), settings)
        wanted = body.settings()
        limits.check_lengths(wanted, settings.max_tokens_cap)
        limits.check_top_k(task, wanted, settings)
        name = body.model or wanted.default_model(task)  # the settings' own default (classify --labels: an NLI model)
        note(request, model=name)
        slot, prepared = await manager.slot_for(name, task, body.revision, wanted.variant(), wanted)
        check_work(task, wanted, texts, prepared, settings)
        if getattr(body, "stream", False):
            if len(texts) != 1 or not wanted.streamable(prepared.generation_defaults):
                raise ApiError(400, "stream needs one input, num_return_sequences 1 and num_beams 1", "invalid_stream", "stream")
            stream = slot.stream(task, wanted, texts[0])
            return StreamingResponse(stream_records(request, stream, texts[0], name), media_type="text/event-stream", headers={BATCH_HEADER: "1"})
        outcomes = await unless_gone(request, slot.run(task, wanted, texts))
        results = [record(text, outcome, name) for text, outcome in zip(texts, outcomes)]
        note(request, tokens=sum(o.result.tokens for o in outcomes if o.result is not None))
        headers = {BATCH_HEADER: str(max(o.batch for o in outcomes))}
        return JSONResponse({"model": name, "results": results}, headers=headers)

    run_task.__name__ = "run_" + task.replace("-", "_")
    return answered(run_task)


def record(text: str, outcome: Outcome, model: str) -> dict[str, Any]:
    """An outcome as the CLI's jsonl record: input, the task's fields, model; or input and error."""
    if outcome.error is not None:
        return {"input": text, "error": outcome.error}
    return {"input": text, **outcome.result.record(), "model": model}


async def stream_records(request: Request, stream, text: str, model: str):
    """Events of a streamed task request (what `tfx generate --server` reads on a terminal): {"text"}
    pieces, then {"result": record} (an error record for a bad input) or {"error"}, then [DONE]."""
    try:
        async for kind, value in stream.events():
            if kind == "text":
                yield sse({"text": value})
            elif kind == "error":
                yield sse_error(value)
                break
            elif value is not None:
                if value.result is not None:
                    note(request, tokens=value.result.tokens)
                yield sse({"result": record(text, value, model)})
        yield SSE_DONE
    finally:
        stream.close()


for _task, _schema in TASK_REQUESTS.items():
    router.add_api_route(f"/v1/{_task}", task_route(_task), methods=["POST"], openapi_extra=body_schema(_schema), name="run_" + _task.replace("-", "_"))
