"""`tfx chat`'s session: the REPL on a terminal and the line-per-turn loop on a pipe, and the /commands both
share (a command is never sent to the model).

Line editing and history come from prompt_toolkit, not the standard readline module: `input()` uses
readline only while stdout is a terminal too, and tfx chat writes its replies to stdout, which people
redirect (`tfx chat > log`); prompt_toolkit draws the prompt on stderr and edits there. It also behaves the
same on Linux, macOS (whose Python links libedit) and Windows (no readline at all), and its FileHistory
keeps the history file (under the tfx state directory, readable by the user only) across sessions."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

PROMPT, MORE = ">>> ", "... "
FENCE = '"""'
HISTORY = "chat-history"
# What /set may change: the generation settings a chat turn uses (the settings schema's names).
SETTABLE = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram_size", "num_beams", "seed")
SAMPLING_ONLY = ("temperature", "top_k", "top_p")
HELP = f"""Commands (never sent to the model):
  /set                  show the model and the settings
  /set KEY VALUE        change a setting: {', '.join(SETTABLE)}; /set system TEXT
  /unset KEY            back to the model's default
  /save FILE            write the conversation to FILE as JSON (OpenAI's messages)
  /reset                forget the conversation so far (also /clear)
  /help, /?             this help
  /bye, /exit           end the chat (Ctrl-D too)
{FENCE} starts a message of several lines, {FENCE} ends it. Up/Down: earlier inputs; Ctrl-C stops a reply."""


class Session:
    """One chat: a backend (cli.chat.LocalChat or RemoteChat), the conversation, and where it is kept."""

    def __init__(self, backend: Any, conversation: Any, keep: Path):
        self.backend, self.conversation, self.keep = backend, conversation, keep
        self.done = False

    # ---- commands ----------------------------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run line if it is a /command (True); False for a message."""
        if not line.startswith("/"):
            return False
        name, _, rest = line.partition(" ")
        name, rest = name.lower(), rest.strip()
        if name in ("/bye", "/exit"):
            self.done = True
        elif name in ("/help", "/?"):
            note(HELP)
        elif name in ("/reset", "/clear"):
            self.conversation.turns.clear()
            self.save()
            note("history cleared.")
        elif name == "/set":
            self.set(rest)
        elif name == "/unset":
            self.set(rest, unset=True)
        elif name == "/save":
            self.save_as(rest)
        else:
            note(f"unknown command {name}: /help lists them.")
        return True

    def set(self, rest: str, unset: bool = False) -> None:
        if not rest:
            return self.show() if not unset else note("/unset KEY: " + ", ".join(SETTABLE) + ", system.")
        key, _, value = rest.partition(" ")
        key, value = key.replace("-", "_").lower(), value.strip()
        if key == "system":
            self.conversation.system = None if unset else (value or None)
            self.save()
            return note("system message " + ("set." if self.conversation.system else "cleared."))
        if key not in SETTABLE:
            return note(f"/set {key}: not a setting here. Use one of: {', '.join(SETTABLE)}, system.")
        if not unset and not value:
            return note(f"/set {key} needs a value, e.g. /set {key} {example(key)}.")
        from tfx.errors import UsageError

        try:
            parsed = None if unset else parse(self.backend.settings, key, value)
            settings = dataclasses.replace(self.backend.settings, **{key: parsed})
            settings.validate(self.backend.defaults())
        except UsageError as exc:
            return note(f"/set {key}: {setting_message(exc)}")
        self.backend.use(settings)
        note(f"{key} " + ("unset." if unset else f"= {parsed}."))
        if not unset and key in SAMPLING_ONLY and not self.backend.remote and not settings.sampling(self.backend.defaults()):
            note(f"{key} applies when sampling: /set do_sample true.")

    def show(self) -> None:
        settings = self.backend.settings
        chosen = {k: getattr(settings, k) for k in SETTABLE if getattr(settings, k) is not None}
        where = f" on {self.backend.client.server.url}" if self.backend.remote else ""
        lines = [f"model: {self.backend.name}{where}", f"system: {self.conversation.system or '(none)'}"]
        lines.append("settings: " + (", ".join(f"{k} = {v}" for k, v in chosen.items()) or "the model's defaults"))
        lines.append(f"turns so far: {len(self.conversation.turns) // 2}")
        note("\n".join(lines))

    def save_as(self, name: str) -> None:
        if not name:
            return note("/save needs a file name, e.g. /save chat.json.")
        path = Path(name).expanduser()
        try:
            self.conversation.save(path)
        except OSError as exc:
            return note(f"/save {name}: {exc.strerror or type(exc).__name__}.")
        note(f"saved {len(self.conversation.turns) // 2} turns to {path}.")

    def save(self) -> None:
        """The conversation is kept after every turn, for `tfx chat -c`; a read-only state dir only warns."""
        try:
            self.conversation.save(self.keep)
        except OSError as exc:
            import logging

            logging.getLogger("tfx").warning("the conversation cannot be kept in %s: %s", self.keep, exc.strerror or exc)

    # ---- a pipe: one turn per line ---------------------------------------------------------------------------

    def piped(self) -> int:
        """Each line a user turn, each reply one line (newlines inside it written as \\n)."""
        from tfx.io import escape_line

        for raw in sys.stdin.buffer:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not text.strip() or self.command(text.strip()):
                if self.done:
                    break
                continue
            reply = self.backend.reply(self.conversation, text)
            sys.stdout.write(escape_line(reply) + "\n")
            sys.stdout.flush()
            self.conversation.remember(text, reply)
            self.save()
        return 0

    # ---- a terminal: the REPL ------------------------------------------------------------------------------

    def terminal(self) -> int:
        from tfx import explain

        reader = Reader(self.keep.parent / HISTORY)
        turns = len(self.conversation.turns) // 2
        going_on = f" (going on after {turns} turns)" if turns else ""
        note(f"chatting with {self.backend.name}{going_on}. /help for the commands, /bye or Ctrl-D to end.")
        while not self.done:
            text = reader.message()
            if text is None:  # Ctrl-D
                return 0
            if not text.strip() or (not reader.fenced and self.command(text.strip())):
                continue
            try:
                self.turn(text)
            except Exception as exc:  # noqa: BLE001 - a bad turn (the server refused it, or went away) is one line; the chat goes on
                error = explain.explain(exc)
                if error is None:
                    raise
                note(f"error: {error}", prefix="tfx: ")
        return 0

    def turn(self, text: str) -> None:
        pieces, reply = self.backend.stream(self.conversation, text), None
        try:
            while True:
                try:
                    piece = next(pieces)
                except StopIteration as stop:
                    reply = stop.value
                    break
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:  # Ctrl-C stops this reply, not the session
            note("\nreply stopped; it is not kept in the history.")
            return
        finally:
            pieces.close()
        sys.stdout.write("\n")
        sys.stdout.flush()
        if reply is not None:
            self.conversation.remember(text, reply)
            self.save()


class Reader:
    """prompt_toolkit's line editor on the terminal, its prompt on stderr; the history in a file."""

    def __init__(self, history: Path):
        import os

        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.output import create_output

        try:
            history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(history, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # private before the first line
            kept: Any = FileHistory(str(history))
        except OSError:
            kept = InMemoryHistory()
        self.session = PromptSession(history=kept, output=create_output(stdout=sys.stderr))
        self.fenced = False

    def line(self, prompt: str) -> str | None:
        """One line; None at Ctrl-D; Ctrl-C clears the line and asks again."""
        while True:
            try:
                return self.session.prompt(prompt)
            except EOFError:
                return None
            except KeyboardInterrupt:
                note("(Ctrl-D or /bye ends the chat)")

    def message(self) -> str | None:
        """A line, or several between \"\"\" fences (as ollama reads them)."""
        first = self.line(PROMPT)
        self.fenced = first is not None and first.lstrip().startswith(FENCE)
        if not self.fenced:
            return first
        body = first.lstrip()[len(FENCE) :]
        lines = []
        while not body.rstrip().endswith(FENCE):
            lines.append(body)
            body = self.line(MORE)
            if body is None:
                return None
        lines.append(body.rstrip()[: -len(FENCE)])
        return "\n".join(lines).strip("\n")


def parse(settings: Any, key: str, value: str) -> Any:
    """A /set value as the setting's type (int, float or bool, from the settings dataclass)."""
    from tfx.errors import UsageError

    kind = typing.get_type_hints(type(settings))[key]
    kinds = [k for k in typing.get_args(kind) if k is not type(None)] if isinstance(kind, types.UnionType) else [kind]
    word = value.lower()
    if bool in kinds:
        if word in ("true", "on", "yes", "1"):
            return True
        if word in ("false", "off", "no", "0"):
            return False
        raise UsageError(f"'{value}' is not true or false.")
    for cast in (int, float):
        if cast in kinds:
            try:
                return cast(value)
            except ValueError:
                raise UsageError(f"'{value}' is not {'a whole number' if cast is int else 'a number'}.") from None
    return value


def setting_message(exc: Exception) -> str:
    """A settings error in /set's words: the field names, not the CLI's --flags, where the schema says them."""
    render = getattr(exc, "render", None)
    if render is not None:
        message, hint = render(lambda name: name)
    else:
        message, hint = getattr(exc, "message", str(exc)), getattr(exc, "hint", None)
    return f"{message} {hint}".strip() if hint else str(message)


def example(key: str) -> str:
    return {"temperature": "0.7", "top_p": "0.9", "do_sample": "true", "repetition_penalty": "1.2"}.get(key, "4")


def note(text: str, prefix: str = "") -> None:
    sys.stderr.write(prefix + text + "\n")
    sys.stderr.flush()

