"""The one seam (issue: run spec, engines, one pipeline, one error table) and the bugs it exposed: each test
here failed on the code before it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

REPO = Path(__file__).resolve().parents[1]
BERT, ROBERTA, GPT2 = "tfx-test/tiny-bert", "tfx-test/tiny-roberta", "tfx-test/tiny-gpt2"
PARIS = "Paris is the [MASK] of France."


# ---- the layering is a contract ----------------------------------------------------------------------------


def test_import_layers_hold():
    """lint-imports checks pyproject's contracts: no upward import, no cycle between layers, engines apart."""
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 broken" in done.stdout


def test_no_module_past_400_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "src").rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


# ---- the run spec ---------------------------------------------------------------------------------------------


def test_spec_is_typed_immutable_and_picklable():
    from dataclasses import FrozenInstanceError

    from tfx import spec

    run = spec.build("translate", spec.TranslateSettings(tgt="FR", num_beams=2), inputs=spec.Inputs(("The house.",)))
    assert run.model == "t5-small" and run.settings.tgt == "fr"
    assert pickle.loads(pickle.dumps(run)) == run  # Ray ships it to the replicas
    with pytest.raises(FrozenInstanceError):
        run.settings.num_beams = 3
    # only what the user set goes on: the model's generation config stays the source of truth
    assert run.settings.generate_kwargs() == {"num_beams": 2}
    assert spec.GenerateSettings(max_new_tokens=5, do_sample=False).generate_kwargs() == {"max_new_tokens": 5, "do_sample": False}
    assert spec.FillMaskSettings(targets="capital, city").targets == ("capital", "city")


def test_spec_is_checked_before_any_model():
    from tfx import spec
    from tfx.errors import UsageError

    with pytest.raises(UsageError, match="two ways"):
        spec.build("generate", spec.GenerateSettings(max_new_tokens=3, max_length=9))
    with pytest.raises(UsageError, match="target language"):
        spec.build("translate", spec.TranslateSettings())
    with pytest.raises(UsageError, match="finite"):
        spec.build("generate", spec.GenerateSettings(temperature=float("nan")))
    with pytest.raises(UsageError, match="does not apply"):
        spec.SETTINGS["fill-mask"].from_params({"num_beams": 2})


# ---- one table for tasks and families --------------------------------------------------------------------------


def test_one_task_table_agrees_on_bart_fill_mask():
    from tfx import registry

    assert "fill-mask" in registry.tasks_for(registry.ENCODER_DECODER, "bart")
    registry.check_task("facebook/bart-large", "fill-mask", registry.ENCODER_DECODER, "bart")  # no error
    # one head for both tasks: a server keeps one copy of the model
    assert registry.auto_class("fill-mask", registry.ENCODER_DECODER) == registry.auto_class("generate", registry.ENCODER_DECODER)
    assert registry.task_info("text-generation").name == "generate"


# ---- one error table, keyed by type -------------------------------------------------------------------------------


def _hub_error(cls, status: int, message: str = "anything at all"):
    import httpx2

    response = httpx2.Response(status, request=httpx2.Request("GET", "https://hub.invalid/api/models/x"))
    return cls(message, response=response)


def test_error_table_is_keyed_by_type_subclasses_first():
    from huggingface_hub import errors as hf

    from tfx import errors, explain

    def raised(exc, **ctx):
        try:
            with errors.about(**ctx):
                raise exc
        except Exception as caught:  # noqa: BLE001
            return explain.explain(caught)

    gated = raised(_hub_error(hf.GatedRepoError, 401, "Repository not found"), model="meta/llama")  # a subclass of RepositoryNotFoundError
    assert "gated" in gated.message and "meta/llama" in gated.message
    missing = raised(_hub_error(hf.RepositoryNotFoundError, 404, "gated unreachable offline"), model="gpt-2")
    assert isinstance(missing, errors.ModelNotFound) and "does not exist" in missing.message and "gpt2" in missing.hint
    assert isinstance(raised(hf.OfflineModeIsEnabled("whatever"), model="gpt2"), errors.NotCached)
    assert "cannot search" in raised(ConnectionError("not found on the Hub"), action="search").message
    assert raised(_hub_error(hf.HfHubHTTPError, 503), model="gpt2").http_status == 503
    assert raised(ValueError("unreachable not in the local cache")) is None  # unknown stays loud


def test_unknown_errors_keep_their_traceback_with_debug(tfx_env, tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    quiet = tfx("fill-mask", "-m", str(bad), PARIS, env=tfx_env)
    assert quiet.code == 1 and "Traceback" not in quiet.err and quiet.err.startswith("tfx: error:")
    loud = tfx("fill-mask", "-m", str(bad), PARIS, env={**tfx_env, "TFX_DEBUG": "1"})
    assert loud.code == 1 and "Traceback" in loud.err


# ---- bugs found while reading -------------------------------------------------------------------------------------


def test_input_from_a_fifo_is_read_not_counted(tfx_env, tmp_path):
    """--input <(printf ...) used to be read up by the ETA's line count: 0 records, exit 0."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    lines = [c for c, _ in tm.FILL_MASK_CASES[:2]]

    def feed() -> None:
        with open(fifo, "w") as f:
            f.write("\n".join(lines) + "\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    r = tfx("fill-mask", "-m", BERT, "--input", str(fifo), env=tfx_env, timeout=60)
    writer.join(5)
    assert r.code == 0, r.err
    assert r.lines == [c.replace("[MASK]", w) for c, w in tm.FILL_MASK_CASES[:2]]


def test_long_fill_mask_input_keeps_its_mask(tfx_env):
    """truncation=True cut a late mask out and the output silently repeated the input."""
    long = " ".join(["the"] * 700) + " " + PARIS
    r = tfx("fill-mask", "-m", BERT, "--format", "jsonl", long, env=tfx_env)
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert len(record["predictions"]) == 1  # the mask was in what the model saw
    word = record["predictions"][0][0]["token"]
    assert record["output"] == long.replace("[MASK]", word) and "[MASK]" not in record["output"]
    assert record["truncated"] is True
    assert "keeping" in r.err  # said on stderr, not cut silently


def test_fill_mask_masks_too_far_apart_is_a_record_error(tfx_env):
    text = "[MASK] " + " ".join(["the"] * 700) + " [MASK]."
    r = tfx("fill-mask", "-m", BERT, text, env=tfx_env)
    assert_clean_error(r, 1, "argument 1", "tokens apart")


def test_targets_on_byte_level_bpe_score_the_word_as_it_stands_in_a_sentence(tfx_env):
    """RoBERTa's " capital" mid-sentence is the token Ġcapital, not the bare word."""
    from tfx import hub

    vocab = json.loads((hub.resolve(ROBERTA).path / "tokenizer.json").read_text())["model"]["vocab"]
    assert "Ġcapital" in vocab and "capital" in vocab  # both forms exist: the choice matters
    r = tfx("fill-mask", "-m", ROBERTA, "--targets", "capital,city", "--top-k", "2", "--format", "jsonl", PARIS, env=tfx_env)
    assert r.code == 0, r.err
    ids = {c["token_id"] for c in json.loads(r.out)["predictions"][0]}
    assert vocab["Ġcapital"] in ids and vocab["capital"] not in ids


@pytest.mark.parametrize("field", ["input", "output", "model", "error"])
def test_pass_through_fields_that_clash_are_refused_by_name(tfx_env, field):
    stdin = json.dumps({"text": PARIS, field: "mine", "id": 7}) + "\n" + json.dumps({"text": PARIS, "id": 8}) + "\n"
    stopped = tfx("fill-mask", "-m", BERT, "--input-format", "jsonl", "--format", "jsonl", env=tfx_env, stdin=stdin)
    assert_clean_error(stopped, 1, "line 1", f'"{field}"', "rename")
    kept = tfx("fill-mask", "-m", BERT, "--input-format", "jsonl", "--format", "jsonl", "--keep-going", env=tfx_env, stdin=stdin)
    first, second = (json.loads(line) for line in kept.lines)
    assert kept.code == 1 and first["id"] == 7 and "rename" in first["error"] and first["input"] == PARIS
    assert second == {"id": 8, "input": PARIS, "output": "Paris is the capital of France.", "predictions": second["predictions"], "model": BERT}


def test_fast_path_judges_generation_config_by_value(hub_cache):
    from tfx import hub, loading
    from tfx.fast import gpt2

    path = hub.resolve(GPT2).path
    config, written = loading.read_json(path / "config.json"), loading.read_json(path / "generation_config.json")
    assert gpt2.unsupported_reason(path, config, written) is None
    # what models saved by transformers 5 write (a GPT-2-small-sized one ran 1.0x instead of 1.6x for it)
    assert gpt2.unsupported_reason(path, config, {**written, "output_attentions": False, "output_hidden_states": False}) is None
    assert gpt2.unsupported_reason(path, config, {"output_hidden_states": False, "some_future_flag": None, "repetition_penalty": 1.0}) is None
    assert gpt2.unsupported_reason(path, config, {"some_future_flag": 3}) is not None
    assert gpt2.unsupported_reason(path, config, {"repetition_penalty": 1.3}) is not None


def test_ctrl_c_writes_the_records_already_finished():
    """The pipeline writes, in order, the records whose results exist when Ctrl-C arrives."""
    import io as stdio

    from tfx import io, pipeline
    from tfx.results import Result

    class Slow:
        batch_size = 2

        def __init__(self):
            self.calls = 0

        def check(self, text):
            pass

        def cost(self, text):
            return 0

        def run(self, texts):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return [Result(output=t.upper()) for t in texts]

    out = stdio.StringIO()
    records = [io.Record(i, i + 1, f"r{i}") for i in range(8)]
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(records, Slow(), io.Writer("text", out=out))
    assert out.getvalue().splitlines() == ["R0", "R1", "R2", "R3"]
