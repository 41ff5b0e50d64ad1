"""The BFCL backend on CPU: command lines, the readiness wait against a real local HTTP server,
score-CSV parsing in the user's format, the server lifecycle (always stopped, whole process group),
and the failure paths (server never ready, server dies, one repeat fails).

vLLM needs a GPU and BFCL's generate needs a model server, so two stand-in executables written
here play `vllm` (serves /v1/models on --port with http.server, spawns a child like vLLM's
workers) and `bfcl` (checks it can reach the server through the env BFCL gets, then writes result
and score files in BFCL's layout and format). The real end-to-end run is in test_bfcl_e2e.py.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from registry.errors import InputDataError, MissingExtra
from registry.spec.eval import BfclSpec
from runners.eval.bfcl_runner import (
    BfclRepeatsFailed,
    bfcl_env,
    evaluate_argv,
    generate_argv,
    ids_by_category,
    resolve_bfcl_command,
)
from runners.eval.scores import (
    category_scores,
    parse_cell,
    parse_score_csv,
    repeat_metrics,
)
from runners.eval.server import (
    ServerNotReady,
    VllmServer,
    models_endpoint,
    start_logged,
    stop_group,
    vllm_argv,
    wait_until_ready,
)

USER_CSV = """Rank,Model,Multi Turn Overall Acc,Base,Miss Func,Miss Param,Long Context
1,Qwen3-4B-Thinking-2507 (FC),15.43%,61.70%,N/A,N/A,N/A"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- command lines -----------------------------------------------------------------------------------
def test_vllm_argv_carries_the_spec_settings():
    spec = BfclSpec(port=8123, tensor_parallel_size=4, dtype="float16", max_model_len=9216,
                    extra_vllm_args=["--seed", "3"])
    argv = vllm_argv(spec, "/models/verl8")
    assert argv[:3] == ["vllm", "serve", "/models/verl8"]
    pairs = dict(itertools.pairwise(argv[3:]))
    assert pairs["--port"] == "8123" and pairs["--tensor-parallel-size"] == "4"
    assert pairs["--dtype"] == "float16" and pairs["--max-model-len"] == "9216"
    assert "--enable-auto-tool-choice" in argv and pairs["--tool-call-parser"] == "hermes"
    assert argv[-2:] == ["--seed", "3"]


def test_bfcl_argv_and_env(tmp_path):
    spec = BfclSpec(test_category="multi_turn_base", model_name="Qwen/Qwen3-4B-Instruct-2507-FC", num_threads=4)
    gen = generate_argv("/v/bin/bfcl", spec, Path("/m"), tmp_path / "result")
    assert gen[:2] == ["/v/bin/bfcl", "generate"]
    for flag, value in [("--model", "Qwen/Qwen3-4B-Instruct-2507-FC"), ("--test-category", "multi_turn_base"),
                        ("--backend", "vllm"), ("--local-model-path", "/m"), ("--result-dir", str(tmp_path / "result")),
                        ("--num-threads", "4"), ("--temperature", "0.001")]:
        assert gen[gen.index(flag) + 1] == value
    assert "--skip-server-setup" in gen
    smoke = BfclSpec(test_ids=["multi_turn_base_0", "live_simple_3-2-1", "multi_turn_base_7"])
    gen_ids, ev_ids = generate_argv("bfcl", smoke, Path("/m"), tmp_path), evaluate_argv("bfcl", smoke, tmp_path, tmp_path)
    assert "--run-ids" in gen_ids and "--partial-eval" in ev_ids
    assert ev_ids[ev_ids.index("--test-category") + 1] == "multi_turn_base,live_simple"
    assert ids_by_category(smoke.test_ids) == {"multi_turn_base": ["multi_turn_base_0", "multi_turn_base_7"],
                                               "live_simple": ["live_simple_3-2-1"]}
    ev = evaluate_argv("bfcl", spec, tmp_path / "r", tmp_path / "s")
    assert ev[ev.index("--score-dir") + 1] == str(tmp_path / "s") and ev[1] == "evaluate"
    env = bfcl_env(tmp_path, "http://10.0.0.5:8001", base_env={})
    assert env["BFCL_PROJECT_ROOT"] == str(tmp_path)
    assert (env["LOCAL_SERVER_ENDPOINT"], env["LOCAL_SERVER_PORT"]) == ("10.0.0.5", "8001")
    assert env["REMOTE_OPENAI_BASE_URL"] == "http://10.0.0.5:8001/v1"
    assert models_endpoint("http://h:1/v1/") == "http://h:1/v1/models"


def test_missing_bfcl_command_names_the_setup_script(tmp_path):
    with pytest.raises(MissingExtra, match="setup-bfcl-venv.sh"):
        resolve_bfcl_command(".venv-nothing/bin/bfcl", tmp_path)


# -- score files -------------------------------------------------------------------------------------
def test_user_format_csv():
    rows = parse_score_csv(USER_CSV)
    assert rows[0]["Model"] == "Qwen3-4B-Thinking-2507 (FC)"
    assert rows[0]["Base"] == pytest.approx(0.617)
    assert rows[0]["Multi Turn Overall Acc"] == pytest.approx(0.1543)
    assert math.isnan(rows[0]["Miss Func"])
    assert parse_cell(" 100.00% ") == 1.0


def test_unquoted_comma_in_model_name_and_bad_cells():
    rows = parse_score_csv("Rank,Model,Base\n1,My model, v2 (FC),50.00%")
    assert rows[0]["Model"] == "My model, v2 (FC)" and rows[0]["Base"] == 0.5
    with pytest.raises(InputDataError, match="column 'Base'"):
        parse_score_csv("Rank,Model,Base\n1,m,fifty", "data_multi_turn.csv")
    with pytest.raises(InputDataError, match="not a BFCL score CSV"):
        parse_score_csv("a,b\n1,2", "x.csv")


def test_repeat_metrics_from_a_score_dir(tmp_path):
    (tmp_path / "data_multi_turn.csv").write_text(USER_CSV)
    group = tmp_path / "Qwen_Qwen3-4B" / "multi_turn"
    group.mkdir(parents=True)
    (group / "BFCL_v4_multi_turn_base_score.json").write_text(
        json.dumps({"accuracy": 0.617, "correct_count": 123.4, "total_count": 200}) + "\n{\"id\": \"x\"}\n")
    assert category_scores(tmp_path)["multi_turn_base"]["total_count"] == 200
    m = repeat_metrics(tmp_path)
    assert m["eval/accuracy"] == pytest.approx(0.617) and m["eval/multi_turn_base_accuracy"] == pytest.approx(0.617)
    assert m["eval/bfcl/multi_turn/base"] == pytest.approx(0.617)
    assert "eval/bfcl/multi_turn/miss_func" not in m  # N/A is not a zero
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no BFCL"):
        repeat_metrics(tmp_path / "empty")


# Written by a real `bfcl evaluate --partial-eval` (bfcl-eval 2026.3.23) on this machine, for two
# simple_python records answered by an untrained tiny model served with `transformers serve`.
REAL_NON_LIVE = """Rank,Model,Non-Live Overall Acc,AST Summary,Simple AST,Python Simple AST,Java Simple AST,JavaScript Simple AST,Multiple AST,Parallel AST,Parallel Multiple AST,Irrelevance Detection
1,Qwen3-4B-Instruct-2507 (FC),0.00%,N/A,N/A,0.00%,N/A,N/A,N/A,N/A,N/A,N/A"""
REAL_OVERALL = """Rank,Overall Acc,Model,Model Link,Total Cost ($),Latency Mean (s),Latency Standard Deviation (s),Latency 95th Percentile (s),Non-Live AST Acc,Non-Live Simple AST,Non-Live Multiple AST,Non-Live Parallel AST,Non-Live Parallel Multiple AST,Live Acc,Live Simple AST,Live Multiple AST,Live Parallel AST,Live Parallel Multiple AST,Multi Turn Acc,Multi Turn Base,Multi Turn Miss Func,Multi Turn Miss Param,Multi Turn Long Context,Web Search Acc,Web Search Base,Web Search No Snippet,Memory Acc,Memory KV,Memory Vector,Memory Recursive Summarization,Relevance Detection,Irrelevance Detection,Format Sensitivity Max Delta,Format Sensitivity Standard Deviation,Organization,License
1,0.00%,Qwen3-4B-Instruct-2507 (FC),https://huggingface.co/Qwen/Qwen3-4B-Instruct-2507,0.01,65.76,38.63,90.34,N/A,N/A,N/A,N/A,N/A,0.00%,N/A,N/A,N/A,N/A,0.00%,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,Qwen,apache-2.0"""
REAL_SCORE_JSON = '{"accuracy": 0.0, "correct_count": 0, "total_count": 2}\n{"id": "simple_python_0", "valid": false, "error_type": "simple_function_checker:wrong_count"}\n'


def test_real_bfcl_score_files(tmp_path):
    (tmp_path / "data_non_live.csv").write_text(REAL_NON_LIVE)
    (tmp_path / "data_overall.csv").write_text(REAL_OVERALL)
    (tmp_path / "data_multi_turn.csv").write_text(USER_CSV)
    group = tmp_path / "Qwen_Qwen3-4B-Instruct-2507-FC" / "non_live"
    group.mkdir(parents=True)
    (group / "BFCL_v4_simple_python_score.json").write_text(REAL_SCORE_JSON)
    overall = parse_score_csv(REAL_OVERALL)[0]
    assert overall["Model Link"].startswith("https://") and overall["Total Cost ($)"] == "0.01"
    assert overall["Overall Acc"] == 0.0 and math.isnan(overall["Multi Turn Base"])
    m = repeat_metrics(tmp_path)
    assert m["eval/accuracy"] == 0.0 and m["eval/simple_python_accuracy"] == 0.0
    assert m["eval/bfcl/non_live/python_simple_ast"] == 0.0
    # BFCL's overall columns count the categories not run as 0: not metrics (test_bfcl_scores.py)
    assert "eval/bfcl/overall/overall_acc" not in m and "eval/bfcl/non_live/non_live_overall_acc" not in m
    assert m["eval/bfcl/multi_turn/base"] == pytest.approx(0.617)
    assert not any("latency" in k or "cost" in k or "format_sensitivity" in k for k in m)
    assert "eval/bfcl/non_live/java_simple_ast" not in m


# -- readiness wait against a real local HTTP server --------------------------------------------------
class _Models(BaseHTTPRequestHandler):
    ready_after = 3  # answer 503 to the first requests, like a server still loading weights
    calls = 0

    def do_GET(self):
        type(self).calls += 1
        if self.path != "/v1/models":
            self.send_response(404)
            self.end_headers()
            return
        ok = type(self).calls > type(self).ready_after
        body = json.dumps({"object": "list", "data": [{"id": "/models/tiny"}]}).encode() if ok else b"loading"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def models_server():
    _Models.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_wait_until_ready_polls_through_503(models_server):
    models = wait_until_ready(models_server, timeout_s=10, interval_s=0.05)
    assert models["data"][0]["id"] == "/models/tiny"
    assert _Models.calls == _Models.ready_after + 1


def test_never_ready_times_out_with_advice():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ServerNotReady, match="did not answer within 0.5 s.*startup_timeout_s"):
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=0.5, interval_s=0.1)
    assert time.monotonic() - t0 < 5


def test_server_that_dies_reports_code_and_log(tmp_path):
    log = tmp_path / "server.log"
    proc = start_logged([sys.executable, "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"], log)
    with pytest.raises(ServerNotReady, match=r"exited with code 3(.|\n)*CUDA out of memory"):
        wait_until_ready(f"http://127.0.0.1:{free_port()}", timeout_s=30, proc=proc, log_path=log, interval_s=0.1)


# -- the server lifecycle with a vllm stand-in --------------------------------------------------------
FAKE_VLLM = r'''
import json, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
assert args[0] == "serve", args
opt = dict(zip(args[2::1], args[3::1]))
if opt["--dtype"] == "die":
    print("ValueError: unsupported dtype 'die'", flush=True)
    sys.exit(1)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # like vLLM's engine core
open(opt["--pidfile"] if "--pidfile" in opt else "/dev/null", "w").write(f"{worker.pid}\n")
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": args[1]}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
if "--exit-after-s" in opt:  # a server that crashes mid-run (e.g. CUDA OOM under load)
    import os, threading
    threading.Timer(float(opt["--exit-after-s"]), lambda: os._exit(7)).start()
print("serving", args[1], flush=True)
HTTPServer((opt["--host"], int(opt["--port"])), H).serve_forever()
'''


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): check its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_server_started_ready_and_whole_group_stopped(tmp_path):
    fake = _script(tmp_path / "vllm", FAKE_VLLM)
    pidfile = tmp_path / "worker.pid"
    spec = BfclSpec(vllm_command=str(fake), port=free_port(), startup_timeout_s=30,
                    extra_vllm_args=["--pidfile", str(pidfile)])
    server = VllmServer(spec, "/models/tiny", tmp_path / "vllm.log")
    with pytest.raises(KeyError), server as url:  # an error inside the block still stops the server
        assert wait_until_ready(url, 5)["data"][0]["id"] == "/models/tiny"
        worker = int(pidfile.read_text())
        assert _alive(server.proc.pid) and _alive(worker)
        raise KeyError("boom")
    deadline = time.monotonic() + 10
    while (_alive(server.proc.pid) or _alive(worker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server.proc.pid) and not _alive(worker)
    assert "serving /models/tiny" in (tmp_path / "vllm.log").read_text()


def test_server_dying_at_startup_keeps_its_log(tmp_path):
    fake = _script(tmp_path / "vllm", FAKE_VLLM)
    spec = BfclSpec(vllm_command=str(fake), port=free_port(), dtype="die", startup_timeout_s=30)
    with pytest.raises(ServerNotReady, match="exited with code 1(.|\n)*unsupported dtype"), \
            VllmServer(spec, "/m", tmp_path / "vllm.log"):
        pass


def test_stop_group_is_idempotent(tmp_path):
    proc = start_logged([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "p.log")
    stop_group(proc, grace_s=5)
    stop_group(proc, grace_s=5)
    assert proc.returncode is not None


# -- the whole backend with vllm + bfcl stand-ins -----------------------------------------------------
FAKE_BFCL = r'''
import json, os, sys, time, urllib.request
from pathlib import Path
cmd, args = sys.argv[1], sys.argv[2:]
opt = {a: b for a, b in zip(args, args[1:]) if a.startswith("--")}
root = Path(os.environ["BFCL_PROJECT_ROOT"])
repeat = int(root.name.split("_")[-1])
models = json.load(urllib.request.urlopen(os.environ["REMOTE_OPENAI_BASE_URL"] + "/models"))
assert os.environ["LOCAL_SERVER_PORT"] in os.environ["REMOTE_OPENAI_BASE_URL"]
cat, model = opt["--test-category"], opt["--model"].replace("/", "_")
if "--run-ids" in args:
    ids = json.loads((root / "test_case_ids_to_generate.json").read_text())
    assert list(ids) == cat.split(","), (ids, cat)
if cmd == "generate":
    if str(repeat) in os.environ.get("FAKE_BFCL_FAIL", "").split(","):
        print("openai.APIConnectionError: Connection error.", flush=True)
        sys.exit(2)
    time.sleep(float(os.environ.get("FAKE_BFCL_SLEEP", "0")))
    out = Path(opt["--result-dir"]) / model / "multi_turn"
    out.mkdir(parents=True, exist_ok=True)
    answer = models["data"][0]["id"]
    if str(repeat) in os.environ.get("FAKE_BFCL_OUTAGE", "").split(","):
        answer = "Error during inference: Connection error."
    (out / f"BFCL_v4_{cat}_result.json").write_text(
        json.dumps({"id": cat + "_0", "result": answer}) + "\n" + json.dumps({"id": cat + "_1", "result": [[answer]]}) + "\n")
elif cmd == "evaluate":
    assert any(Path(opt["--result-dir"]).rglob("*_result.json"))
    acc = 0.60 + 0.01 * repeat
    score = Path(opt["--score-dir"])
    (score / model / "multi_turn").mkdir(parents=True, exist_ok=True)
    (score / model / "multi_turn" / f"BFCL_v4_{cat}_score.json").write_text(
        json.dumps({"accuracy": acc, "correct_count": acc * 200, "total_count": 200}) + "\n"
        + json.dumps({"id": cat + "_1", "valid": False, "error": ["wrong"], "error_type": "multi_turn:wrong_state"}) + "\n")
    (score / "data_multi_turn.csv").write_text(
        "Rank,Model,Multi Turn Overall Acc,Base,Miss Func,Miss Param,Long Context\n"
        f"1,Tiny (FC),{acc * 25:.2f}%,{acc * 100:.2f}%,N/A,N/A,N/A")
'''


@pytest.fixture()
def stand_ins(tmp_path):
    return _script(tmp_path / "vllm", FAKE_VLLM), _script(tmp_path / "bfcl", FAKE_BFCL)


def _bfcl_ctx(make_ctx, tracker, stand_ins, tmp_path, **bfcl):
    vllm, bfcl_cmd = stand_ins
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    spec = {"eval": {"backend": "bfcl", "repeats": 3, "model": str(model),
                     "bfcl": {"vllm_command": str(vllm), "bfcl_command": str(bfcl_cmd), "port": free_port(),
                              "startup_timeout_s": 30, **bfcl}}}
    return make_ctx("eval", spec, tracker=tracker)


def test_backend_runs_repeats_in_parallel_and_aggregates(make_ctx, tracker, stand_ins, tmp_path):
    import runners.eval as ev

    ctx = _bfcl_ctx(make_ctx, tracker, stand_ins, tmp_path)
    result = ev.run(ctx.spec.eval, ctx)
    tracker.flush()
    m = result.metrics
    assert m["eval/repeats"] == 3 and m["eval/repeats_failed"] == 0
    assert m["eval/accuracy_mean"] == pytest.approx(0.61)
    assert m["eval/accuracy_std"] == pytest.approx(0.01)
    assert m["eval/accuracy_ci95_low"] == pytest.approx(0.61 - 4.302653 * 0.01 / math.sqrt(3), abs=1e-6)
    assert m["eval/bfcl/multi_turn/base_mean"] == pytest.approx(0.61)
    history = tracker.client.get_metric_history(tracker.run_id, "eval/accuracy")
    assert sorted((h.step, round(h.value, 4)) for h in history) == [(0, 0.6), (1, 0.61), (2, 0.62)]
    arts = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "eval/bfcl/repeat_1")}
    assert {"eval/bfcl/repeat_1/data_multi_turn.csv", "eval/bfcl/repeat_1/generate.log"} <= arts
    assert {a.path for a in tracker.client.list_artifacts(tracker.run_id, "eval/bfcl")} >= {"eval/bfcl/vllm-server.log"}
    assert sorted(p.name for p in result.outputs["scores"].iterdir()) == ["repeat_0", "repeat_1", "repeat_2"]
    # BFCL's own per-entry files reach MLflow and the run's outputs, and become eval/entries.json
    cat = ctx.spec.eval.bfcl.test_category
    files = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "eval/bfcl/repeat_2/result")}
    assert files and all(f.startswith("eval/bfcl/repeat_2/result/") for f in files)
    assert list(result.outputs["scores"].rglob(f"BFCL_v4_{cat}_result.json"))
    from analysis.entries import load_entries
    rows = load_entries(tracker.client, tracker.run_id)
    assert len(rows) == 2 * 3 and {r["repeat"] for r in rows} == {0, 1, 2}
    by_id = {(r["entry_id"], r["repeat"]): r for r in rows}
    assert by_id[(cat + "_0", 0)]["valid"] is True and by_id[(cat + "_0", 0)]["correct"] == 1.0
    failed = by_id[(cat + "_1", 1)]
    assert failed["valid"] is False and failed["error_type"] == "multi_turn:wrong_state" and failed["category"] == cat


def test_one_failed_repeat_fails_the_stage_after_logging_the_others(make_ctx, tracker, stand_ins, tmp_path, monkeypatch):
    import runners.eval as ev

    monkeypatch.setenv("FAKE_BFCL_FAIL", "1")
    ctx = _bfcl_ctx(make_ctx, tracker, stand_ins, tmp_path)
    with pytest.raises(BfclRepeatsFailed, match=r"1 of 3 BFCL repeats failed(.|\n)*repeat 1: `bfcl generate` exited with 2(.|\n)*APIConnectionError"):
        ev.run(ctx.spec.eval, ctx)
    tracker.flush()
    history = tracker.client.get_metric_history(tracker.run_id, "eval/accuracy")
    assert sorted(h.step for h in history) == [0, 2]
    failed = tracker.client.get_metric_history(tracker.run_id, "eval/repeats_failed")
    assert [h.value for h in failed] == [1.0]
    arts = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "eval/bfcl/repeat_1")}
    assert "eval/bfcl/repeat_1/generate.log" in arts


def test_allowed_failures_aggregate_the_rest(make_ctx, null_tracker, stand_ins, tmp_path, monkeypatch):
    import runners.eval as ev

    monkeypatch.setenv("FAKE_BFCL_FAIL", "2")
    ctx = _bfcl_ctx(make_ctx, null_tracker, stand_ins, tmp_path, allow_failed_repeats=1,
                    test_ids=["multi_turn_base_0", "multi_turn_base_1"])
    result = ev.run(ctx.spec.eval, ctx)
    assert result.metrics["eval/repeats"] == 2 and result.metrics["eval/repeats_failed"] == 1
    assert result.metrics["eval/accuracy_mean"] == pytest.approx(0.605)
    assert result.info["failed"] == [2]


def test_a_repeat_whose_requests_all_failed_is_a_failed_repeat(make_ctx, null_tracker, stand_ins, tmp_path, monkeypatch):
    import runners.eval as ev

    monkeypatch.setenv("FAKE_BFCL_OUTAGE", "0")
    ctx = _bfcl_ctx(make_ctx, null_tracker, stand_ins, tmp_path)
    with pytest.raises(BfclRepeatsFailed, match=r"repeat 0: all 2 BFCL requests failed"):
        ev.run(ctx.spec.eval, ctx)
    logged = {(k, step): v for k, v, step in null_tracker.metrics}
    assert logged[("eval/inference_errors", 1)] == 0.0 and ("eval/accuracy", 0) not in logged


def test_server_dying_during_the_runs_fails_the_stage(make_ctx, null_tracker, stand_ins, tmp_path, monkeypatch):
    import runners.eval as ev

    monkeypatch.setenv("FAKE_BFCL_SLEEP", "3")
    ctx = _bfcl_ctx(make_ctx, null_tracker, stand_ins, tmp_path, extra_vllm_args=["--exit-after-s", "1.5"])
    with pytest.raises(ServerNotReady, match="exited with code 7 during the BFCL runs"):
        ev.run(ctx.spec.eval, ctx)
    assert "eval/bfcl/vllm-server.log" in null_tracker.artifacts


def test_existing_endpoint_is_used_without_starting_vllm(make_ctx, null_tracker, stand_ins, tmp_path, models_server):
    import runners.eval as ev

    _Models.ready_after = 0
    try:
        ctx = _bfcl_ctx(make_ctx, null_tracker, stand_ins, tmp_path, base_url=models_server,
                        vllm_command="/nonexistent/vllm")
        result = ev.run(ctx.spec.eval, ctx)
    finally:
        _Models.ready_after = 3
    assert result.metrics["eval/repeats"] == 3
    assert not (ctx.work_dir / "bfcl" / "vllm-server.log").exists()


def test_dry_run_description_shows_the_commands():
    from registry.spec.eval import EvalSpec
    from runners.eval import describe

    text = describe(EvalSpec(backend="bfcl", repeats=5), None)
    assert "vllm serve <model dir>" in text and "--tool-call-parser hermes" in text
    assert "5 x in parallel" in text and "bfcl generate" in text and "bfcl evaluate" in text
