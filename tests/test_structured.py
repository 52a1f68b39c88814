"""--json / --json-schema: constrained decoding through xgrammar. Even the tiny models answer with JSON that
validates against the schema (checked with jsonschema), in batches, with -n sampling, streamed and on the
real CLI; a JSON cut by max_new_tokens says so; bad schemas and beam search are one-line errors; the fast
GPT-2 path and the CTranslate2 plan refuse the settings instead of ignoring them."""

from __future__ import annotations

import json

import pytest
import tiny_chat as tc
import tiny_models as tm
from clihelp import assert_clean_error, tfx

pytest.importorskip("xgrammar")
jsonschema = pytest.importorskip("jsonschema")

GPT2 = "tfx-test/tiny-gpt2"
CHAT = "tfx-test/tiny-chat"
# Short keys: the tiny models' vocabularies spell JSON nearly a character a token, in 64-96 positions.
SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "string", "maxLength": 4},
        "a": {"type": "integer", "minimum": 0, "maximum": 99},
        "k": {"enum": ["cat", "dog"]},
        "t": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2},
    },
    "required": ["n", "a", "k", "t"],
    "additionalProperties": False,
}


def open_generate(model: str, **settings):
    from tfx.spec import GenerateSettings, RunSpec
    from tfx.tasks import open_task

    s = GenerateSettings(**settings)
    s.validate({})
    return open_task(RunSpec("generate", s, model, device="cpu"))


def assert_valid(text: str, schema=SCHEMA) -> None:
    jsonschema.validate(json.loads(text), schema)


def test_greedy_batch_validates_on_both_tiny_models(hub_cache):
    task = open_generate(GPT2, max_new_tokens=48, json_schema=json.dumps(SCHEMA))
    assert task.fast is None  # the fast GPT-2 path takes no logits processor
    results = task.run([p for p, _ in tm.GPT2_CASES])  # one grammar matcher per row of the left-padded batch
    for r in results:
        assert_valid(r.output)
        assert r.finish_reasons == ["stop"] and not r.incomplete
    chat = open_generate(CHAT, chat=True, max_new_tokens=48, json_schema=json.dumps(SCHEMA))
    for r in chat.run([u for u, _ in tc.CHAT_CASES]):
        assert_valid(r.output)


def test_sampling_n_sequences_validate_or_say_they_were_cut(hub_cache):
    task = open_generate(GPT2, max_new_tokens=44, json_schema=json.dumps(SCHEMA), do_sample=True, seed=0, num_return_sequences=3)
    (result,) = task.run([tm.GPT2_PROMPT])
    complete = 0
    for text, reason in zip(result.outputs, result.finish_reasons):
        try:
            assert_valid(text)
            complete += 1
        except ValueError:  # json.loads: the sequence ran out of tokens inside the JSON
            assert reason == "length" and result.incomplete
    assert complete >= 1


def test_json_object_and_truncation(hub_cache):
    task = open_generate(CHAT, chat=True, max_new_tokens=30, json_object=True)
    (r,) = task.run([tc.CHAT_CASES[1][0]])
    assert isinstance(json.loads(r.output), dict) and r.finish_reasons == ["stop"]
    short = open_generate(GPT2, max_new_tokens=4, json_schema=json.dumps(SCHEMA))
    (cut,) = short.run([tm.GPT2_PROMPT])
    assert cut.output.startswith('{"') and cut.incomplete and cut.finish_reasons == ["length"]
    assert cut.record()["incomplete"] is True


def test_stream_gives_the_same_json(hub_cache):
    from tfx.results import TextChunk

    task = open_generate(GPT2, max_new_tokens=48, json_schema=json.dumps(SCHEMA))
    items = list(task.stream(tm.GPT2_PROMPT))
    assert all(isinstance(c, TextChunk) for c in items[:-1])
    assert "".join(c.text for c in items[:-1]) == items[-1].output == task.run([tm.GPT2_PROMPT])[0].output
    assert_valid(items[-1].output)


def test_one_grammar_per_tokenizer_and_schema(hub_cache):
    from tfx.tasks import constrain

    first = open_generate(GPT2, max_new_tokens=6, json_schema=json.dumps(SCHEMA))
    first.run(["a"])
    again = open_generate(GPT2, max_new_tokens=6, json_schema=json.dumps(SCHEMA, indent=2))  # the same schema, spelt otherwise
    again.tokenizer = first.tokenizer  # open_task loads a tokenizer per task; the server's tasks share one
    again.run(["a"])
    assert again.constraint.grammar is first.constraint.grammar


def test_settings_errors_name_the_setting(hub_cache):
    from tfx.errors import UsageError
    from tfx.settings import GenerateSettings, SettingError, http_namer
    from tfx.tasks import constrain

    with pytest.raises(SettingError) as bad:
        GenerateSettings(json_schema="{not json").validate({})
    assert bad.value.fields[0] == "json_schema" and bad.value.render(http_namer(GenerateSettings))[0].startswith("json_schema is not valid JSON")
    with pytest.raises(SettingError, match="--json-schema is a schema tfx cannot follow: Unsupported type"):
        constrain.check_schema(GenerateSettings(json_schema='{"type": "objekt"}'))
    for settings, needle in [
        (dict(json_object=True, num_beams=2), "--json does not work with beam search"),
        (dict(json_object=True, json_schema="{}"), "two ways"),
        (dict(json_schema="[1]"), "must be a JSON Schema"),
    ]:
        with pytest.raises(UsageError, match=needle):
            GenerateSettings(**settings).validate({})
    # a request's schema object becomes the same hashable text as the file's
    assert GenerateSettings(json_schema=SCHEMA) == GenerateSettings(json_schema=GenerateSettings(json_schema=SCHEMA).json_schema)


def test_fast_path_and_ct2_refuse_the_settings():
    from tfx.ct2 import Unsupported, options
    from tfx.fast.runner import FastPath
    from tfx.settings import GenerateSettings
    from tfx.tasks.generate import length_kwargs

    for s in (GenerateSettings(json_object=True), GenerateSettings(json_schema="{}"), GenerateSettings(logprobs=0)):
        kwargs = length_kwargs(s, {})
        assert not FastPath.takes(kwargs)
        with pytest.raises(Unsupported):
            options.plan(False, {}, kwargs, {"eos_token_id": 0})
    assert FastPath.takes(length_kwargs(GenerateSettings(), {}))


def test_cli_prints_the_json(tfx_env, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA, indent=2))
    r = tfx("generate", "-m", GPT2, "--max-new-tokens", "48", "--json-schema", str(schema), tm.GPT2_CASES[0][0], tm.GPT2_CASES[1][0], env=tfx_env)
    assert r.code == 0, r.err
    assert len(r.lines) == 2
    for line in r.lines:  # the JSON alone: no prompt before it
        assert_valid(line)
    j = tfx("generate", "-m", CHAT, "--chat", "--json", "--max-new-tokens", "30", "-f", "jsonl", tc.CHAT_CASES[1][0], env=tfx_env)
    assert j.code == 0, j.err
    (record,) = [json.loads(line) for line in j.lines]
    assert isinstance(json.loads(record["output"]), dict) and record["finish_reasons"] == ["stop"]


def test_cli_bad_schema_is_one_line(tfx_env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "objekt"}')
    assert_clean_error(tfx("generate", "-m", GPT2, "--json-schema", str(bad), "x", env=tfx_env), 2, "--json-schema")
    assert_clean_error(tfx("generate", "-m", GPT2, "--json-schema", str(tmp_path / "missing.json"), "x", env=tfx_env), 2, "no such file")
