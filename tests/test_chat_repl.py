"""`tfx chat` as a REPL (issue 21, item 5) on tfx-test/tiny-chat: line editing and history through a real
pseudo-terminal (the Up arrow recalls the last input), the /commands (never sent to the model), \"\"\"
multi-line input, /set validated by the settings, /save, -c going on with the last conversation, and
--server through a `tfx serve`'s /v1/chat/completions. References: the piped chat of test_chat.py
(checked there against transformers itself) and the same conversation run locally."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from clihelp import tfx
from test_serve import KEY, Server
from tiny_chat import CHAT_CASES

CHAT = "tfx-test/tiny-chat"
NEW = ("--max-new-tokens", "12")  # room for three short turns in the model's 96 positions
(HELLO, _), (CAPITAL, _), (STORY, _) = CHAT_CASES


@pytest.fixture
def env(tfx_env, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in tfx_env.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), TFX_CONFIG=str(tmp_path / "config.toml"), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    return env


def last_conversation(env) -> dict:
    with open(os.path.join(env["XDG_STATE_HOME"], "tfx", "last-chat.json"), encoding="utf-8") as f:
        return json.load(f)


def users(conversation: dict) -> list[str]:
    return [m["content"] for m in conversation["messages"] if m["role"] == "user"]


class Terminal:
    """`tfx chat` with stdin and stderr on a pseudo-terminal (where the prompt and the editing are) and
    stdout on a pipe (the replies). Keys are typed only once the line editor has drawn its prompt, as a
    person would: typed earlier, the terminal itself would echo them."""

    UP = b"\x1b[A"
    PROMPT_STARTS = b"\x1b[?2004h"  # prompt_toolkit turns bracketed paste on at each prompt it draws

    def __init__(self, args: list[str], env: dict[str, str]):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "tfx", "chat", *args], stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=env)
        os.close(slave)
        self.shown, self.out, self.prompts = b"", b"", 0

    def wait(self, condition, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master, self.proc.stdout], [], [], 0.5)
            for source in ready:
                try:
                    data = os.read(self.master if source == self.master else source.fileno(), 4096)
                except OSError:
                    data = b""
                if source == self.master:
                    self.shown += data
                else:
                    self.out += data
        assert condition(), (self.shown[-800:], self.out)

    def type(self, keys: bytes) -> None:
        """Keys for the next prompt (waits for it to be drawn)."""
        self.wait(lambda: self.shown.count(self.PROMPT_STARTS) > self.prompts)
        self.prompts = self.shown.count(self.PROMPT_STARTS)
        os.write(self.master, keys)

    def more(self, keys: bytes) -> None:
        """More keys at the same prompt."""
        os.write(self.master, keys)

    def replies(self) -> int:
        return self.out.count(b"\n")

    def say(self, line: bytes, replies: int) -> None:
        self.type(line + b"\r")
        self.wait(lambda: self.replies() == replies)

    def command(self, line: bytes, answer: bytes) -> None:
        seen = self.shown.count(answer)
        self.type(line + b"\r")
        self.wait(lambda: self.shown.count(answer) > seen)

    def close(self) -> int:
        code = self.proc.wait(timeout=60)
        self.proc.stdout.close()
        os.close(self.master)
        return code


def test_terminal_chat_history_keys_commands_and_save(env, tmp_path):
    term = Terminal(["-m", CHAT, *NEW], env)
    try:
        term.say(HELLO.encode(), 1)
        before = term.shown.count(HELLO.encode())
        term.type(Terminal.UP)  # the line editor recalls the last input (not a raw ^[[A sent to the model)
        term.wait(lambda: term.shown.count(HELLO.encode()) > before)
        term.more(b"\r")
        term.wait(lambda: term.replies() == 2)
        term.command(b"/help", b"never sent to the model")
        term.command(b"/set temperature hot", b"is not a number")
        term.command(b"/set top_p 5", b"top_p must be in (0, 1]")  # the settings' own bounds, in /set's words
        term.command(b"/set temperature 0.7", b"temperature = 0.7.")
        term.command(b"/set", b"temperature = 0.7\r\nturns so far: 2")
        saved = tmp_path / "saved.json"
        term.command(b"/save " + str(saved).encode(), b"saved 2 turns")
        term.command(b"/reset", b"history cleared")
        term.type(b'"""' + STORY.encode() + b"\r")  # several lines between fences, one message
        term.say(b'second line"""', 3)
        term.type(b"/bye\r")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    shown = term.shown.decode("utf-8", "replace")
    assert "Traceback" not in shown and "^[[A" not in shown
    assert len(term.out.decode().splitlines()) == 3  # one reply per message: no command reached the model
    assert users(json.loads(saved.read_text())) == [HELLO, HELLO]  # the Up arrow sent the same message again
    assert users(last_conversation(env)) == [f"{STORY}\nsecond line"]  # /reset, then the fenced message
    history = (tmp_path / "state" / "tfx" / "chat-history").read_text()
    assert f"+{HELLO}\n" in history and "+/bye" in history  # kept for the next session
    assert oct((tmp_path / "state" / "tfx" / "chat-history").stat().st_mode & 0o777) == "0o600"


@pytest.fixture(scope="module")
def module_env(hub_cache, tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("chat-repl")
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env["HF_HUB_CACHE"] = str(hub_cache)
    env.update(XDG_STATE_HOME=str(base / "state"), TFX_CONFIG=str(base / "config.toml"))
    return env


@pytest.fixture(scope="module")
def three_turns(module_env) -> list[str]:
    """The piped chat of three turns in one conversation: what -c and --server must reproduce."""
    r = tfx("chat", "-m", CHAT, *NEW, env=module_env, stdin=f"{HELLO}\n{STORY}\n{CAPITAL}\n")
    assert r.code == 0, r.err
    assert len(r.lines) == 3
    return r.lines


def test_continue_goes_on_with_the_last_conversation(env, three_turns):
    first = tfx("chat", "-m", CHAT, *NEW, env=env, stdin=f"{HELLO}\n/help\n{STORY}\n")  # a pipe keeps it too
    assert first.code == 0, first.err
    assert first.lines == three_turns[:2] and "never sent to the model" in first.err
    assert users(last_conversation(env)) == [HELLO, STORY]
    again = tfx("chat", "-c", *NEW, env=env, stdin=f"{CAPITAL}\n")  # no -m: the conversation's model
    assert again.code == 0, again.err
    assert again.lines == three_turns[2:]  # the reply to the third turn with the first two in its prompt
    assert users(last_conversation(env)) == [HELLO, STORY, CAPITAL]


def test_continue_without_a_conversation_is_a_one_line_error(env):
    r = tfx("chat", "-c", env=env, stdin="Hi\n")
    assert r.code == 2 and "no earlier conversation" in r.err and len(r.err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def server(module_env):
    s = Server(["-m", CHAT, "--api-key", KEY], module_env)
    yield s
    s.stop()


def test_chat_through_a_server_streams_the_same_conversation(module_env, server, three_turns):
    remote = {**module_env, "TFX_API_KEY": KEY}
    r = tfx("chat", "--server", server.url, *NEW, env=remote, stdin=f"{HELLO}\n/set\n{STORY}\n{CAPITAL}\n/bye\nnever sent\n")
    assert r.code == 0, r.err
    assert r.lines == three_turns  # the server renders the template; the history travels in each request
    assert f"model: {CHAT} on {server.url}" in r.err  # /set shows where the chat goes; no -m: the server's one model
    unknown = tfx("chat", "--server", server.url, "-m", "tfx-test/tiny-gpt2", env=remote, stdin=f"{HELLO}\n")
    assert unknown.code != 0 and "no chat template" in unknown.err and "Traceback" not in unknown.err
    assert len(unknown.err.strip().splitlines()) == 1
    refused = tfx("chat", "--server", server.url, "-m", CHAT, env=module_env, stdin=f"{HELLO}\n")  # no key
    assert refused.code != 0 and "TFX_API_KEY" in refused.err and "Traceback" not in refused.err
