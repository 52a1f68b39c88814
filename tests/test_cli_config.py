"""Aliases, per-task default models and shell completion (issue 21, items 2 and 6): `tfx alias`, `tfx config`,
TFX_CONFIG, an alias used by `tfx generate -m` on the tiny GPT-2 (the reference: the same run by the real id),
a default model used without -m, a broken config as one line; Typer's completion script and the model-name
completer, through Typer's own protocol (_TFX_COMPLETE=complete_bash COMP_WORDS=... COMP_CWORD=...)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

GPT2, CHAT = "tfx-test/tiny-gpt2", "tfx-test/tiny-chat"


@pytest.fixture
def env(tfx_env, tmp_path) -> dict[str, str]:
    return {**tfx_env, "TFX_CONFIG": str(tmp_path / "elsewhere" / "tfx.toml"), "XDG_STATE_HOME": str(tmp_path / "state")}


def test_alias_set_ls_rm_round_trip_in_the_tfx_config_file(env):
    assert tfx("alias", "set", "story", GPT2, env=env).code == 0
    assert tfx("alias", "set", "chatty", CHAT, env=env).code == 0
    listed = tfx("alias", "ls", "--format", "json", env=env)
    assert listed.code == 0 and __import__("json").loads(listed.out) == {"story": GPT2, "chatty": CHAT}
    with open(env["TFX_CONFIG"], "rb") as f:  # TFX_CONFIG is where it lives, as TOML
        assert tomllib.load(f) == {"aliases": {"story": GPT2, "chatty": CHAT}}
    assert tfx("alias", "rm", "story", env=env).code == 0
    assert "story" not in tfx("alias", "ls", env=env).out and "chatty" in tfx("alias", "ls", env=env).out
    assert_clean_error(tfx("alias", "rm", "story", env=env), 1, "no alias story")
    assert_clean_error(tfx("alias", "set", "gpt2", GPT2, env=env), 2, "gpt2 is a model tfx knows")
    assert_clean_error(tfx("alias", "set", "a/b", GPT2, env=env), 2, "cannot be an alias")
    other = {**env, "TFX_CONFIG": env["TFX_CONFIG"] + ".other"}
    assert tfx("alias", "ls", "--format", "json", env=other).out.strip() == "{}"


def test_config_set_get_ls_rm_and_its_path(env, tmp_path):
    assert tfx("config", "set", "generate.model", "distilgpt2", env=env).code == 0
    got = tfx("config", "get", "generate.model", env=env)
    assert (got.code, got.out) == (0, "distilgpt2\n")
    assert "generate.model" in tfx("config", "ls", env=env).out
    assert_clean_error(tfx("config", "set", "poetry.model", "x", env=env), 2, "unknown config key 'poetry.model'")
    assert tfx("config", "rm", "generate.model", env=env).code == 0
    assert tfx("config", "get", "generate.model", env=env).code == 1
    xdg = {k: v for k, v in env.items() if k != "TFX_CONFIG"} | {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert tfx("config", "path", env=xdg).out.strip() == str(tmp_path / "xdg" / "tfx" / "config.toml")


def test_an_alias_and_a_default_model_run_what_they_name(env):
    real = tfx("generate", "-m", GPT2, tm.GPT2_PROMPT, env=env)
    chat = tfx("generate", "-m", CHAT, tm.GPT2_PROMPT, env=env)
    assert real.code == chat.code == 0 and real.out != chat.out  # two models that answer differently
    tfx("alias", "set", "story", GPT2, env=env)
    tfx("alias", "set", "chatty", CHAT, env=env)
    assert tfx("generate", "-m", "story", tm.GPT2_PROMPT, env=env).out == real.out
    tfx("config", "set", "generate.model", "chatty", env=env)  # a default may itself be an alias
    assert tfx("generate", tm.GPT2_PROMPT, env=env).out == chat.out
    assert tfx("generate", "-m", GPT2, tm.GPT2_PROMPT, env=env).out == real.out  # -m still wins
    tfx("config", "set", "generate.model", "tfx-test/not-cached", env=env)
    assert_clean_error(tfx("generate", "Hello", env=env), 1, "tfx-test/not-cached")


def test_a_broken_config_is_one_line_naming_the_file(env):
    os.makedirs(os.path.dirname(env["TFX_CONFIG"]), exist_ok=True)
    with open(env["TFX_CONFIG"], "w") as f:
        f.write("[aliases\nstory = 1\n")
    for args in (["generate", "-m", "story", "Hello"], ["alias", "ls"], ["config", "get", "generate.model"]):
        assert_clean_error(tfx(*args, env=env), 1, env["TFX_CONFIG"], "is broken")


def test_resolution_in_process(tmp_path, monkeypatch):
    from tfx import spec, userconfig
    from tfx.errors import TfxError

    monkeypatch.setenv("TFX_CONFIG", str(tmp_path / "c.toml"))
    userconfig.set_value("aliases.a", "b")
    userconfig.set_value("aliases.b", 'owner/odd "quoted" \\ näme')
    userconfig.set_value("classify.model", "my/sentiment")
    assert userconfig.resolve("a") == 'owner/odd "quoted" \\ näme' and userconfig.resolve("gpt2") == "gpt2"
    assert userconfig.default_for("classify") == "my/sentiment" and userconfig.default_for("ner") is None
    assert spec.build("classify", spec.ClassifySettings()).model == "my/sentiment"
    assert spec.build("classify", spec.ClassifySettings(labels=("x", "y"))).model == "facebook/bart-large-mnli"  # a variant keeps its own
    userconfig.set_value("aliases.b", "a")
    with pytest.raises(TfxError, match="loops"):
        userconfig.resolve("a")


# ---- shell completion -----------------------------------------------------------------------------------


def complete(env: dict[str, str], line: str) -> list[str]:
    """What bash gets on Tab, through Typer's protocol (what the installed script runs)."""
    words = line.split(" ")
    proc = subprocess.run([sys.executable, "-m", "tfx"], env={**env, "_TFX_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_the_completion_script_for_bash_and_zsh(env):
    given = {**env, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}  # the shell given, not detected
    bash = tfx("--show-completion", "bash", env=given)
    assert bash.code == 0 and "_TFX_COMPLETE=complete_bash" in bash.out and "complete -o default -F _tfx_completion tfx" in bash.out
    zsh = tfx("--show-completion", "zsh", env=given)
    assert zsh.code == 0 and "compdef _tfx_completion tfx" in zsh.out


def test_model_names_complete_from_the_cache_aliases_and_catalogue(env, hub_cache, monkeypatch):
    from tfx import hub
    from tfx.cli.completion import complete_model

    cached = {m.repo_id for m in hub.cached_models()}  # huggingface_hub's own scan of the cache
    assert CHAT in cached
    names = [name for name, _ in complete_model("")]
    assert cached <= set(names) and "gpt2-xl" in names
    assert [n for n, _ in complete_model("tfx-test/tiny-c")] == sorted(i for i in cached if i.startswith("tfx-test/tiny-c"))
    tfx("alias", "set", "story", GPT2, env=env)
    assert complete(env, "tfx generate -m tfx-test/tiny-ch") == sorted(i for i in cached if i.startswith("tfx-test/tiny-ch"))
    assert complete(env, "tfx generate -m tfx-test/tiny-chat-t") == [f"{CHAT}-tools"]  # the shell gets the one match
    assert complete(env, "tfx chat -m sto") == ["story"]
    assert complete(env, "tfx pull --task cl") == ["classify"]
    assert complete(env, "tfx alias rm s") == ["story"]
