"""`--stages` reuses cached earlier stages (and says which) or refuses clearly; `--force` alone
recomputes every stage from scratch, `--force STAGE,…` only those (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from registry.cli import main

SPEC = """\
experiment: selection-test
data:
  synthetic: {num_records: 30, seed: 1}
  max_samples: 30
  test_size: 0.2
model:
  tiny: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 300}
sft: {max_steps: 2, warmup_steps: 1}
"""


@pytest.fixture()
def env(tmp_path, mlflow_uri, monkeypatch):
    """A convert → sft spec whose sft runner is a fast stand-in that records what it saw."""
    import runners.sft
    from registry.context import StageResult

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "two.yaml").write_text(SPEC)
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "home"))
    calls = []

    def fake_sft(stage_spec, ctx):
        marker = ctx.work_dir / "resume-state"
        calls.append({"train": ctx.input("convert.train"), "had_resume_state": marker.exists()})
        marker.write_text("checkpoint")
        (ctx.out_dir / "model").mkdir()
        (ctx.out_dir / "model" / "weights.bin").write_bytes(Path(ctx.input("convert.train")).read_bytes()[:64])
        return StageResult(outputs={"model": ctx.out_dir / "model"})

    monkeypatch.setattr(runners.sft, "run", fake_sft)
    return {"client": mlflow.MlflowClient(mlflow_uri), "calls": calls}


def rlreg(*args):
    return CliRunner().invoke(main, ["run", *args])


def summary(r) -> dict:
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def hits(s: dict) -> dict[str, str | None]:
    return {x["stage"]: x["cache_hit"] for x in s["stages"]}


def test_stages_subset_without_a_cached_earlier_stage_is_a_clear_usage_error(env):
    r = rlreg("two", "--stages", "sft")
    assert r.exit_code == 2, r.output
    assert "stage 'convert' is not selected and has no cached result" in r.output
    assert "rlreg run two --stages convert" in r.output and "Traceback" not in r.output
    assert env["client"].get_experiment_by_name("selection-test") is None  # no run was started
    assert env["calls"] == []


def test_stages_subset_reuses_cached_earlier_stages_and_says_which(env):
    dry = rlreg("two", "--stages", "sft", "--dry-run")
    assert dry.exit_code == 0 and "not selected, taken from the cache: convert" in dry.output
    full = summary(rlreg("two", "--json"))
    convert_run = full["stages"][0]["run_id"]
    r = rlreg("two", "--stages", "sft", "--json")
    sub = summary(r)
    assert f"convert: not selected, reusing cached run {convert_run}" in r.output
    assert hits(sub) == {"convert": convert_run, "sft": full["stages"][1]["run_id"]}
    assert len(env["calls"]) == 1  # the second sft was a cache hit too

    forced = summary(rlreg("two", "--stages", "sft", "--force", "--json"))
    assert hits(forced) == {"convert": convert_run, "sft": None}  # --force applies to the selection
    assert env["calls"][-1]["train"] == Path(full["stages"][0]["outputs"]["train"])


def test_force_names_stages_and_recomputes_them_from_scratch(env):
    full = summary(rlreg("two", "--json"))
    assert env["calls"][-1]["had_resume_state"] is False
    sft_only = summary(rlreg("two", "--force", "sft", "--json"))
    assert hits(sft_only) == {"convert": full["stages"][0]["run_id"], "sft": None}
    assert env["calls"][-1]["had_resume_state"] is False  # the work dir was discarded first
    both = summary(rlreg("two", "--force", "convert,sft", "--json"))
    assert hits(both) == {"convert": None, "sft": None}
    # a bare --force still means every stage, also before the spec name
    assert hits(summary(CliRunner().invoke(main, ["run", "--force", "two", "--json"]))) == {"convert": None, "sft": None}
    assert hits(summary(rlreg("two", "--force", "--json"))) == {"convert": None, "sft": None}


@pytest.mark.parametrize("args, message", [
    (["--force", "entropy"], "--force entropy: not among the stages this run computes (convert, sft)"),
    (["--stages", "sft", "--force", "convert"], "--force convert: not among the stages this run computes (sft)"),
    (["--force", "bogus", "--dry-run"], "--force bogus: not among the stages this run computes"),
])
def test_force_with_a_stage_this_run_does_not_compute_is_refused(env, args, message):
    r = rlreg("two", *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert env["calls"] == []


def test_force_values():
    from registry.selection import FORCE_ALL, is_stage_list, parse_force

    assert parse_force(None) is False and parse_force(FORCE_ALL) is True
    assert parse_force("train, eval") == ["train", "eval"]
    assert is_stage_list("train,eval") and not is_stage_list("demo-grpo") and not is_stage_list("")
    from registry.selection import reused_stages

    planned = ["convert", "sft", "train", "merge", "eval"]
    assert reused_stages(planned, ["train", "eval"]) == ["convert", "sft", "merge"]
    assert reused_stages(planned, None) == [] and reused_stages(planned, ["convert"]) == []
