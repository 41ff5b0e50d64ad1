"""MLflow-native runs (issue 17): the merged model is a pyfunc LoggedModel that loads offline and
generates, registered as <experiment>-policy @candidate and promotable; system metrics on stage
runs; dataset inputs on every run incl. cache hits; no transformers bars in a run's output."""

from __future__ import annotations

import json

import mlflow
import pytest
from _servers import mlflow_ui
from click.testing import CliRunner

from registry.cli import main

# Smallest pipeline that exercises every MLflow path: convert → sft → train → merge.
TINY = """\
experiment: native-test
data:
  synthetic: {num_records: 40, seed: 0}
  test_size: 0.2
model:
  tiny: {hidden_size: 32, num_layers: 1, num_heads: 2, vocab_size: 300, seed: 0}
  device: cpu
  cpu_threads: 1
sft: {max_steps: 2, batch_size: 4, format_samples: 1, warmup_steps: 0}
train:
  rollout: {n: 2, max_response_length: 8}
  train_batch_size: 2
  ppo_mini_batch_size: 2
  total_training_steps: 1
  save_freq: -1
  test_freq: -1
merge: {}
tracking: {system_metrics_interval_s: 0.2}
"""


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Spec `a`, then `b` (other train lr: convert and sft are cache hits), in one store."""
    tmp = tmp_path_factory.mktemp("native")
    specs = tmp / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(TINY)
    (specs / "b.yaml").write_text("extends: a\ntrain: {optimizer: {lr: 2.0e-6}}\n")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("RLREG_SPECS_DIR", str(specs))
    mp.setenv("RLREG_HOME", str(tmp / "home"))
    mp.delenv("MLFLOW_RUN_ID", raising=False)
    out = {}
    for name in ("a", "b"):
        r = CliRunner().invoke(main, ["run", name, "--json"])
        assert r.exit_code == 0, r.output[-3000:]
        out[name] = {"summary": json.loads(r.stdout[r.stdout.index("{\n"):]), "output": r.output}
    yield {"client": mlflow.MlflowClient(uri), "uri": uri, "tmp": tmp, **out}
    mp.undo()


def _stage(runs, name, stage):
    return next(s for s in runs[name]["summary"]["stages"] if s["stage"] == stage)


@pytest.mark.slow
def test_merged_model_loads_through_pyfunc_and_generates(tiny_runs):
    client = tiny_runs["client"]
    merge = client.get_run(_stage(tiny_runs, "a", "merge")["run_id"])
    model_id = merge.data.tags["rlreg.logged_model"]
    assert [o.model_id for o in merge.outputs.model_outputs] == [model_id]
    # the durable stage-cache path (the temporary out_dir is gone), same as rlreg.outputs records
    outputs = json.loads(merge.data.tags["rlreg.outputs"])
    assert merge.data.tags["rlreg.model_path"] == outputs["model"]["path"]
    model = mlflow.pyfunc.load_model(f"models:/{model_id}")
    texts = model.predict(["<|im_start|>user\nweather in Paris?<|im_end|>\n<|im_start|>assistant\n",
                           json.dumps([{"role": "user", "content": "hi"}])], params={"max_new_tokens": 3})
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


@pytest.mark.slow
def test_version_alias_lineage_and_promote(tiny_runs):
    client = tiny_runs["client"]
    a_merge, b_merge = (_stage(tiny_runs, n, "merge")["run_id"] for n in ("a", "b"))
    versions = {v.run_id: v for v in client.search_model_versions("name = 'native-test-policy'")}
    assert set(versions) == {a_merge, b_merge}
    candidate = client.get_model_version_by_alias("native-test-policy", "candidate")
    assert candidate.run_id == b_merge  # the newest merge is the candidate
    va = versions[a_merge]
    assert va.tags["rlreg.train_run"] == _stage(tiny_runs, "a", "train")["run_id"]
    assert va.tags["rlreg.parent_run"] == tiny_runs["a"]["summary"]["parent_run_id"]
    assert "-train@" in va.tags["rlreg.datasets"] and va.source.startswith("models:/m-")

    r = CliRunner().invoke(main, ["promote", tiny_runs["a"]["summary"]["parent_run_id"], "--alias", "champion"])
    assert r.exit_code == 0, r.output
    assert client.get_model_version_by_alias("native-test-policy", "champion").run_id == a_merge
    r = CliRunner().invoke(main, ["promote", b_merge, "--alias", "champion"])
    assert r.exit_code == 0 and f"v{versions[b_merge].version} @champion (was v{va.version})" in r.output
    r = CliRunner().invoke(main, ["promote", "0" * 32])
    assert r.exit_code == 2 and "not found" in r.output


@pytest.mark.slow
def test_system_metrics_on_executed_stages(tiny_runs):
    client = tiny_runs["client"]
    for stage in ("convert", "sft", "train", "merge"):
        metrics = client.get_run(_stage(tiny_runs, "a", stage)["run_id"]).data.metrics
        assert "system/cpu_utilization_percentage" in metrics, stage
        assert "system/system_memory_usage_megabytes" in metrics, stage


@pytest.mark.slow
def test_datasets_on_every_run_including_cache_hits(tiny_runs):
    client = tiny_runs["client"]

    def datasets(run_id):
        run = client.get_run(run_id)
        return {(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs}

    convert = datasets(_stage(tiny_runs, "a", "convert")["run_id"])
    assert len(convert) == 2  # train + test splits
    for name in ("a", "b"):
        for stage in ("convert", "sft", "train", "merge"):
            assert datasets(_stage(tiny_runs, name, stage)["run_id"]) >= convert, (name, stage)
        assert datasets(tiny_runs[name]["summary"]["parent_run_id"]) >= convert
    assert _stage(tiny_runs, "b", "convert")["cache_hit"] and _stage(tiny_runs, "b", "sft")["cache_hit"]


@pytest.mark.slow
def test_run_output_has_no_transformers_bars_and_a_short_summary(tiny_runs):
    for name in ("a", "b"):
        text = tiny_runs[name]["output"]
        assert "Loading weights" not in text and "Writing model shards" not in text
        assert "\r" not in text  # no bar redraws when the output is not a terminal
    text = tiny_runs["a"]["output"]
    closing = text[text.index("Done:"):text.index("{\n")]
    assert "mlflow ui --backend-store-uri" in closing and "sft/eval_loss" in closing
    assert "merge/num_params" not in closing and "convert/" not in closing


@pytest.fixture(scope="module")
def ui(tiny_runs):
    """`mlflow ui` on the tiny store (loopback, own process group, stopped at the end)."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian `chromium` is not installed (scripts/system-deps.sh installs it)")
    with mlflow_ui(tiny_runs["uri"], tiny_runs["tmp"]) as base:

        def dom(page: str, profile: str) -> str:
            r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-background-networking", "--window-size=1400,1800",
                                f"--user-data-dir={tiny_runs['tmp'] / profile}", "--virtual-time-budget=25000",
                                "--dump-dom", f"{base}/{page}"], capture_output=True, text=True, timeout=300)
            return r.stdout

        yield {"dom": dom, **tiny_runs}


@pytest.mark.slow
@pytest.mark.browser
def test_ui_shows_the_model_under_the_experiment_and_in_the_registry(ui):
    client = ui["client"]
    merge = client.get_run(_stage(ui, "a", "merge")["run_id"])
    model_id = merge.data.tags["rlreg.logged_model"]
    exp_id = merge.info.experiment_id
    models_tab = ui["dom"](f"#/experiments/{exp_id}/models", "p1")
    assert model_id in models_tab  # the logged model's row links to its page
    registry = ui["dom"]("#/models/native-test-policy", "p2")
    assert "native-test-policy" in registry and "candidate" in registry
