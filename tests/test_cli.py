"""The CLI's shape: fast help that imports nothing heavy, versions, local model directories, unknown models."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, read_pty, tfx

COMMANDS = ["generate", "fill-mask", "translate", "summarize"]


def test_importing_the_cli_loads_neither_torch_nor_transformers():
    code = "import sys, tfx.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_imports_nothing_heavy(command):
    code = (
        "import sys\n"
        "from tfx.cli import app\n"
        f"try:\n    app({[*command, '--help']!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    assert "Usage" in out.stdout


def test_help_shows_examples_and_how_text_output_handles_newlines():
    out = subprocess.run([sys.executable, "-m", "tfx", "generate", "--help"], capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
    assert out.returncode == 0
    assert 'tfx generate "Once upon a time"' in out.stdout
    assert "newlines inside an output are written as \\n" in out.stdout


def test_version():
    out = subprocess.run([sys.executable, "-m", "tfx", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("tfx ")


def test_local_directory_model_reads_its_family_from_config(tfx_env, hub_cache):
    snapshot = next((hub_cache / "models--tfx-test--tiny-gpt2" / "snapshots").iterdir())
    r = tfx("generate", "-m", str(snapshot), tm.GPT2_PROMPT, env=tfx_env)
    assert r.code == 0, r.err
    assert r.out == tm.GPT2_TEXT + "\n"
    wrong = tfx("fill-mask", "-m", str(snapshot), "a [MASK]", env=tfx_env)
    assert_clean_error(wrong, 1, "decoder-only")


def test_unknown_model_offline_fails_in_seconds_with_close_names(tfx_env):
    start = time.monotonic()
    r = tfx("generate", "-m", "gpt-2", "Hello", env=tfx_env)
    assert time.monotonic() - start < 10
    assert_clean_error(r, 1, "gpt-2 is not in the local cache", "tfx pull")


def test_offline_flag_sets_offline_mode(tfx_env):
    env = {k: v for k, v in tfx_env.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there; --offline must not even try
    start = time.monotonic()
    r = tfx("generate", "--offline", "-m", "no-such-org/no-such-model", "Hello", env=env)
    assert time.monotonic() - start < 10
    assert_clean_error(r, 1, "offline mode is on")
    cached = tfx("generate", "--offline", "-m", "tfx-test/tiny-gpt2", tm.GPT2_PROMPT, env=env)
    assert cached.out == tm.GPT2_TEXT + "\n"


def test_no_input_on_a_terminal_is_a_usage_error(tfx_env):
    master, slave = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "tfx", "generate", "-m", "tfx-test/tiny-gpt2"], stdin=slave, capture_output=True, env=tfx_env, timeout=60)
    os.close(slave)
    os.close(master)
    assert proc.returncode == 2
    assert b"no input" in proc.stderr and b"Traceback" not in proc.stderr


def test_unexpected_errors_are_one_line_unless_debug(tfx_env, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    r = tfx("generate", "-m", str(broken), "Hello", env=tfx_env)
    assert r.code == 1 and "Traceback" not in r.err
    assert len([line for line in r.err.splitlines() if line.strip()]) == 1
    debug = tfx("generate", "-m", str(broken), "Hello", env=dict(tfx_env, TFX_DEBUG="1"))
    assert "Traceback" in debug.err


def test_verbose_shows_library_logs_on_stderr_only(tfx_env):
    quiet = tfx("generate", "-m", "tfx-test/tiny-gpt2", tm.GPT2_PROMPT, env=tfx_env)
    loud = tfx("generate", "-v", "-m", "tfx-test/tiny-gpt2", tm.GPT2_PROMPT, env=tfx_env)
    assert quiet.err == ""
    assert loud.out == quiet.out == tm.GPT2_TEXT + "\n"
    assert loud.err != ""


def _pty_stdout(args: list[str], env: dict) -> bytes:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tfx", *args], env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    data = b"".join(read_pty(master))
    proc.wait()
    os.close(master)
    return data


def test_top_k_is_a_table_on_a_terminal_without_escape_codes(tfx_env):
    out = _pty_stdout(["fill-mask", "-m", "tfx-test/tiny-bert", "--top-k", "3", "Paris is the [MASK] of France."], dict(tfx_env, TERM="xterm", COLUMNS="100"))
    text = out.decode()
    assert "rank" in text and "score" in text and "capital" in text
    assert b"\x1b" not in out
