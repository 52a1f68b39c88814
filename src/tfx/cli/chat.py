"""`tfx chat -m MODEL`: a conversation with a chat model, rendered by its chat template (tfx.tasks.chat), or
with a running `tfx serve` (--server URL: its /v1/chat/completions, streamed). On a terminal it is a REPL
(cli/repl.py: line editing, history, /commands); piped, each line of stdin is the next user turn and each
reply one line of stdout. Every conversation is kept under the tfx state directory after each turn, so
`tfx chat -c` goes on with the last one. Nothing heavy is imported until the command runs."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tfx.cli import completion, options as o
from tfx.cli.common import execute, setup
from tfx.cli.derive import setting_parameters, with_settings
from tfx.settings import GenerateSettings

CHAT_EXAMPLES = """Examples:

  tfx chat -m HuggingFaceTB/SmolLM2-135M-Instruct

  tfx chat -m Qwen/Qwen2.5-0.5B-Instruct --system "Answer in one sentence."

  tfx chat -c                                  # go on with the last conversation

  tfx chat --server http://127.0.0.1:8000 -m HuggingFaceTB/SmolLM2-135M-Instruct

  printf 'Hello!\\nWhat did I just say?\\n' | tfx chat -m HuggingFaceTB/SmolLM2-135M-Instruct

In the chat: /help lists the commands (/set temperature 0.7, /save FILE, /reset, /bye); \"\"\" starts and
ends a message of several lines; Up and Down walk the history of what you typed.
"""
LAST = "last-chat.json"


def register(app: typer.Typer) -> None:
    app.command("chat", epilog=CHAT_EXAMPLES)(chat)


# The generation settings a chat takes (from the settings schema, declared once there).
CHAT_SETTINGS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram_size", "seed")


@with_settings(setting_parameters(GenerateSettings, only=CHAT_SETTINGS))
def chat(
    model: o.Model = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="A system message the conversation starts with.", show_default=False)] = None,
    continue_last: Annotated[bool, typer.Option("--continue", "-c", help="Go on with the last conversation (its model, unless -m names another).")] = False,
    server: Annotated[Optional[str], typer.Option("--server", help="Chat with a running `tfx serve` at this URL (its /v1/chat/completions).", show_default=False)] = None,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    revision: o.Revision = None,
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    given: dict = None,  # type: ignore[assignment]
) -> None:
    """Talk with a chat model (one whose tokenizer has a chat template): line editing and history on a terminal, /help for the commands, -c goes on with the last conversation."""

    def body() -> int:
        setup(offline, quiet, verbose)
        from tfx import spec, userconfig
        from tfx.cli import repl
        from tfx.errors import UsageError

        earlier = Conversation.load(last_path()) if continue_last else None
        name = model or (earlier.model if earlier else None) or userconfig.default_for(completion.CHAT)
        settings = spec.GenerateSettings.from_params({**given, "continuation_only": True})
        if server:
            backend: Any = RemoteChat.open(server, userconfig.resolve(name) if name else None, settings)
        else:
            if not name:
                raise UsageError("tfx chat needs a chat model.", "Name one with -m (e.g. tfx chat -m HuggingFaceTB/SmolLM2-135M-Instruct), or set one: tfx config set chat.model NAME.")
            run = spec.build("generate", settings, model=name, revision=revision, device=device, dtype=dtype, trust_remote_code=trust_remote_code, quiet=quiet, verbose=verbose)
            backend = LocalChat.open(run)
        conversation = Conversation(backend.name, system if system is not None else (earlier.system if earlier else None), list(earlier.turns) if earlier else [])
        session = repl.Session(backend, conversation, last_path())
        return session.terminal() if sys.stdin.isatty() else session.piped()

    execute(body)


def last_path() -> Path:
    from tfx import userconfig

    return userconfig.state_dir() / LAST


class Conversation:
    """The system message and the turns so far; saved as OpenAI's messages (system first), with the model."""

    def __init__(self, model: str, system: str | None, turns: list[dict[str, str]]):
        self.model, self.system, self.turns = model, system, turns

    def messages(self, text: str | None = None) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns + ([{"role": "user", "content": text}] if text is not None else [])

    def remember(self, text: str, reply: str) -> None:
        self.turns += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]

    def save(self, path: Path) -> None:
        """Atomically, readable by the user only (a conversation is private)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"model": self.model, "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "messages": self.messages()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=2)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Conversation:
        from tfx.errors import TfxError, UsageError

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError("there is no earlier conversation to continue.", "Start one: tfx chat -m MODEL.") from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise TfxError(f"the last conversation ({path}) cannot be read: {type(exc).__name__}.", "Remove it and start a new one.") from None
        messages = data.get("messages") if isinstance(data, dict) else None
        good = isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant") for m in messages)
        if not good or not isinstance(data.get("model"), str):
            raise TfxError(f"the last conversation ({path}) is not one tfx wrote.", "Remove it and start a new one.")
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        return cls(data["model"], system, turns)


class LocalChat:
    """The model in this process: the generate task, its prompt the chat template's rendering."""

    remote = False

    def __init__(self, task: Any, template_tokenizer: Any):
        self.task, self.template_tokenizer = task, template_tokenizer
        self.name = task.loaded.name

    @classmethod
    def open(cls, run) -> LocalChat:
        """Check for a chat template with the tokenizer alone, before any weights are read; then load."""
        from tfx import loading
        from tfx.tasks import chat, open_task

        prepared = loading.prepare(run.model, run.task, run.settings, run.revision)
        template_tokenizer = loading.load_tokenizer(prepared, run.trust_remote_code, run.verbose)
        chat.check_template(template_tokenizer, prepared.name)
        return cls(open_task(run, prepared=prepared), template_tokenizer)

    @property
    def settings(self):
        return self.task.settings

    def defaults(self) -> dict[str, Any]:
        return self.task.loaded.generation_defaults

    def use(self, settings) -> None:
        """New settings (checked by the caller) on the same loaded model."""
        from tfx.tasks import make_task

        self.task = make_task("generate", self.task.loaded, settings)

    def limit(self) -> int | None:
        from tfx.tasks import generate
        from tfx.tasks.base import context_length

        context = None if self.task.seq2seq else context_length(self.task.loaded.config)
        new = generate.length_kwargs(self.task.settings, self.task.loaded.generation_defaults).get("max_new_tokens", 1)
        return None if context is None else max(context - new, 1)  # prompt tokens that leave room for the reply

    def prompt(self, conversation: Conversation, text: str) -> str:
        """The conversation with this turn, rendered; the oldest turns are dropped while it does not fit."""
        import logging

        from tfx.tasks import chat

        limit = self.limit()
        while True:
            prompt = chat.render(self.template_tokenizer, conversation.messages(text), self.name, self.task.tokenizer)
            if limit is None or not conversation.turns or len(self.task.tokenizer(prompt)["input_ids"]) <= limit:
                return prompt
            del conversation.turns[:2]  # a user turn and its reply
            logging.getLogger("tfx").warning("the conversation is past the model's context: its oldest turn is dropped")

    def reply(self, conversation: Conversation, text: str) -> str:
        return self.task.run([self.prompt(conversation, text)])[0].output

    def stream(self, conversation: Conversation, text: str) -> Iterator[str]:
        """The reply's pieces as they come; the generator's return value is the whole reply."""
        from tfx.results import TextChunk

        pieces, shown = self.task.stream(self.prompt(conversation, text)), False
        try:
            for item in pieces:
                if isinstance(item, TextChunk):
                    shown = True
                    yield item.text
                else:
                    if not shown:  # settings that do not stream (beam search): the reply comes whole
                        yield item.output
                    return item.output
        finally:
            pieces.close()
        return None


class RemoteChat:
    """A `tfx serve`'s /v1/chat/completions (engines/remote.py's chat client): the template is the server's."""

    remote = True

    def __init__(self, client: Any, name: str, settings):
        self.client, self.name, self.settings = client, name, settings

    @classmethod
    def open(cls, url: str, name: str | None, settings) -> RemoteChat:
        from tfx.engines import remote

        settings.validate()
        client = remote.ChatClient(url)
        return cls(client, name or client.only_model(), settings)

    def defaults(self) -> dict[str, Any]:
        return {}

    def use(self, settings) -> None:
        self.settings = settings

    def reply(self, conversation: Conversation, text: str) -> str:
        return "".join(self.client.stream(self.name, conversation.messages(text), self.settings))

    def stream(self, conversation: Conversation, text: str) -> Iterator[str]:
        parts = []
        for piece in self.client.stream(self.name, conversation.messages(text), self.settings):
            parts.append(piece)
            yield piece
        return "".join(parts)
