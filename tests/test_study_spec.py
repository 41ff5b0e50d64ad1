"""Study files: the model and its errors, cell expansion and ids, per-cell specs and seeds, the
CLI around them (validate, list, schema, run refusing a study) and the dry-run plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from registry.cli import main
from registry.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]

SPEC_A = """\
experiment: study-spec-test
data: {synthetic: {num_records: 30, seed: 1}, test_size: 0.2}
model: {tiny: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 400}}
sft: {max_steps: 2, batch_size: 4, warmup_steps: 1, eval_every: 2, format_samples: 0}
train: {total_training_steps: 1, train_batch_size: 2, ppo_mini_batch_size: 2, rollout: {n: 2}}
eval: {repeats: 1, max_samples: 2}
"""


@pytest.fixture()
def specs(tmp_path, monkeypatch, mlflow_uri):
    d = tmp_path / "specs"
    d.mkdir()
    (d / "a.yaml").write_text(SPEC_A)
    (d / "b.yaml").write_text("extends: a\ntrain: {algorithm: {adv_estimator: egpo}}\n")
    (d / "conv.yaml").write_text("experiment: study-spec-test\ndata: {synthetic: {num_records: 20, seed: 2}, test_size: 0.25}\n")
    monkeypatch.setenv("RLREG_SPECS_DIR", str(d))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return d


def write_study(d: Path, name: str = "s", **fields) -> Path:
    body = {"kind": "study", "arms": {"grpo": {"spec": "a"}, "egpo": {"spec": "b"}}, "seeds": [1, 2, 3], **fields}
    path = d / f"study-{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def rlreg(*args):
    return CliRunner().invoke(main, list(args))


def test_cells_are_arms_times_grid_times_seeds_with_stable_ids(specs):
    from registry.study.cells import expand
    from registry.study.load import load_study

    write_study(specs, grid={"train.optimizer.lr": [1e-6, 0.0005], "eval.temperature": [0.7]})
    loaded = load_study("s")
    cells = expand(loaded)
    assert len(cells) == 2 * 2 * 1 * 3
    ids = [c.id for c in cells]
    assert ids[0] == "grpo/train.optimizer.lr=1.0e-06/eval.temperature=0.7/seed=1"
    assert ids[-1] == "egpo/train.optimizer.lr=0.0005/eval.temperature=0.7/seed=3"
    assert len(set(ids)) == len(ids) and ids == [c.id for c in expand(load_study("s"))]
    c = cells[0]
    assert c.overrides == ["train.optimizer.lr=1.0e-06", "eval.temperature=0.7", "seed=1"]
    assert json.loads(c.tags("eval/accuracy")["rlreg.grid"]) == {"eval.temperature": 0.7, "train.optimizer.lr": 1e-6}
    assert [x.arm for x in expand(loaded, ["egpo"])] == ["egpo"] * 6
    with pytest.raises(UsageError, match="no such arm"):
        expand(loaded, ["ppo"])


@pytest.mark.parametrize("value", [1e-6, 0.0005, 3, True, None, "think", "1.5", "yes", "a b", [1, 2]])
def test_grid_values_round_trip_through_override_syntax(value):
    from registry.study.cells import format_value

    assert yaml.safe_load(format_value(value)) == value


def test_cell_spec_carries_seed_into_every_per_seed_stage(specs):
    from registry.study.cells import expand, load_cell
    from registry.study.load import load_study

    # an explicit train.seed would ignore the top-level seed: the cell sets it too
    (specs / "c.yaml").write_text("extends: a\ntrain: {seed: 7}\n")
    write_study(specs, arms={"c": {"spec": "c", "overrides": ["train.rollout.n=4"]}}, seeds=[2])
    loaded = load_study("s")
    cell = expand(loaded)[0]
    spec = load_cell(cell, loaded).spec
    shared = load_cell(cell, loaded, shared=True).spec
    assert (spec.seed, spec.train.seed, spec.eval.seed, spec.train.rollout.n) == (2, 2, 2, 4)
    assert spec.sft.seed == shared.sft.seed == 0 and shared.train.seed == 7  # sft is shared by default
    write_study(specs, arms={"c": {"spec": "c"}}, seeds=[2], shared_stages=["convert"])
    loaded = load_study("s")
    assert load_cell(expand(loaded)[0], loaded).spec.sft.seed == 2  # not shared: per seed


def test_study_errors_name_file_field_and_fix(specs):
    (specs / "study-bad.yaml").write_text("kind: study\narms: {g: {spec: a}}\nseed: [1]\n")
    r = rlreg("validate", "bad")
    assert r.exit_code == 2
    assert "study-bad.yaml: seed: unknown field (did you mean seeds?)" in r.output
    assert "study-bad.yaml: seeds: required field missing" in r.output
    assert "Traceback" not in r.output
    write_study(specs, "dup", seeds=[1, 1])
    assert "seeds repeat a value" in rlreg("validate", "dup").output
    write_study(specs, "noarms", arms={})
    assert "at least one arm" in rlreg("validate", "noarms").output
    write_study(specs, "gridseed", grid={"seed": [1, 2]})
    assert "list seeds under `seeds`" in rlreg("validate", "gridseed").output


def test_bad_arm_override_names_the_study_cell_and_key(specs):
    write_study(specs, "typo", arms={"g": {"spec": "a", "overrides": ["train.algorithm.egpo_lamda=0.2"]}})
    r = rlreg("validate", "typo")
    assert r.exit_code == 2
    line = next(ln for ln in r.output.splitlines() if "egpo_lamda" in ln)
    assert "study-typo.yaml: cell g/seed=1:" in line and "did you mean egpo_lambda" in line
    write_study(specs, "nospec", arms={"g": {"spec": "nothere"}})
    r = rlreg("validate", "nospec")
    assert r.exit_code == 2 and "no spec named 'nothere'" in r.output


def test_validate_list_and_run_tell_studies_from_specs(specs):
    write_study(specs)
    r = rlreg("validate")
    assert r.exit_code == 0, r.output
    assert "ok  specs/study-s.yaml  (study: 2 arms × 3 seeds = 6 cells)" in r.output
    assert "ok  specs/a.yaml" in r.output
    rows = json.loads(rlreg("list", "--json").output)
    study = [x for x in rows if x.get("kind") == "study"]
    assert [x["name"] for x in study] == ["s"] and study[0]["valid"]
    assert "study-s" not in {x["name"] for x in rows if x.get("kind") != "study"}
    assert "study: 2 arms × 3 seeds = 6 cells (rlreg study run s)" in rlreg("list").output
    r = rlreg("run", "s")
    assert r.exit_code == 2 and "is a study, not a spec (run it with `rlreg study run s`)" in r.output
    r = rlreg("study", "run", "nope")
    assert r.exit_code == 2 and "no study named 'nope'" in r.output


def test_study_schema_file_is_current():
    from registry.study.model import study_json_schema

    shipped = json.loads((ROOT / "docs" / "study.schema.json").read_text())
    assert shipped == study_json_schema(), "run: rlreg schema --study -o docs/study.schema.json"
    assert all(p.get("description") for p in shipped["properties"].values())


def test_dry_run_marks_hits_and_shared_stages(specs):
    write_study(specs, arms={"x": {"spec": "conv"}, "y": {"spec": "conv", "overrides": ["data.test_size=0.5"]}},
                seeds=[1, 2], shared_stages=["convert"])
    r = rlreg("study", "run", "s", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout[r.stdout.index("["):])
    assert [row["cell"] for row in rows] == ["x/seed=1", "x/seed=2", "y/seed=1", "y/seed=2"]
    marks = [row["stages"][0]["status"] for row in rows]
    assert marks == ["runs", "shared", "runs", "shared"]
    assert rows[1]["stages"][0]["shared_with"] == "x/seed=1"
    # the plan of a single spec: a run makes its convert a hit
    out = rlreg("run", "conv", "--dry-run", "--json").stdout
    plan = json.loads(out[out.index("{"):])
    assert plan["stages"][0]["status"] == "runs" and plan["stages"][0]["cache_key"]
    done = rlreg("run", "conv", "--json")
    assert done.exit_code == 0, done.output
    run_id = json.loads(done.stdout[done.stdout.index("{"):])["stages"][0]["run_id"]
    r = rlreg("run", "conv", "--dry-run")
    assert f"cache hit (run {run_id})" in r.output
    r = rlreg("study", "run", "s", "--dry-run")
    assert f"convert   cache hit (run {run_id})" in r.output  # x cells = conv with seed only


def test_ray_executor_needs_the_extra_and_refuses_cells_no_node_holds(specs, monkeypatch):
    import sys
    import types

    from registry.study.cells import expand
    from registry.study.executors import CellJob
    from registry.study.load import load_study
    from registry.study.ray_executor import RayExecutor
    from registry.study.runner import resources

    write_study(specs)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    r = rlreg("study", "run", "s", "--executor", "ray")
    assert r.exit_code == 1 and 'pip install -e ".[ray]"' in r.output and "Traceback" not in r.output
    verl = load_study("s")  # resources of a verl cell: nnodes × n_gpus_per_node GPUs
    from registry.loader import load_spec

    assert resources(load_spec(ROOT / "specs" / "verl8.yaml").spec) == (1.0, 4.0)
    assert resources(load_spec(specs / "a.yaml").spec) == (1.0, 0.0)
    cell = expand(verl)[0]
    fake = types.SimpleNamespace(nodes=lambda: [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}])
    job = CellJob(cell, [], {}, ROOT, ROOT / "x.log", num_cpus=1.0, num_gpus=4.0)
    with pytest.raises(UsageError, match="needs 1 CPUs and 4 GPUs on one node; the largest node .* 2 GPUs"):
        RayExecutor._check_fits(fake, [job])
    RayExecutor._check_fits(fake, [CellJob(cell, [], {}, ROOT, ROOT / "x.log", 1.0, 2.0)])  # fits: no error
