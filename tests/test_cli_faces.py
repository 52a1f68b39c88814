"""The CLI's faces (issue 21 items 1 and 3) and the one settings schema behind every surface (issue 19 item 1):
grouped help with readable metavars, hints with extras intact, no silent surprises (qa's context, -i's
format, --format json, --to codes, no bar for a few argument inputs), --backend apart from --engine, and
the schema: bounds checked once, messages naming each surface's own names."""

from __future__ import annotations

import json
import pickle
import re

import pytest
from clihelp import assert_clean_error, tfx

SQUAD = "tfx-test/tiny-squad"
BERT = "tfx-test/tiny-bert"
TASKS = ("generate", "fill-mask", "translate", "summarize", "classify", "ner", "qa", "embed", "rank")
PYTHON_TYPES = re.compile(r"<(int|str|float|bool|list\[str\]|NoneType)>")


def help_of(*args: str) -> str:
    from typer.testing import CliRunner

    from tfx.cli.app import app

    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def option_rows(text: str) -> list[str]:
    """The rows of the option panels (the Arguments panel and Typer's own --help row are Typer's own)."""
    rows, panel = [], None
    for line in text.splitlines():
        if line.startswith("╭─"):
            panel = line.strip("╭─╮ ").split(" ─")[0].strip()
            continue
        typers_own = ("--help", "--install-completion", "--show-completion")
        if panel and panel != "Arguments" and line.startswith("│") and not any(o in line for o in typers_own):
            rows.append(line)
    return rows


@pytest.mark.parametrize("task", TASKS)
def test_task_help_is_grouped_with_readable_metavars(task):
    text = help_of(task)
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert panels[:3] == ["Arguments", "Options", "Model"] and panels[-2:] == ["Input and output", "Engine, server and Ray"], panels
    assert "Task settings" in panels or "Generation" in panels
    assert text.index("--model") < text.index("--format") < text.index("--ray-address")
    rows = option_rows(text)
    assert rows and not [r for r in rows if PYTHON_TYPES.search(r)], [r for r in rows if PYTHON_TYPES.search(r)]
    assert "pip install 'tfx-cli[ray]'" in text  # rich markup would have swallowed [ray]
    if task in ("generate", "translate", "summarize"):
        gen = text[text.index("╭─ Generation") :]
        assert "--max-new-tokens" in gen and "INT" in gen and "--do-sample" in gen and "--greedy" in gen


def test_root_help_groups_commands_by_family_in_the_seed_order():
    text = help_of()
    panels = re.findall(r"╭─ (.+?) ─", text)
    families = [p for p in panels if p.endswith("models (understanding)") or "(generation)" in p or "(sequence to sequence)" in p]
    assert families == ["Encoder-only models (understanding)", "Decoder-only models (generation)", "Encoder-decoder models (sequence to sequence)"]
    encoder = text[text.index("Encoder-only models") : text.index("Decoder-only models")]
    for task in ("fill-mask", "classify", "ner", "qa", "embed", "rank"):
        assert task in encoder
    assert "Commands" not in panels, panels  # every command sits in a group
    decoder = text[text.index("Decoder-only models") : text.index("Encoder-decoder models")]
    assert "generate" in decoder and "chat" in decoder
    assert panels.index("Encoder-decoder models (sequence to sequence)") < panels.index("Models and cache") < panels.index("Serving")
    summary = text.split("╭─")[0]
    for task in (*TASKS, "chat"):
        assert task in summary
    fill_mask = help_of("fill-mask")
    assert "[MASK]" in fill_mask.split("╭─")[0]  # the docstring's [MASK] is escaped, not a vanished tag


@pytest.mark.parametrize("command", ["", "chat", "compare", "models", "pull", "search", "cache ls", "cache rm", "alias set", "config set", "serve", "ps", "stop", "env"])
def test_no_option_of_any_command_shows_a_python_type(command):
    rows = option_rows(help_of(*command.split()))
    assert not [r for r in rows if PYTHON_TYPES.search(r)], [r for r in rows if PYTHON_TYPES.search(r)]


def test_compare_takes_every_task_setting_from_the_schema(tfx_env):
    text = help_of("compare")
    for flag in ("--labels", "--aggregate", "--dimensions", "--strategy", "--stop", "--to", "--targets"):
        assert flag in text, flag
    assert not [r for r in option_rows(text) if PYTHON_TYPES.search(r)]
    assert_clean_error(tfx("compare", "ner", "Hi", "-m", BERT, "--labels", "a,b", env=tfx_env), 2, "--labels does not apply to ner")


def test_qa_context_is_never_a_silent_surprise(tfx_env, tmp_path):
    import tiny_retrieval as tr

    question, context, answer = tr.QA_CASES[0]
    article = tmp_path / "article.txt"
    article.write_text(context)
    typo = tfx("qa", "-m", SQUAD, "--context", str(tmp_path / "artcle.txt"), question, env=tfx_env)
    assert_clean_error(typo, 2, "artcle.txt: no such file")
    assert "--context-file" in typo.err
    assert_clean_error(tfx("qa", "-m", SQUAD, question, env=tfx_env), 2, "qa needs a context")
    assert_clean_error(tfx("qa", "-m", SQUAD, "--context-file", str(tmp_path / "nope.txt"), question, env=tfx_env), 2, "no such file")
    outs = {
        how: tfx("qa", "-m", SQUAD, *args, question, env=tfx_env)
        for how, args in {"file": ["--context-file", str(article)], "at": ["--context", "@" + str(article)], "text": ["--context", context]}.items()
    }
    for how, r in outs.items():
        assert r.code == 0, (how, r.err)
        assert r.out.strip().split("\t")[0] == answer, (how, r.out)


def test_input_format_follows_the_file_extension(tfx_env, tmp_path):
    import tiny_retrieval as tr

    question, context, answer = tr.QA_CASES[0]
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"question": question, "context": context}) + "\n")
    r = tfx("qa", "-m", SQUAD, "-i", str(records), "--format", "json", env=tfx_env)
    assert r.code == 0, r.err
    (row,) = [json.loads(line) for line in r.lines]
    assert row["output"] == answer
    # --input-format says otherwise: each line is text (a question with no context: the usage error).
    assert_clean_error(tfx("qa", "-m", SQUAD, "-i", str(records), "--input-format", "text", env=tfx_env), 2, "qa needs a context")


def test_tsv_records_from_the_extension_question_then_context(tfx_env, tmp_path):
    import tiny_retrieval as tr

    rows = tmp_path / "set.tsv"
    rows.write_text("".join(f"{q}\t{c.replace(chr(10), chr(92) + 'n')}\tid{i}\n" for i, (q, c, _) in enumerate(tr.QA_CASES[:2])))
    r = tfx("qa", "-m", SQUAD, "-i", str(rows), "--format", "jsonl", env=tfx_env)
    assert r.code == 0, r.err
    got = [json.loads(line) for line in r.lines]
    assert [g["output"] for g in got] == [a for _, _, a in tr.QA_CASES[:2]]
    assert [g["columns"] for g in got] == [["id0"], ["id1"]]  # further columns are passed through


def test_format_json_is_jsonl(tfx_env):
    a = tfx("fill-mask", "-m", BERT, "--format", "json", "the [MASK] is red", env=tfx_env)
    b = tfx("fill-mask", "-m", BERT, "--format", "jsonl", "the [MASK] is red", env=tfx_env)
    assert a.code == b.code == 0, a.err + b.err
    assert [json.loads(x)["output"] for x in a.lines] == [json.loads(x)["output"] for x in b.lines]


def test_language_codes_are_checked_before_any_model(tfx_env):
    r = tfx("translate", "-m", "tfx-test/does-not-exist", "--to", "xx", "Hello", env=tfx_env)
    assert_clean_error(r, 2, "--to xx is not a language code")
    assert_clean_error(tfx("translate", "--from", "english", "--to", "fr", "Hello", env=tfx_env), 2, "--from english is not a language code")
    from tfx.registry import is_language_code

    assert all(is_language_code(c) for c in ("fr", "de", "zh", "fra", "fra_Latn", "fr_XX", "zh-cn"))
    assert not any(is_language_code(c) for c in ("xx", "english", "q", "f1"))


def test_no_progress_bar_for_a_few_argument_inputs():
    from tfx import pipeline, spec

    settings = spec.FillMaskSettings()
    few = spec.build("fill-mask", settings, inputs=spec.Inputs(("a [MASK]", "b [MASK]")))
    assert pipeline.few_arguments(few)
    assert not pipeline.few_arguments(spec.build("fill-mask", settings, inputs=spec.Inputs(("-",))))
    assert not pipeline.few_arguments(spec.build("fill-mask", settings, inputs=spec.Inputs((), "in.txt")))
    assert not pipeline.few_arguments(spec.build("fill-mask", settings, inputs=spec.Inputs(tuple(f"{i} [MASK]" for i in range(500)))))


def test_backend_is_apart_from_engine():
    from tfx.cli.tasks import pick_engine
    from tfx.errors import UsageError

    assert pick_engine("local", None) == ("local", "transformers")
    assert pick_engine("ray", "ct2") == ("ray", "ct2")
    assert pick_engine("ct2", None) == ("local", "ct2")  # the old spelling, for a release
    with pytest.raises(UsageError, match="disagree"):
        pick_engine("ct2", "onnx")


# --- the schema -------------------------------------------------------------------------------------------


def test_every_setting_is_declared_once_with_help_and_unique_flags():
    from tfx.settings import SETTINGS, schema

    for task, cls in SETTINGS.items():
        flags = []
        for f in schema(cls):
            assert f.opt.help, (task, f.name)
            flags += list(f.opt.flags or (f.flag,)) + ([f.opt.off] if f.opt.off else [])
        assert len(flags) == len(set(flags)), (task, flags)
    assert {f.name for f in schema(SETTINGS["translate"])} >= {"max_new_tokens", "num_beams", "do_sample", "src", "tgt"}


def test_bounds_come_from_the_schema_and_errors_name_each_surface():
    from tfx import spec
    from tfx.settings import SettingError, http_namer

    cases = [
        (spec.GenerateSettings(top_p=1.5), "--top-p must be in (0, 1]", "top_p must be in (0, 1]"),
        (spec.GenerateSettings(max_new_tokens=0), "--max-new-tokens must be at least 1", "max_new_tokens must be at least 1"),
        (spec.GenerateSettings(temperature=float("nan")), "--temperature must be a finite number", "temperature must be a finite number"),
        (spec.TranslateSettings(tgt="fr", src="xx"), "--from xx is not a language code", "from xx is not a language code"),
        (spec.NerSettings(aggregate="mean"), "unknown --aggregate 'mean'", "unknown aggregate 'mean'"),
        (spec.GenerateSettings(num_beams=2, num_return_sequences=3), "--num-return-sequences 3 asks for more", "num_return_sequences 3 asks for more"),
    ]
    for settings, cli, http in cases:
        with pytest.raises(SettingError) as caught:
            settings.validate()
        assert str(caught.value).startswith(cli), str(caught.value)
        message, _ = caught.value.render(http_namer(type(settings)))
        assert message.startswith(http) and "--" not in message, message
        again = pickle.loads(pickle.dumps(caught.value))  # Ray ships errors
        assert str(again) == str(caught.value) and again.fields == caught.value.fields
    openai = {"max_new_tokens": "max_tokens", "num_return_sequences": "n"}
    with pytest.raises(SettingError) as caught:
        spec.GenerateSettings(max_new_tokens=0).validate()
    assert caught.value.render(lambda n: openai.get(n, n))[0].startswith("max_tokens must be at least 1")


def test_a_new_setting_is_one_line(monkeypatch):
    """A field declared with option(...) is a CLI flag with its help, checked by its bounds, with no other edit."""
    import dataclasses

    from tfx.cli.derive import setting_parameters
    from tfx.settings import SettingError, Settings, option

    @dataclasses.dataclass(frozen=True)
    class Demo(Settings):
        beams_of_light: int | None = option(help="A demo setting.", ge=2, le=9)

    params = {p.name: p for p in setting_parameters(Demo)}
    info = params["beams_of_light"].annotation.__metadata__[0]
    assert (info.default, *info.param_decls) == ("--beams-of-light",) and info.help == "A demo setting." and info.metavar == "INT"
    with pytest.raises(SettingError, match="--beams-of-light must be between 2 and 9"):
        Demo(beams_of_light=1).validate()


# --- issue 20 item 6, the CLI's parts ------------------------------------------------------------------


def test_env_masks_secrets_in_query_strings_as_well_as_userinfo():
    from tfx.cli.envcmd import mask_url

    assert mask_url("https://hub.example/api?token=hf_abc&x=1") == "https://hub.example/api?token=***&x=1"
    assert mask_url("http://user:pw@proxy:3128/?API_KEY=zz#top") == "http://***@proxy:3128/?API_KEY=***#top"
    assert mask_url("https://hub.example/models?search=token") == "https://hub.example/models?search=token"


def test_a_truncated_config_is_said_to_be_unreadable(tfx_env, hub_cache, tmp_path):
    import shutil

    from tfx import hub

    source = hub.resolve(BERT, download=False).path
    model = tmp_path / "model"
    shutil.copytree(source, model)
    text = (model / "config.json").read_text()
    (model / "config.json").unlink()  # a hard link into the shared cache: never write through it
    (model / "config.json").write_text(text[: len(text) // 2])
    r = tfx("fill-mask", "-m", str(model), "the [MASK] is red", env=tfx_env)
    assert_clean_error(r, 1, "config.json is unreadable", "tfx pull")


def test_jsonl_errors_say_where_and_what(tfx_env):
    r = tfx("fill-mask", "-m", BERT, "--input-format", "jsonl", env=tfx_env, stdin='{"text": "a [MASK]" "x": 1}\n')
    assert_clean_error(r, 1, "line 1", "at column")
    r = tfx("fill-mask", "-m", BERT, "--input-format", "jsonl", env=tfx_env, stdin='{"text": "a [MASK]", "n": %s}\n' % ("9" * 5000))
    assert_clean_error(r, 1, "more than 4300 digits")
    assert "set_int_max_str_digits" not in r.err
