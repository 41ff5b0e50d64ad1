"""The BFCL backend end to end on CPU, for real: a tiny model built here, served by
`transformers serve` (an OpenAI-compatible server that runs on CPU, the stand-in for `vllm serve`,
domain.md §8), and the real `bfcl generate` + `bfcl evaluate` from .venv-bfcl, through the eval
stage with `base_url`, 2 repeats in parallel, logged to a real MLflow store.

Needs: `scripts/setup-bfcl-venv.sh --light` (or $RLREG_BFCL_COMMAND) and `transformers serve`'s
deps in .venv (openai, fastapi, uvicorn, accelerate). Skips with that advice when missing.
The model is untrained, so BFCL scores it 0: the test checks the path, not the model.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from _servers import free_port

ROOT = Path(__file__).resolve().parents[1]
BFCL = os.environ.get("RLREG_BFCL_COMMAND", str(ROOT / ".venv-bfcl" / "bin" / "bfcl"))
# two records (`bfcl evaluate` crashes computing a latency stdev over one) whose prompts are
# 776 and 773 tokens long with this tokenizer (BFCL's QwenFCHandler prompt)
TEST_IDS = ["simple_python_15", "simple_python_38"]

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def served_tiny_model(tmp_path_factory):
    from transformers.utils.import_utils import is_serve_available

    if not Path(BFCL).is_file():
        pytest.skip(f"no BFCL at {BFCL}: run scripts/setup-bfcl-venv.sh --light (or set RLREG_BFCL_COMMAND)")
    if not is_serve_available() or shutil.which("transformers", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("`transformers serve` needs openai, fastapi, uvicorn (+ accelerate) in this environment")
    import torch

    from registry.spec.model import TinyModelSpec
    from runners.eval.server import start_logged, stop_group, wait_until_ready
    from runners.modeling import build_tiny_model
    from runners.modeling.loading import render_record_text
    from runners.synth_data import generate_records

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bfcl-e2e")
    texts = [render_record_text({"messages": r["messages"][:-1], "ground_truth": r["messages"][-1]["content"],
                                 "tools": r.get("tools")}) for r in generate_records(40, 0)]
    # BFCL asks for min(4096, max_position_embeddings - prompt tokens - 2) new tokens: a context just
    # above the prompts keeps the untrained model's answers ~15 tokens long (else ~1000 each).
    spec = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, vocab_size=400, max_position_embeddings=790)
    model = build_tiny_model(spec, texts, root / "tiny")
    (root / "hf-cache").mkdir()  # `transformers serve` answers /v1/models 500 without a hub cache dir
    env = {**os.environ, "HF_HUB_CACHE": str(root / "hf-cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    port = free_port()
    log = root / "serve.log"
    serve = str(Path(sys.executable).parent / "transformers")
    proc = start_logged([serve, "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
                         "--device", "cpu", "--dtype", "float32"], log, env)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=180, proc=proc, log_path=log)
        yield model, f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc, grace_s=10)


def test_bfcl_generate_and_evaluate_against_a_served_tiny_model(make_ctx, tracker, served_tiny_model):
    import runners.eval as ev

    model, url = served_tiny_model
    spec = {"eval": {"backend": "bfcl", "repeats": 2, "model": str(model),
                     "bfcl": {"base_url": url, "bfcl_command": BFCL, "test_ids": TEST_IDS,
                              "model_name": "Qwen/Qwen3-4B-Instruct-2507-FC", "num_threads": 1,
                              "startup_timeout_s": 60, "repeat_timeout_s": 900}}}
    ctx = make_ctx("eval", spec, tracker=tracker)
    result = ev.run(ctx.spec.eval, ctx)
    tracker.flush()

    m = result.metrics
    assert m["eval/repeats"] == 2 and m["eval/repeats_failed"] == 0
    assert m["eval/accuracy_mean"] == 0.0  # an untrained model: BFCL finds no valid call
    assert m["eval/simple_python_accuracy_mean"] == 0.0
    assert m["eval/bfcl/non_live/python_simple_ast_mean"] == 0.0
    for r in (0, 1):
        root = ctx.work_dir / "bfcl" / f"repeat_{r}"
        assert "Running specific test cases" in (root / "generate.log").read_text()
        results = list((root / "result").rglob("BFCL_v4_simple_python_result.json"))
        assert len(results) == 1 and all(i in results[0].read_text() for i in TEST_IDS)
        assert (result.outputs["scores"] / f"repeat_{r}" / "data_non_live.csv").is_file()
    arts = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "eval/bfcl/repeat_0")}
    assert "eval/bfcl/repeat_0/data_non_live.csv" in arts and "eval/bfcl/repeat_0/evaluate.log" in arts
