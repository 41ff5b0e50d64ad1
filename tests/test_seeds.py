"""The top-level `seed` reaches train and eval (their seeds and cache keys), not convert or sft;
overrides change exactly the cache keys of the stages whose sections they touch."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.cache import stage_key
from registry.hashing import spec_hash
from registry.loader import load_spec

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "specs" / "demo-grpo.yaml"
STAGES = ("convert", "sft", "train", "merge", "eval")


def keys(*overrides: str, path: Path = DEMO) -> dict[str, str]:
    spec = load_spec(path, overrides=list(overrides)).spec
    # the same input digests for every spec: what differs is what the spec sections contribute
    return {stage: stage_key(stage, spec, {"convert.train": "d"})[0] for stage in STAGES}


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {s for s in STAGES if a[s] != b[s]}


def test_seed_fills_train_and_eval_seeds():
    spec = load_spec(DEMO, overrides=["seed=3"]).spec
    assert (spec.seed, spec.train.seed, spec.eval.seed) == (3, 3, 3)
    # convert, sft and the tiny base model keep their own seeds (shared across a study's seeds)
    base = load_spec(DEMO).spec
    assert spec.data.seed == base.data.seed and spec.sft.seed == base.sft.seed
    assert spec.model.tiny.seed == base.model.tiny.seed


def test_seed_changes_train_merge_eval_keys_not_convert_sft():
    assert changed(keys("seed=1"), keys("seed=2")) == {"train", "merge", "eval"}


def test_explicit_stage_seed_wins_over_the_spec_seed():
    a, b = keys("seed=1", "eval.seed=7"), keys("seed=2", "eval.seed=7")
    assert changed(a, b) == {"train", "merge"}
    assert load_spec(DEMO, overrides=["seed=1", "eval.seed=7"]).spec.eval.seed == 7


def test_override_changes_only_the_stages_that_read_it():
    base = keys()
    assert changed(base, keys("train.algorithm.kl_loss_coef=0.01")) == {"train", "merge"}
    assert changed(base, keys("eval.repeats=5")) == {"eval"}
    assert changed(base, keys("sft.lr=0.001")) == {"sft"}
    assert changed(base, keys("data.test_size=0.2")) == {"convert"}
    assert changed(base, keys("tags.note=lr-probe")) == set()
    assert changed(base, keys("train.algorithm.kl_loss_coef=0.001")) == set()  # same value, same keys


def test_default_seed_resolves_as_before_for_train():
    # demo-grpo sets no train.seed: it follows the default top-level seed 42, the old train default
    assert load_spec(DEMO).spec.train.seed == 42
    assert keys() == keys("seed=42")


def test_spec_hash_follows_seed():
    h = [spec_hash(load_spec(DEMO, overrides=[f"seed={s}"]).spec.model_dump(mode="json")) for s in (1, 2, 1)]
    assert h[0] != h[1] and h[0] == h[2]


@pytest.mark.parametrize("name", ["verl7", "verl8"])
def test_user_specs_seed_reaches_verl(name):
    from runners.verl.config import build_config, get_dotted

    spec = load_spec(ROOT / "specs" / f"{name}.yaml", overrides=["seed=3"]).spec
    cfg = build_config(spec.train, spec, model_path="/m", train_files="/t.parquet", val_files="/v.parquet",
                       checkpoint_dir="/c", env_vars={})
    assert get_dotted(cfg.config, "data.seed") == 3
    assert get_dotted(cfg.config, "actor_rollout_ref.rollout.seed") == 3


def test_builtin_prompt_order_follows_seed():
    from runners.train.loop import Plan

    plan = Plan(prompts=list(range(64)), steps_per_epoch=8, total_steps=8, filtered=0)
    order = {s: plan.batch(1, load_spec(DEMO, overrides=[f"seed={s}"]).spec.train) for s in (1, 2)}
    assert order[1] != order[2]
    assert order[1] == plan.batch(1, load_spec(DEMO, overrides=["seed=1"]).spec.train)


def test_eval_describe_shows_seed_range():
    from runners.eval import describe

    spec = load_spec(DEMO, overrides=["seed=5"]).spec
    assert f"seeds 5..{5 + spec.eval.repeats - 1}" in describe(spec.eval, spec)


def test_run_warns_when_a_stage_pins_its_seed(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from registry.cli import main

    spec = tmp_path / "pinned.yaml"
    spec.write_text("extends: demo-grpo\ntrain: {seed: 7}\n")
    monkeypatch.setenv("RLREG_SPECS_DIR", str(ROOT / "specs"))
    r = CliRunner().invoke(main, ["run", str(spec), "seed=3", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "note: train.seed is set (7), so `seed` does not reach train (~train.seed to follow it)" in r.output
    assert "eval.seed is set" not in r.output
    r = CliRunner().invoke(main, ["run", str(spec), "seed=3", "~train.seed", "--dry-run"])
    assert "note:" not in r.output and "set train.seed: 7 -> 3" in r.output
