"""specs/verl7.yaml and specs/verl8.yaml compose, in verl 0.9.1, the same config as hardtry's own
exps/verl7 and exps/verl8 Hydra files on every key verl reads (except the keys rlreg sets on purpose,
docs/verl.md § hardtry's runs). tests/fixtures/hardtry_verl_composed.json holds their composition
(made with registry/importer/_compose.py from their configs), so their files are not needed here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.importer import same_value
from registry.importer.hydra_files import flatten
from registry.loader import load_spec
from runners.verl.config import build_config

ROOT = Path(__file__).resolve().parents[1]
THEIRS = json.loads((ROOT / "tests" / "fixtures" / "hardtry_verl_composed.json").read_text())
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"


def _launch(name: str):
    spec = load_spec(name).spec
    return build_config(spec.train, spec, model_path=THEIRS[name]["actor_rollout_ref.model.path"],
                        train_files="<train>", val_files="<test>", checkpoint_dir="<ckpt>", env_vars={})


def test_verl7_pins_what_hardtry_pins():
    launch = _launch("verl7")
    assert "data.val_batch_size=64" in launch.overrides and "data.seed=null" in launch.overrides
    assert "trainer.critic_warmup=0.01" in launch.overrides
    assert launch.config["trainer"]["max_actor_ckpt_to_keep"] is None  # hardtry kept every checkpoint
    assert THEIRS["verl7"]["trainer.max_actor_ckpt_to_keep"] is None and THEIRS["verl7"]["data.seed"] is None
    spec = load_spec("verl7").spec
    assert (spec.data.split, spec.data.shuffle, spec.data.max_samples) == ("hardtry", False, 1000)


@pytest.mark.slow
@pytest.mark.skipif(not VERL_PYTHON.exists(), reason="needs the verl venv (.venv-verl)")
def test_verl7_and_verl8_compose_like_hardtrys_hydra_files(tmp_path):
    from runners.verl.compose import check_request, composed_or_raise, run_checks

    names = ["verl7", "verl8"]
    launches = [_launch(n) for n in names]
    requests = [check_request(launch, tmp_path / n, check_plugin=False) for n, launch in zip(names, launches)]
    for name, launch, result in zip(names, launches, run_checks(VERL_PYTHON, requests)):
        ours = flatten(composed_or_raise(result, launch, name))
        theirs = THEIRS[name]
        assert len(theirs) > 900
        # every key of verl's ppo_trainer (their value or verl's default), derived ones included
        differ = {k: (ours.get(k, "<absent>"), v) for k, v in theirs.items() if not same_value(ours.get(k, "<absent>"), v)}
        assert differ == {}, name
