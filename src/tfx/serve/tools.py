"""Tool calls on /v1/chat/completions (OpenAI's `tools` / `tool_choice`), for models whose chat template takes
tools: the tools checked (shape, names, sizes, all bounded), handed to the template (transformers'
apply_chat_template(tools=...)), and the model's reply read back into OpenAI's `tool_calls`.

Reading a reply: with the tokenizer's own `response_template` (transformers' parse_response, arguments cast
to the tool's schema) where it has one; else, where the template writes Hermes/Qwen-style
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, tfx's own small reader of that format (transformers
keeps its per-model fallbacks private, in transformers/cli/serving/utils.py); any other template's tools are
a 400. `tool_choice` "required" or a named function forces a call through constrained decoding (the generate
task's json_schema, xgrammar): a JSON Schema of {"name", "arguments"}; the grammar cannot hold the template's
markers, so for the Hermes format the prompt ends with the opening `<tool_call>` and the grammar writes the
JSON; for a response_template's format a forced choice is a 400."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from tfx.serve import decoding
from tfx.serve.http import ApiError

MAX_TOOLS = 128
MAX_TOOLS_BYTES = 256 * 1024  # the tools as JSON
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # OpenAI's function names
OPEN, CLOSE = "<tool_call>", "</tool_call>"
HERMES = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.S)


def bad(message: str, param: str = "tools", code: str = "invalid_tools") -> ApiError:
    return ApiError(400, message, code, param)


@dataclass
class ToolRequest:
    """The checked tools and the choice: "auto", "none", "required", or a function's name."""

    tools: list[dict[str, Any]]
    choice: str

    @property
    def forced(self) -> bool:
        return self.choice not in ("auto", "none")

    def template_tools(self) -> list[dict[str, Any]] | None:
        """What the template gets: no tools when the choice is "none" (the model answers in words)."""
        return None if self.choice == "none" else self.tools

    def call_schema(self) -> str:
        """The JSON Schema of one call of the chosen tool (or, "required", of any tool)."""
        chosen = [t for t in self.tools if self.choice == "required" or t["function"]["name"] == self.choice]
        ones = [{"type": "object", "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]},
                 "required": ["name", "arguments"], "additionalProperties": False} for t in chosen]  # fmt: skip
        schema = json.dumps(ones[0] if len(ones) == 1 else {"anyOf": ones})
        problem = decoding.schema_problem(schema)
        if problem:
            raise bad(f"tool_choice {self.choice!r} forces a call, but a tool's parameters is a schema tfx cannot follow: {problem}; use the JSON Schema subset of OpenAI's structured outputs, or tool_choice \"auto\"", "tools")
        return schema


def checked(tools: Any, choice: Any) -> ToolRequest | None:
    """The body's tools and tool_choice, checked hostilely: every fault a 400 naming the field."""
    if tools is None or tools == []:
        if choice not in (None, "none", "auto"):
            raise bad("tool_choice needs tools: send the functions the model may call in tools", "tool_choice", "invalid_tool_choice")
        return None
    if not isinstance(tools, list):
        raise bad("tools must be a list of {\"type\": \"function\", \"function\": {name, description, parameters}}")
    if len(tools) > MAX_TOOLS:
        raise bad(f"tools has {len(tools)} entries, over the limit of {MAX_TOOLS}")
    if len(json.dumps(tools)) > MAX_TOOLS_BYTES:
        raise bad(f"tools is over {MAX_TOOLS_BYTES} bytes as JSON")
    out, names = [], set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise bad(f"{where} must be {{\"type\": \"function\", \"function\": {{...}}}} (tfx serve takes function tools only)")
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise bad(f"{where}.function.name must be 1 to 64 letters, digits, _ . or -")
        if name in names:
            raise bad(f"{where}.function.name {name!r} is given twice")
        names.add(name)
        description = fn.get("description")
        if description is not None and not isinstance(description, str):
            raise bad(f"{where}.function.description must be a string")
        parameters = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise bad(f"{where}.function.parameters must be a JSON Schema object")
        clean = {"name": name, "parameters": parameters, **({"description": description} if description else {})}
        out.append({"type": "function", "function": clean})
    return ToolRequest(out, checked_choice(choice, names))


def checked_choice(choice: Any, names: set[str]) -> str:
    if choice is None:
        return "auto"
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if isinstance(name, str) and name in names:
            return name
        raise bad(f"tool_choice names {str(name)[:64]!r}, which is not among tools", "tool_choice", "invalid_tool_choice")
    raise bad("tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", "tool_choice", "invalid_tool_choice")


def takes_tools(tokenizer: Any) -> bool:
    """Whether the chat template reads a `tools` variable (jinja2's own analysis of the template)."""
    import jinja2
    from jinja2 import meta

    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default one, or a "tool_use" one
        template = template.get("tool_use") or template.get("default")
    if not isinstance(template, str):
        return False
    try:
        return "tools" in meta.find_undeclared_variables(jinja2.Environment().parse(template))
    except jinja2.TemplateSyntaxError:
        return False


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def openai_call(name: str, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {})
    return {"id": call_id(), "type": "function", "function": {"name": name, "arguments": args}}


def hermes_call(inner: str) -> dict[str, Any] | None:
    try:
        data = json.loads(inner)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    return openai_call(data["name"], data.get("arguments", data.get("parameters")))


class Reader:
    """How one generation's reply is read: whole() -> (content or None, calls); a Stream for streaming."""

    def __init__(self, kind: str, parse=None):
        self.kind = kind  # "hermes", "template" (the tokenizer's response_template: parse), "forced"
        self.parse = parse

    def whole(self, text: str) -> tuple[str | None, list[dict[str, Any]]]:
        if self.kind == "forced":
            call = hermes_call(text.strip())
            return (None, [call]) if call else (text, [])
        if self.kind == "template":
            parsed = self.parse(text) or {}
            calls = []
            for c in parsed.get("tool_calls") or []:
                fn = c.get("function", c) if isinstance(c, dict) else {}
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    calls.append(openai_call(fn["name"], fn.get("arguments")))
            content = parsed.get("content")
            return (content if content else None) if calls else (content if content is not None else text), calls
        calls, kept, at = [], [], 0
        for m in HERMES.finditer(text):
            call = hermes_call(m.group(1))
            if call is None:
                continue
            kept.append(text[at : m.start()])
            at = m.end()
            calls.append(call)
        if not calls:
            return text, []
        content = ("".join(kept) + text[at:]).strip()
        return content or None, calls

    def stream(self) -> Stream:
        return Stream(self)


class Stream:
    """One streamed reply read as it comes: feed(text) and finish() give deltas, each ("content", text) or
    ("call", [tool_calls delta entries]). The Hermes format streams content as it comes (holding back what
    may open a call) and each call once it closes (its name first, then its arguments); other formats are
    read whole at the end."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.buffer = ""
        self.calls = 0

    def feed(self, text: str) -> list[tuple[str, Any]]:
        self.buffer += text
        if self.reader.kind != "hermes":
            return []
        out: list[tuple[str, Any]] = []
        while True:
            start = self.buffer.find(OPEN)
            if start < 0:
                keep = next((k for k in range(min(len(OPEN) - 1, len(self.buffer)), 0, -1) if OPEN.startswith(self.buffer[-k:])), 0)
                head, self.buffer = self.buffer[: len(self.buffer) - keep], self.buffer[len(self.buffer) - keep :]
                if head:
                    out.append(("content", head))
                return out
            if start:
                out.append(("content", self.buffer[:start]))
                self.buffer = self.buffer[start:]
            end = self.buffer.find(CLOSE)
            if end < 0:
                return out
            block, self.buffer = self.buffer[: end + len(CLOSE)], self.buffer[end + len(CLOSE) :]
            call = hermes_call(block[len(OPEN) : -len(CLOSE)].strip())
            out.extend(self._call(call) if call else [("content", block)])

    def finish(self) -> list[tuple[str, Any]]:
        rest, self.buffer = self.buffer, ""
        if self.reader.kind == "hermes":
            return [("content", rest)] if rest else []
        content, calls = self.reader.whole(rest)
        out: list[tuple[str, Any]] = [("content", content)] if content else []
        for call in calls:
            out.extend(self._call(call))
        return out

    def _call(self, call: dict[str, Any]) -> list[tuple[str, Any]]:
        index = self.calls
        self.calls += 1
        fn = call["function"]
        first = {"index": index, "id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": ""}}
        return [("call", [first]), ("call", [{"index": index, "function": {"arguments": fn["arguments"]}}])]


def reader_for(tokenizer: Any, prompt: str, request: ToolRequest, model: str) -> Reader:
    """The reader of this model's tool calls, or a 400 where tfx cannot read the template's format."""
    template = getattr(tokenizer, "response_template", None)
    if request.forced:
        if template is not None or OPEN not in str(getattr(tokenizer, "chat_template", "")):
            raise bad(f"tool_choice {request.choice!r} forces a call, which tfx serve can do only for templates that write <tool_call> JSON; {model}'s does not: use tool_choice \"auto\"", "tool_choice", "unsupported_tool_choice")
        return Reader("forced")
    if template is not None:
        tools = request.template_tools()
        return Reader("template", lambda text: tokenizer.parse_response(text, prefix=prompt, tools=tools))
    if OPEN in str(getattr(tokenizer, "chat_template", "")):
        return Reader("hermes")
    raise bad(f"{model}'s chat template takes tools, but tfx cannot read its tool calls (its tokenizer has no response_template and the template writes no <tool_call>): use a model with one", "tools", "unsupported_tools")
