"""The generate stage end to end on tiny models: two different models sharing one tokenizer (a
perturbed copy), each α method, identical models, tokenizer mismatch, crash + resume, MLflow."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from registry.errors import UsageError
from runners.generate import run
from runners.generate.writer import read_jsonl
from runners.synth_data import generate_records

SEED_KEYS = {"sample_idx", "alpha_mean", "alpha_std", "ess_ratio_mean", "ess_ratio_std", "kl_theta_mean", "kl_t_mean"}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture()
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in list(generate_records(7, seed=5))))
    return path


def _spec(model_dir, dataset, **generate):
    gen = {"dataset": str(dataset), "batch_size": 3, "max_new_tokens": 6, "perturb_target": {"seed": 1, "scale": 2.0},
           "temperature": 0.5, **generate}
    return {"model": {"path": str(model_dir), "device": "cpu"}, "generate": gen}


def _run(make_ctx, spec, name="a", tracker=None):
    ctx = make_ctx("generate", spec, name=name, tracker=tracker)
    return run(ctx.spec.generate, ctx), ctx


def test_kl_symmetry_writes_messages_and_balanced_diagnostics(make_ctx, tiny_model_dir, prompts_file):
    result, ctx = _run(make_ctx, _spec(tiny_model_dir, prompts_file, num_samples=5))
    rows = read_jsonl(result.outputs["data"])
    assert [r["sample_idx"] for r in rows] == [0, 1, 2, 3, 4]
    first = rows[0]
    assert first["messages"][-1]["role"] == "assistant" and first["messages"][-2]["role"] == "user"
    assert "reference_response" in first and "original_messages" in first and "tools" in first
    diags = read_jsonl(result.outputs["diagnostics"])
    assert SEED_KEYS <= set(diags[0])
    for d in diags:
        toks = d["tokens"]
        assert len(toks["alpha"]) == d["num_tokens"] + int(d["stopped_on_eos"])
        assert all(0 <= a <= 1 for a in toks["alpha"])
        for kl_theta, kl_t in zip(toks["kl_theta"], toks["kl_t"]):  # the Chernoff point, per token
            assert kl_theta > 1e-4 and abs(kl_theta - kl_t) <= 1e-3 * kl_theta + 1e-6
    assert result.metrics["generate/samples"] == 5
    assert 0 < result.metrics["generate/kl_theta_mean"]
    assert result.outputs["data"].parent == ctx.out_dir


@pytest.mark.parametrize("method", ["fixed", "entropy"])
def test_fixed_and_entropy_alpha(make_ctx, tiny_model_dir, prompts_file, method):
    result, _ = _run(make_ctx, _spec(tiny_model_dir, prompts_file, num_samples=3, alpha_method=method, fixed_alpha=0.25))
    alphas = [a for d in read_jsonl(result.outputs["diagnostics"]) for a in d["tokens"]["alpha"]]
    if method == "fixed":
        assert set(alphas) == {0.25}
    else:
        assert all(0 < a < 1 for a in alphas) and len(set(alphas)) > 1


def test_same_model_runs_once_and_q_is_pi(make_ctx, tiny_model_dir, prompts_file):
    spec = _spec(tiny_model_dir, prompts_file, num_samples=2, model_t=str(tiny_model_dir), perturb_target=None)
    result, _ = _run(make_ctx, spec)
    assert result.info["model_t"] == "same as model_theta"
    for d in read_jsonl(result.outputs["diagnostics"]):
        assert d["kl_theta_mean"] == 0 and d["kl_t_mean"] == 0 and d["ess_ratio_mean"] == 1


def test_models_with_different_tokenizers_are_refused(make_ctx, tiny_model_dir, prompts_file, tmp_path):
    from transformers import AutoTokenizer

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra_token>"])
    tok.save_pretrained(other)
    spec = _spec(tiny_model_dir, prompts_file, num_samples=1, model_t=str(other), perturb_target=None)
    with pytest.raises(UsageError, match="do not share a tokenizer.*only in model_theta|do not share a tokenizer"):
        _run(make_ctx, spec)


def test_crash_then_rerun_resumes_without_duplicates_or_gaps(make_ctx, tiny_model_dir, prompts_file, monkeypatch):
    import runners.generate as gen

    spec = _spec(tiny_model_dir, prompts_file, batch_size=2, start_idx=1)
    reference, _ = _run(make_ctx, spec, name="uninterrupted")

    real_batch, calls = gen._generate_batch, []

    def crash_on_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(gen, "_generate_batch", crash_on_third_batch)
    ctx = make_ctx("generate", spec, name="crashy")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(ctx.spec.generate, ctx)
    partial = read_jsonl(ctx.work_dir / gen.DATA_FILE)
    assert [r["sample_idx"] for r in partial] == [1, 2, 3, 4]  # two complete batches survived
    monkeypatch.setattr(gen, "_generate_batch", real_batch)
    result = run(ctx.spec.generate, ctx)  # the same spec, the same work dir
    rows = read_jsonl(result.outputs["data"])
    assert [r["sample_idx"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert result.metrics["generate/resumed_samples"] == 4 and result.metrics["generate/new_samples"] == 2
    # batches keep their boundaries and seeds, so the resumed file equals an uninterrupted run
    assert rows == read_jsonl(reference.outputs["data"])
    assert [d["sample_idx"] for d in read_jsonl(result.outputs["diagnostics"])] == [1, 2, 3, 4, 5, 6]


def test_logs_files_metrics_and_figure_to_mlflow(make_ctx, tiny_model_dir, prompts_file, tracker):
    result, _ = _run(make_ctx, _spec(tiny_model_dir, prompts_file, num_samples=3), tracker=tracker)
    tracker.flush()
    client, run_id = tracker.client, tracker.run_id
    names = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "generate")}
    assert {"generate/generated.jsonl", "generate/generated.diagnostics.jsonl",
            "generate_histograms.png", "generate_examples.json"} <= names
    data = client.get_run(run_id).data
    assert data.metrics["generate/samples"] == 3
    assert "generate/batch/alpha_mean" in data.metrics
    assert data.params["resolved.dataset"].endswith("prompts.jsonl")
    assert result.metrics["generate/alpha_mean"] == pytest.approx(data.metrics["generate/alpha_mean"])
