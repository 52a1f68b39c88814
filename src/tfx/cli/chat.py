"""`tfx chat -m MODEL`: a conversation with a chat model, rendered by its chat template (tfx.tasks.chat).
On a terminal: a prompt on stderr, the reply streamed to stdout, the history kept for the session, `/reset`
clears it, `/exit` or Ctrl-D ends. Piped: each line of stdin is the next user turn of one conversation and
each reply is one line on stdout. Nothing heavy is imported until the command runs."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from tfx.cli import options as o
from tfx.cli.common import execute, setup

CHAT_EXAMPLES = """Examples:

  tfx chat -m HuggingFaceTB/SmolLM2-135M-Instruct

  tfx chat -m Qwen/Qwen2.5-0.5B-Instruct --system "Answer in one sentence."

  printf 'Hello!\\nWhat did I just say?\\n' | tfx chat -m HuggingFaceTB/SmolLM2-135M-Instruct
"""
PROMPT = ">>> "
EXIT, RESET = "/exit", "/reset"


def register(app: typer.Typer) -> None:
    app.command("chat", epilog=CHAT_EXAMPLES)(chat)


def chat(
    model: o.Model = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="A system message the conversation starts with.", show_default=False)] = None,
    max_new_tokens: o.MaxNewTokens = None,
    do_sample: Annotated[Optional[bool], typer.Option("--do-sample/--greedy", help="Sample instead of the model's default decoding.", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature (> 0).", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample from the k most likely tokens.", show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling mass, in (0, 1].", show_default=False)] = None,
    repetition_penalty: Annotated[Optional[float], typer.Option(help="Penalty for repeated tokens (1.0: none).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed, for reproducible sampling.", show_default=False)] = None,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    revision: o.Revision = None,
    offline: o.Offline = False,
    trust_remote_code: o.TrustRemoteCode = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Talk with a chat model (one whose tokenizer has a chat template): history kept for the session, /reset clears it, /exit or Ctrl-D ends."""

    def body() -> int:
        setup(offline, quiet, verbose)
        from tfx import spec
        from tfx.errors import UsageError

        if not model:
            raise UsageError("tfx chat needs a chat model.", "Name one with -m, e.g. tfx chat -m HuggingFaceTB/SmolLM2-135M-Instruct.")
        settings = spec.GenerateSettings(
            max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
            repetition_penalty=repetition_penalty, seed=seed, continuation_only=True,
        )  # fmt: skip
        run = spec.build("generate", settings, model=model, revision=revision, device=device, dtype=dtype, trust_remote_code=trust_remote_code, quiet=quiet, verbose=verbose)
        session = Session.open(run, system)
        return session.terminal() if sys.stdin.isatty() else session.piped()

    execute(body)


class Session:
    """One conversation: the system message, the turns so far, and the task that writes the replies."""

    def __init__(self, task: Any, template_tokenizer: Any, system: str | None):
        from tfx.tasks import generate
        from tfx.tasks.base import context_length

        self.task, self.template_tokenizer, self.system = task, template_tokenizer, system
        self.history: list[dict[str, str]] = []
        context = None if task.seq2seq else context_length(task.loaded.config)
        new = generate.length_kwargs(task.settings, task.loaded.generation_defaults).get("max_new_tokens", 1)
        self.limit = None if context is None else max(context - new, 1)  # prompt tokens that leave room for the reply

    @classmethod
    def open(cls, run, system: str | None) -> Session:
        """Check for a chat template with the tokenizer alone, before any weights are read; then load."""
        from tfx import loading
        from tfx.tasks import chat, open_task

        prepared = loading.prepare(run.model, run.task, run.settings, run.revision)
        template_tokenizer = loading.load_tokenizer(prepared, run.trust_remote_code, run.verbose)
        chat.check_template(template_tokenizer, prepared.name)
        return cls(open_task(run, prepared=prepared), template_tokenizer, system)

    def messages(self, text: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history + [{"role": "user", "content": text}]

    def prompt(self, text: str) -> str:
        """The conversation with this turn, rendered; the oldest turns are dropped while it does not fit."""
        import logging

        from tfx.tasks import chat

        while True:
            prompt = chat.render(self.template_tokenizer, self.messages(text), self.task.loaded.name, self.task.tokenizer)
            if self.limit is None or not self.history or len(self.task.tokenizer(prompt)["input_ids"]) <= self.limit:
                return prompt
            del self.history[:2]  # a user turn and its reply
            logging.getLogger("tfx").warning("the conversation is past the model's context: its oldest turn is dropped")

    def remember(self, text: str, reply: str) -> None:
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]

    def piped(self) -> int:
        """Each line a user turn, each reply one line (newlines inside it written as \\n)."""
        from tfx.io import escape_line

        for raw in sys.stdin.buffer:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            command = text.strip()
            if command == EXIT:
                break
            if command == RESET:
                self.history.clear()
                continue
            if not command:
                continue
            reply = self.task.run([self.prompt(text)])[0].output
            sys.stdout.write(escape_line(reply) + "\n")
            sys.stdout.flush()
            self.remember(text, reply)
        return 0

    def terminal(self) -> int:
        from tfx.results import TextChunk

        err = sys.stderr
        err.write(f"tfx: chatting with {self.task.loaded.name}. {RESET} clears the history; {EXIT} or Ctrl-D ends.\n")
        while True:
            err.write(PROMPT)
            err.flush()
            raw = sys.stdin.buffer.readline()
            if not raw:  # Ctrl-D
                err.write("\n")
                return 0
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            command = text.strip()
            if command == EXIT:
                return 0
            if command == RESET:
                self.history.clear()
                err.write("tfx: history cleared.\n")
                continue
            if not command:
                continue
            reply, shown, pieces = None, False, self.task.stream(self.prompt(text))
            try:
                for item in pieces:
                    if isinstance(item, TextChunk):
                        sys.stdout.write(item.text)
                        sys.stdout.flush()
                        shown = True
                    else:
                        reply = item.output
                        if not shown:  # settings that do not stream (beam search): the reply comes whole
                            sys.stdout.write(reply)
            except KeyboardInterrupt:  # Ctrl-C stops this reply, not the session
                err.write("\ntfx: reply stopped; it is not kept in the history.\n")
                continue
            finally:
                pieces.close()
            sys.stdout.write("\n")
            sys.stdout.flush()
            if reply is not None:
                self.remember(text, reply)
