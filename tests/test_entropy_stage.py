"""The entropy stage end to end: seed-schema files, per-round metrics, the figure, MLflow logging,
several models overlaid, and a real tiny transformers model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from entropy_scripted import ScriptedBackend

import runners.entropy as entropy_stage
from analysis.tool_entropy import round_stats
from registry.errors import UsageError
from runners.synth_data import make_record

ROOT = Path(__file__).resolve().parents[1]
FIND = '<think>need the city</think>\n\n<tool_call>\n{"name": "find_landmark", "arguments": {"name": "Colosseum"}}\n</tool_call>'
ENTROPY_BY_ROUND = {"a": [0.30, 0.70, 0.60], "b": [0.50, 0.55, 0.52]}


@pytest.fixture()
def dataset(tmp_path) -> Path:
    path = tmp_path / "conversations.jsonl"
    with path.open("w") as fh:
        for i in range(6):
            fh.write(json.dumps(make_record(7, i, tool_response_fraction=0.5)) + "\n")
    return path


def scripted_factory(ref, stage_spec, ctx):
    """Two tool rounds then an answer; round r's first-k entropy = ENTROPY_BY_ROUND[label][r]."""
    profile = ENTROPY_BY_ROUND.get(ref.label, ENTROPY_BY_ROUND["a"])

    def script(messages):
        rnd = sum(m["role"] == "tool" for m in messages)
        if rnd < 2:
            return FIND, [profile[rnd]] * stage_spec.k, "tool_call"
        return "Paris is sunny.", [profile[rnd]] * 3, "end"

    return ScriptedBackend(script)


def spec(dataset: Path, **entropy) -> dict:
    return {"entropy": {"dataset": str(dataset), "tools_config": "specs/tools/demo_tools.yaml", "k": 4,
                        "models": ["/models/a"], "labels": ["a"], **entropy}}


def test_outputs_follow_the_seed_schemas(make_ctx, dataset, null_tracker):
    ctx = make_ctx("entropy", spec(dataset, num_samples=5))
    result = entropy_stage.run(ctx.spec.entropy, ctx, backend_factory=scripted_factory)

    responses = [json.loads(line) for line in result.outputs["responses"].read_text().splitlines()]
    assert [r["sample_idx"] for r in responses] == [0, 1, 2, 3, 4]
    assert all({"prompt", "response", "sample_idx"} <= set(r) for r in responses)
    assert all(r["response"].endswith("Paris is sunny.") and r["num_rounds"] == 2 for r in responses)

    data = json.loads(result.outputs["entropy_data"].read_text())
    assert len(data) == 5 * 3
    for rec in data:
        assert {"sample_idx", "round", "entropy", "is_after_tool_call"} <= set(rec)
        assert rec["is_after_tool_call"] == (rec["round"] > 0)
        assert rec["entropy"] == pytest.approx(ENTROPY_BY_ROUND["a"][rec["round"]])
        assert rec["model"] == "a"
        if rec["round"] > 0:
            assert rec["tool_name"] == "find_landmark" and rec["parsed"] is True
            assert rec["tool_source"] in ("replay", "tools_config")
    # Records with a recorded find_landmark answer replay it; the others run the demo tool.
    sources = {rec["tool_source"] for rec in data if rec["round"] == 1}
    assert "tools_config" in sources
    assert result.outputs["figure"].read_bytes()[:4] == b"\x89PNG"


def test_metrics_figure_and_headline(make_ctx, dataset, null_tracker):
    ctx = make_ctx("entropy", spec(dataset, num_samples=4))
    result = entropy_stage.run(ctx.spec.entropy, ctx, backend_factory=scripted_factory)
    logged = {(k, step): v for k, v, step in null_tracker.metrics}
    for r, expected in enumerate(ENTROPY_BY_ROUND["a"]):
        assert logged[(f"entropy/round_{r}/mean", 0)] == pytest.approx(expected)
        assert logged[(f"entropy/round_{r}/std", 0)] == pytest.approx(0.0, abs=1e-12)
        assert logged[(f"entropy/round_{r}/count", 0)] == 4
        assert logged[("entropy/mean", r)] == pytest.approx(expected)  # the step series, step = round
    assert logged[("entropy/tool_calls", 0)] == 8
    assert result.metrics["entropy/round_0_mean"] == pytest.approx(0.30)
    assert result.metrics["entropy/after_tool_mean"] == pytest.approx(0.65)
    assert result.metrics["entropy/increase"] == pytest.approx(0.35)
    assert "entropy_increase.png" in null_tracker.artifacts
    assert null_tracker.tags["rlreg.entropy.estimator"] == "scripted"
    assert null_tracker.params["dataset"] == str(dataset) and null_tracker.params["profiled_models.a"] == "/models/a"


def test_round_metrics_per_record_type(make_ctx, tmp_path, null_tracker):
    # 3 chained records (a tool turn before the answer) and 3 single-call ones; the scripted model
    # has a higher round-1 entropy on the single-call records, so pooling would hide a difference.
    path = tmp_path / "mixed.jsonl"
    recs = [make_record(7, i, tool_response_fraction=1.0) for i in range(3)]
    recs += [make_record(7, i, tool_response_fraction=0.0, two_call_fraction=0.0) for i in range(3, 6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))

    def factory(ref, stage_spec, ctx):
        def script(messages):
            rnd = sum(m["role"] == "tool" for m in messages)
            chained = "Look up" in messages[1]["content"] or "weather at the" in messages[1]["content"]
            if rnd == 0:
                return FIND, [0.2] * stage_spec.k, "tool_call"
            return "ok", [0.4 if chained else 0.8] * 3, "end"
        return ScriptedBackend(script)

    ctx = make_ctx("entropy", spec(path, num_samples=6))
    result = entropy_stage.run(ctx.spec.entropy, ctx, backend_factory=factory)
    logged = {(k, step): v for k, v, step in null_tracker.metrics}
    assert logged[("entropy/type/with_tool_turn/round_1/mean", 0)] == pytest.approx(0.4)
    assert logged[("entropy/type/single_call/round_1/mean", 0)] == pytest.approx(0.8)
    assert logged[("entropy/type/single_call/round_0/count", 0)] == 3
    assert logged[("entropy/round_1/mean", 0)] == pytest.approx(0.6)  # the pooled value hides both
    data = json.loads(result.outputs["entropy_data"].read_text())
    assert sorted({r["record_type"] for r in data}) == ["single_call", "with_tool_turn"]


def test_two_models_give_two_labelled_profiles_in_one_figure(make_ctx, dataset, null_tracker):
    ctx = make_ctx("entropy", spec(dataset, num_samples=3, models=["/m/x", "/m/y"], labels=["a", "b"]))
    result = entropy_stage.run(ctx.spec.entropy, ctx, backend_factory=scripted_factory)
    data = json.loads(result.outputs["entropy_data"].read_text())
    for label in ("a", "b"):
        stats = round_stats(data, label)
        assert [stats[r].mean for r in sorted(stats)] == pytest.approx(ENTROPY_BY_ROUND[label])
    keys = {k for k, _, _ in null_tracker.metrics}
    assert {"entropy/a/round_1/mean", "entropy/b/round_1/mean", "entropy/a/mean", "entropy/b/mean"} <= keys
    assert result.metrics["entropy/b/increase"] == pytest.approx((0.55 + 0.52) / 2 - 0.50)
    fig = null_tracker.artifacts["entropy_increase.png"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a (n=3)", "b (n=3)"]


def test_models_resolve_refs_and_default_to_the_pipeline_model(make_ctx, dataset, tmp_path):
    from runners.entropy.models import resolve_models

    ctx = make_ctx("entropy", {"entropy": {"dataset": str(dataset), "models": ["@demo-egpo", "relative/dir"]}})
    ctx.resolve_ref = lambda ref: tmp_path / "resolved" / ref[1:]
    refs = resolve_models(ctx.spec.entropy, ctx)
    assert [(r.label, r.path) for r in refs] == [("demo-egpo", tmp_path / "resolved" / "demo-egpo"),
                                                ("dir", ROOT / "relative" / "dir")]
    own = make_ctx("entropy", {"entropy": {"dataset": str(dataset)}}, inputs={"sft.model": tmp_path / "sft",
                                                                           "merge.model": tmp_path / "merged"})
    (ref,) = resolve_models(own.spec.entropy, own)
    assert (ref.label, ref.path) == ("test", tmp_path / "merged")
    nothing = make_ctx("entropy", {"entropy": {"dataset": str(dataset)}})
    with pytest.raises(UsageError, match="no model to profile"):
        resolve_models(nothing.spec.entropy, nothing)


def test_missing_dataset_is_a_usage_error(make_ctx):
    ctx = make_ctx("entropy", {"entropy": {"models": ["/m"]}})
    with pytest.raises(UsageError, match="set entropy.dataset"):
        entropy_stage.run(ctx.spec.entropy, ctx, backend_factory=scripted_factory)


def test_spec_cross_field_rules():
    from pydantic import ValidationError

    from registry.spec.entropy import EntropySpec

    with pytest.raises(ValidationError, match="needs `tools_config`"):
        EntropySpec(tool_source="tools_config")
    with pytest.raises(ValidationError, match="one label per model"):
        EntropySpec(models=["a", "b"], labels=["x"])


def test_real_mlflow_run_holds_files_metrics_and_figure(make_ctx, dataset, tracker, tmp_path):
    ctx = make_ctx("entropy", spec(dataset, num_samples=3), tracker=tracker)
    result = entropy_stage.run(ctx.spec.entropy, ctx, backend_factory=scripted_factory)
    tracker.flush()
    client, run_id = tracker.client, tracker.run_id
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"responses.jsonl", "entropy_data.json", "entropy_increase.png"} <= artifacts
    run = client.get_run(run_id)
    assert run.data.metrics["entropy/round_1/mean"] == pytest.approx(0.70)
    assert run.data.metrics["entropy/round_2/count"] == 3
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "entropy/mean"))
    assert [s for s, _ in history] == [0, 1, 2]
    assert [v for _, v in history] == pytest.approx(ENTROPY_BY_ROUND["a"])
    assert run.data.tags["rlreg.entropy.estimator"] == "scripted"
    # The analysis side reads the same records back: from the stage run, its parent, or the spec name.
    from click.testing import CliRunner

    from analysis.tool_entropy import load_entropy_run, plot_entropy

    written = json.loads(result.outputs["entropy_data"].read_text())
    assert load_entropy_run(run_id) == written
    parent = client.create_run(run.info.experiment_id, tags={"rlreg.role": "parent", "rlreg.spec": "demo-x"})
    client.set_terminated(parent.info.run_id, "FINISHED")
    client.set_tag(run_id, "mlflow.parentRunId", parent.info.run_id)
    client.set_tag(run_id, "rlreg.stage", "entropy")
    assert load_entropy_run(parent.info.run_id) == written
    out = tmp_path / "from_run.png"
    cli = CliRunner().invoke(plot_entropy, ["--run", "demo-x", "-o", str(out)])
    assert cli.exit_code == 0, cli.output
    assert out.read_bytes()[:4] == b"\x89PNG" and f"{len(written)} records" in cli.output
    missing = CliRunner().invoke(plot_entropy, ["--run", "f" * 32, "-o", str(out)])
    assert missing.exit_code == 1 and "is not in the store" in missing.output


def test_real_tiny_model_through_the_builtin_backend(make_ctx, dataset, tiny_model_dir, null_tracker):
    """No scripted parts: load the tiny model, render with its chat template, decode with a KV cache."""
    ctx = make_ctx("entropy", {"entropy": {"dataset": str(dataset), "models": [str(tiny_model_dir)],
                                           "num_samples": 3, "batch_size": 2, "max_response_length": 24,
                                           "max_prompt_length": 4096, "k": 5, "device": "cpu",
                                           "cpu_threads": 1}})
    import torch

    threads = torch.get_num_threads()
    result = entropy_stage.run(ctx.spec.entropy, ctx)
    assert torch.get_num_threads() == threads  # cpu_threads is restored after the stage
    data = json.loads(result.outputs["entropy_data"].read_text())
    round0 = [r for r in data if r["round"] == 0]
    assert [r["sample_idx"] for r in round0] == [0, 1, 2]
    assert all(0.0 < r["entropy"] <= 1.0 and r["k_used"] == min(5, r["num_tokens"]) for r in data)
    # An untrained model is close to uniform over its vocabulary: normalised entropy near 1.
    assert sum(r["entropy"] for r in round0) / 3 > 0.8
    assert null_tracker.tags["rlreg.entropy.estimator"] == "exact_full_vocab"
    responses = [json.loads(x) for x in result.outputs["responses"].read_text().splitlines()]
    assert all(r["prompt"].startswith("<|im_start|>system") for r in responses)
    assert all(sum(m["role"] == "tool" for m in r["messages"]) == r["num_rounds"] for r in responses)
    assert math.isfinite(result.metrics["entropy/round_0_mean"])


@pytest.mark.slow
def test_pipeline_runs_convert_then_entropy_and_reuses_it(tmp_path, mlflow_uri, monkeypatch, tiny_model_dir):
    """`rlreg run` on a spec with convert + entropy: a tracked child run holding the files, the
    metrics and the figure; the second run is a cache hit."""
    import mlflow
    from click.testing import CliRunner

    from registry.cli import main

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "ent.yaml").write_text(f"""\
experiment: entropy-test
data:
  synthetic: {{num_records: 40, seed: 1, tool_response_fraction: 0.5}}
  max_samples: 40
  test_size: 0.2
pipeline: [convert, entropy]
entropy:
  models: ["{tiny_model_dir}"]
  labels: [tiny]
  tools_config: specs/tools/demo_tools.yaml
  num_samples: 4
  batch_size: 4
  max_prompt_length: 2048
  max_response_length: 16
  k: 4
  device: cpu
  cpu_threads: 1
""")
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "home"))
    outs = []
    for _ in range(2):
        r = CliRunner().invoke(main, ["run", "ent", "--json"])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout[r.stdout.index("{"):]))
    first, second = ({s["stage"]: s for s in o["stages"]} for o in outs)
    assert not first["entropy"]["cache_hit"] and second["entropy"]["cache_hit"]
    client = mlflow.MlflowClient(mlflow_uri)
    child = first["entropy"]["run_id"]
    assert {"responses.jsonl", "entropy_data.json", "entropy_increase.png"} <= {a.path for a in client.list_artifacts(child)}
    run = client.get_run(child)
    assert run.data.metrics["entropy/round_0/count"] == 4 and run.data.tags["rlreg.entropy.estimator"] == "exact_full_vocab"
    parent = client.get_run(outs[0]["parent_run_id"])
    assert 0.0 < parent.data.metrics["entropy/round_0_mean"] <= 1.0
    data = json.loads(Path(first["entropy"]["outputs"]["entropy_data"]).read_text())
    assert [r["sample_idx"] for r in data if r["round"] == 0] == [0, 1, 2, 3]


def test_dry_run_description_names_models_data_and_estimator():
    from registry.spec import Spec

    spec = Spec.model_validate({"name": "cmp", "entropy": {"models": ["@a", "@b"], "backend": "vllm", "k": 7,
                                                           "tools_config": "t.yaml"}})
    text = entropy_stage.describe(spec.entropy, spec)
    assert "models: @a, @b" in text and "first 7 tokens" in text and "vLLM top-20 logprob lower bound" in text
    assert "convert stage's test split" in text and "else t.yaml" in text
