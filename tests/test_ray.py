"""--engine ray on a real Ray cluster on loopback (2 CPUs) with the tiny models: the same records as the local
engine, every record exactly once when a replica is killed, parquet in and out, and the one-line error
without Ray. One cluster serves the module; `tfx` joins it with --ray-address, except where it starts its
own. Run them alone with `pytest -m ray`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny_models as tm
from clihelp import assert_clean_error, tfx

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

REPLICA_TITLE = b"MapBatches(Replica)"  # the process title Ray gives the replica actors


@pytest.fixture(scope="module")
def cluster(hub_cache):
    """A 2-CPU Ray cluster owned by this process (its workers are our descendants); yields its address."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import: bind to 127.0.0.1, as tfx does
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    import logging

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def env(tfx_env):
    env = dict(tfx_env)
    env.pop("RAY_ADDRESS", None)
    env.pop("TFX_SERVER", None)
    return env


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def shards(out: Path, suffix: str = "jsonl") -> list[Path]:
    return sorted(out.glob(f"part-*.{suffix}"))


def ray_output(out: Path) -> str:
    """The jsonl shards in name order: the input's order."""
    return "".join(p.read_text(encoding="utf-8") for p in shards(out))


def local(env, *args: str) -> tuple[str, str, int]:
    r = tfx(*args, "--format", "jsonl", env=env, timeout=180)
    return r.out, r.err, r.code


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid, ppid = int(text.split()[0]), int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def replica_pids() -> set[int]:
    """The replica actors of our own cluster: never a neighbour's processes."""
    pids = set()
    for pid in descendants(os.getpid()):
        try:
            if REPLICA_TITLE in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.add(pid)
        except OSError:
            pass
    return pids


def run_watching_replicas(env, args: list[str]) -> tuple[subprocess.CompletedProcess, set[int]]:
    """Run tfx, noting every replica process that lived during the run."""
    proc = subprocess.Popen([sys.executable, "-m", "tfx", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: set[int] = set()
    while proc.poll() is None:
        seen |= replica_pids()
        time.sleep(0.2)
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode()), seen


def test_generate_greedy_same_records_as_local(env, cluster, tmp_path):
    prompts = [p for p, _ in tm.GPT2_CASES] + ["A", "The weather is", "Hello, my name is Tiny and"]
    rows = [json.dumps({"id": i, "text": prompts[i % len(prompts)], "tag": ["x", i]}) for i in range(300)]
    src = write_lines(tmp_path / "prompts.jsonl", rows)
    args = ["generate", "-m", "tfx-test/tiny-gpt2", "--greedy", "--max-new-tokens", "12", "--input", str(src), "--input-format", "jsonl"]
    expected, _, code = local(env, *args)
    assert code == 0
    out = tmp_path / "out"
    r, seen = run_watching_replicas(env, [*args, "--engine", "ray", "--ray-address", cluster, "--replicas", "2", "--output", str(out)])
    assert r.returncode == 0, r.stderr
    assert ray_output(out) == expected
    assert len(shards(out)) >= 2 and len(seen) >= 2  # the work went to two replicas
    assert r.stderr.splitlines()[-1].startswith("tfx: 300/300 records, 2 replica(s)")


def test_fill_mask_same_records_as_local(env, cluster, tmp_path):
    cases = [tm.with_mask(c, "[MASK]") for c, _ in tm.FILL_MASK_CASES + tm.FILL_MASK_MULTI_CASES]
    src = write_lines(tmp_path / "masked.txt", [cases[i % len(cases)] for i in range(320)])
    args = ["fill-mask", "-m", "tfx-test/tiny-roberta", "--top-k", "3", "--input", str(src)]
    expected, _, code = local(env, *args)
    assert code == 0
    out = tmp_path / "out"
    r = tfx(*args, "--engine", "ray", "--ray-address", cluster, "--output", str(out), env=env, timeout=180)
    assert r.code == 0, r.err
    assert ray_output(out) == expected
    assert len(shards(out)) >= 2


def test_translate_same_records_as_local(env, cluster, tmp_path):
    sources = [s for s, _ in tm.TRANSLATIONS[("en", "fr")]] + ["The house is beautiful today."]
    src = write_lines(tmp_path / "en.txt", [sources[i % len(sources)] for i in range(200)])
    args = ["translate", "--to", "fr", "--input", str(src)]
    expected, _, code = local(env, *args)
    assert code == 0
    assert json.loads(expected.splitlines()[0])["output"] == tm.TRANSLATIONS[("en", "fr")][0][1]
    out = tmp_path / "out"
    r = tfx(*args, "--engine", "ray", "--ray-address", cluster, "--replicas", "2", "--output", str(out), env=env, timeout=180)
    assert r.code == 0, r.err
    assert ray_output(out) == expected


def test_bad_records_behave_as_locally(env, cluster, tmp_path):
    rows = [json.dumps({"id": i, "text": "Paris is the [MASK] of France."}) for i in range(120)]
    rows[17] = json.dumps({"id": 17, "text": "no mask here"})
    rows[60] = "{not json"
    rows[61] = ""
    rows[99] = json.dumps({"id": 99})
    src = write_lines(tmp_path / "bad.jsonl", rows)
    base = ["fill-mask", "-m", "tfx-test/tiny-bert", "--input", str(src), "--input-format", "jsonl"]
    ray_args = ["--engine", "ray", "--ray-address", cluster]

    expected, local_err, code = local(env, *base, "--keep-going")
    assert code == 1
    r = tfx(*base, "--keep-going", *ray_args, "--output", str(tmp_path / "kept"), env=env, timeout=180)
    assert r.code == 1, r.err
    assert ray_output(tmp_path / "kept") == expected  # error records in place, same fields
    assert r.err.splitlines()[:3] == local_err.splitlines() == [
        "tfx: line 18: no mask in the input; write [MASK] where the missing word goes",
        "tfx: line 61: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        'tfx: line 100: no "text" field (a string) in the JSON object',
    ]

    stopped = tfx(*base, *ray_args, "--output", str(tmp_path / "stopped"), env=env, timeout=180)
    assert_clean_error(stopped, 1, "line 18: no mask in the input", "--keep-going")
    assert stopped.err == tfx(*base, env=env).err


def test_a_killed_replica_is_restarted_and_every_record_is_written_once(env, cluster, tmp_path):
    n = 400
    src = write_lines(tmp_path / "prompts.jsonl", [json.dumps({"id": i, "text": tm.GPT2_CASES[i % 4][0]}) for i in range(n)])
    # --batch-size 1: small shards, so the run is still going when the replica dies
    args = ["generate", "-m", "tfx-test/tiny-gpt2", "-b", "1", "--input", str(src), "--input-format", "jsonl"]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfx", *args, "--engine", "ray", "--ray-address", cluster, "--replicas", "2", "--output", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not shards(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    before = replica_pids()
    assert proc.poll() is None and before, "the run ended before a replica could be killed"
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    written_at_kill = len(shards(out))
    restarted = set()
    while proc.poll() is None:
        restarted |= replica_pids() - before
        time.sleep(0.1)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert written_at_kill < n // 32, "the kill came too late to test anything"
    assert restarted, "Ray did not start a new replica"
    records = [json.loads(line) for line in ray_output(out).splitlines()]
    assert [r["id"] for r in records] == list(range(n))  # no loss, no duplicate, in input order
    assert all(r["output"] == "".join(tm.GPT2_CASES[r["id"] % 4]) for r in records)  # the memorised greedy text


def test_parquet_in_and_out_on_a_cluster_started_by_tfx(env, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pytest.importorskip("ray")
    import pyarrow.parquet as pq

    cases = [c for c, _ in tm.FILL_MASK_CASES]
    texts = [cases[i % len(cases)] for i in range(250)]
    table = pa.table({"id": list(range(250)), "text": texts, "lang": ["en"] * 250})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=64)
    jsonl = write_lines(tmp_path / "in.jsonl", [json.dumps(row) for row in table.to_pylist()])
    expected = [json.loads(line) for line in local(env, "fill-mask", "--input", str(jsonl), "--input-format", "jsonl")[0].splitlines()]

    out = tmp_path / "out"
    r = tfx("fill-mask", "--engine", "ray", "--input", str(tmp_path / "in.parquet"), "--output", str(out), "--output-format", "parquet", env=env, timeout=180)
    assert r.code == 0, r.err
    assert len(shards(out, "parquet")) >= 2
    rows = [row for p in shards(out, "parquet") for row in pq.read_table(p).to_pylist()]
    assert [{k: v for k, v in row.items() if v is not None} for row in rows] == expected
    assert all("error" in row for row in rows)  # one schema, with or without errors


def test_without_ray_a_one_line_install_hint(env, tmp_path):
    src = write_lines(tmp_path / "in.txt", ["Paris is the [MASK] of France."])
    code = "import sys; sys.modules['ray'] = None; from tfx.cli import main; sys.argv[0] = 'tfx'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "fill-mask", "--engine", "ray", "--input", str(src), "--output", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    from clihelp import Result

    assert_clean_error(Result(proc.returncode, proc.stdout, proc.stderr), 1, "--engine ray needs Ray", 'pip install "tfx-cli[ray]"')


def test_usage_errors_before_any_cluster(env, tmp_path):
    src = write_lines(tmp_path / "in.txt", ["Paris is the [MASK] of France."])
    assert_clean_error(tfx("fill-mask", "--engine", "ray", "--input", str(src), env=env), 2, "--output DIR")
    assert_clean_error(tfx("fill-mask", "--engine", "ray", "Paris is the [MASK].", "--output", str(tmp_path / "o"), env=env), 2, "--input")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.jsonl").write_text("{}\n")
    pytest.importorskip("ray")
    assert_clean_error(tfx("fill-mask", "--engine", "ray", "--input", str(src), "--output", str(tmp_path / "full"), env=env), 2, "not empty")
    assert_clean_error(tfx("fill-mask", "--engine", "ray", "--input", str(tmp_path / "nothing-*.txt"), "--output", str(tmp_path / "o"), env=env), 1, "matches no files")


def test_embed_same_records_as_local(env, cluster, tmp_path):
    import tiny_retrieval as tr

    src = write_lines(tmp_path / "docs.txt", (tr.FAQ_DOCS + [q for q, _ in tr.FAQ]) * 30)
    args = ["embed", "-m", "tfx-test/tiny-minilm", "--dimensions", "32", "--input", str(src)]
    expected, _, code = local(env, *args)
    assert code == 0
    out = tmp_path / "out"
    r = tfx(*args, "--engine", "ray", "--ray-address", cluster, "--output", str(out), env=env, timeout=180)
    assert r.code == 0, r.err
    assert ray_output(out) == expected


def test_qa_records_carry_their_own_context_on_a_cluster(env, cluster, tmp_path):
    """jsonl {question, context}: the context travels with its record to the replica, as locally."""
    import tiny_retrieval as tr

    src = tmp_path / "qa.jsonl"
    src.write_text("".join(json.dumps({"question": q, "context": c, "id": i}) + "\n" for i, (q, c, _) in enumerate(tr.QA_CASES * 3)))
    args = ["qa", "-m", "tfx-test/tiny-squad", "--input", str(src), "--input-format", "jsonl"]
    expected, _, code = local(env, *args)
    assert code == 0 and [json.loads(line)["output"] for line in expected.splitlines()] == [a for _, _, a in tr.QA_CASES * 3]
    out = tmp_path / "out"
    r = tfx(*args, "--engine", "ray", "--ray-address", cluster, "--output", str(out), env=env, timeout=180)
    assert r.code == 0, r.err
    assert ray_output(out) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "-m", "tfx-test/tiny-gpt2", "--greedy", "--max-new-tokens", "8", "--backend", "ct2", "--compute-type", "float32"],
        ["classify", "-m", "tfx-test/tiny-sst2", "--backend", "onnx", "--compute-type", "int8"],  # int8: scores only onnx gives
    ],
    ids=["ct2", "onnx"],
)
def test_every_backend_runs_on_the_replicas_with_the_local_records(env, cluster, tmp_path, args):
    """--backend apart from --engine: the replicas open their task with the spec's backend (ct2, onnx) and
    write the local engine's records (the copy is converted once, by the local run, in the shared HF_HOME)."""
    pytest.importorskip("ctranslate2" if "ct2" in args else "onnxruntime")
    texts = [p for p, _ in tm.GPT2_CASES] + ["A", "The weather is"] if args[0] == "generate" else ["I loved it.", "What a terrible film.", "ok"]
    src = write_lines(tmp_path / "in.txt", [texts[i % len(texts)] for i in range(40)])
    expected, err, code = local(env, *args, "--input", str(src))
    assert code == 0, err
    out = tmp_path / "out"
    r = tfx(*args, "--input", str(src), "--engine", "ray", "--ray-address", cluster, "--output", str(out), "-v", env=env, timeout=180)
    assert r.code == 0, r.err
    assert ray_output(out) == expected
    if "ct2" in args:  # settings only ct2 refuses: the replicas refuse them too, with the local one-line error
        refused = [*args, "--num-beams", "2", "--repetition-penalty", "1.3", "--input", str(src)]
        r = tfx(*refused, "--engine", "ray", "--ray-address", cluster, "--output", str(tmp_path / "refused"), env=env, timeout=180)
        assert r.code == 1 and "repetition" in r.err and "--backend auto" in r.err, r.err
