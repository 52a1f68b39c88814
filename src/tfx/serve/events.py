"""Server-sent events: one JSON object per event (OpenAI's chat and completions streams), an event with its
type (the Responses API's), and the [DONE] that ends a stream. Imports nothing of tfx.serve."""

from __future__ import annotations

import json
from typing import Any

SSE_DONE = "data: [DONE]\n\n"


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def named_sse(event: str, obj: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n"
