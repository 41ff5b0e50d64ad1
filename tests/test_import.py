"""`rlreg import EXP_DIR`: hardtry-style experiment directories (tests/fixtures/hardtry_exps, written
for these tests in the shape of hardtry's exps/<name>/) become specs whose verl launch composes the
same config as the directory's Hydra files, key by key on every key verl reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from registry.cli import main
from registry.errors import UsageError
from registry.importer.hydra_files import flatten, read_experiment, script_assignment
from registry.importer.mapping import convert_section, deliberate_reason, eval_sections, reward_section

ROOT = Path(__file__).resolve().parents[1]
EXPS = ROOT / "tests" / "fixtures" / "hardtry_exps"
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"
needs_verl = pytest.mark.skipif(not VERL_PYTHON.exists(), reason="needs the verl venv (.venv-verl)")


# -- reading the directory (no verl) ------------------------------------------------------------
def test_entry_and_defaults_merge_in_order():
    exp = read_experiment(EXPS / "egpo_custom")
    assert exp.entry == "egpo"
    # egpo <- common <- data_common, each `_self_` last: the entry's keys win
    assert exp.user["algorithm"]["adv_estimator"] == "egpo"
    assert exp.user["data"]["train_batch_size"] == 16 and exp.user["data"]["seed"] == 3
    assert set(exp.files) == {"convert_messages_to_verl_config"}  # the Hydra files are not "other" files
    lora = read_experiment(EXPS / "grpo_lora")
    assert lora.entry == "train"  # CONFIG_NAME="train" in scripts/train_local.sh
    assert flatten(lora.user)["actor_rollout_ref.model.lora_rank"] == 32
    assert script_assignment(lora.scripts, "TARGET_DIR") == "/shared/models/tiny-grpo-lora"


def test_directory_errors(tmp_path):
    with pytest.raises(UsageError, match="no configs/"):
        read_experiment(tmp_path)
    (tmp_path / "configs").mkdir()
    for name in ("a", "b"):
        (tmp_path / "configs" / f"{name}.yaml").write_text("defaults:\n  - ppo_trainer\n  - _self_\n")
    with pytest.raises(UsageError, match=r"expected one Hydra entry config .*\['a', 'b'\]"):
        read_experiment(tmp_path)
    (tmp_path / "configs" / "b.yaml").write_text("defaults:\n  - ppo_trainer\n  - missing\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "train_local.sh").write_text('CONFIG_NAME="b"\n')
    with pytest.raises(UsageError, match="names 'missing', but missing.yaml is not there"):
        read_experiment(tmp_path)


def test_side_configs_map_to_data_eval_and_reward():
    data, unmapped = convert_section({"input_path": "/d/x.json", "max_samples": 0, "num_proc": 8})
    # their converter's defaults: first records, no shuffle, data_source sloop; max_samples <= 0 keeps all
    assert data == {"split": "hardtry", "shuffle": False, "data_source": "sloop", "max_samples": None, "source": "/d/x.json"}
    assert unmapped == ["convert config: num_proc = 8 (rlreg converts in one streaming process)"]
    section, unmapped = eval_sections({"model_name": "m", "num_runs": 3, "threads_per_run": 4},
                                      {"served_model_name": "m", "max_num_seqs": 8, "port": 9, "host": "0.0.0.0"})
    assert section == {"backend": "bfcl", "repeats": 3,
                       "bfcl": {"model_name": "m", "num_threads": 4, "port": 9, "extra_vllm_args": ["--max-num-seqs", "8"]}}
    assert unmapped == ["vllm config: host = '0.0.0.0' (rlreg's vLLM binds 127.0.0.1)"]
    assert reward_section("/x/src/hardtry/rl/reward_fn_egpo.py", "compute_score") == ({"function": "think_tool_call"}, None)
    assert reward_section("/x/reward_fn.py", None)[0] == {"function": "graded_tool_call"}
    assert reward_section("/x/mine.py", "f")[0] == {"path": "/x/mine.py", "name": "f"}
    assert deliberate_reason("reward.custom_reward_function.path") and not deliberate_reason("data.seed")


# -- import, validate, compose (verl) -----------------------------------------------------------
@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Both fixture directories imported through the CLI into a specs dir, plus verl's composition
    of the written specs' launches (one verl process for both)."""
    from registry.importer.cli import import_to_doc
    from registry.loader import load_spec
    from runners.verl.compose import check_request, composed_or_raise, run_checks
    from runners.verl.config import build_config

    specs = tmp_path_factory.mktemp("specs")
    out = {}
    requests = []
    for name in ("grpo_lora", "egpo_custom"):
        theirs, _ = import_to_doc(EXPS / name, output=specs / f"{name}.yaml")
        spec = load_spec(specs / f"{name}.yaml").spec  # the written file validates
        launch = build_config(spec.train, spec, model_path=spec.model.path, train_files="<train>", val_files="<test>",
                              checkpoint_dir=spec.train.verl.checkpoint_dir or "<ckpt>", env_vars={})
        requests.append(check_request(launch, tmp_path_factory.mktemp(f"verl-{name}"), check_plugin=False))
        out[name] = {"unmapped": theirs.unmapped, "spec": spec, "theirs": theirs, "launch": launch}
    for (name, entry), result in zip(out.items(), run_checks(VERL_PYTHON, requests)):
        if not result["ok"] and result["error"]["step"] == "validate" and "vllm version" in result["error"]["message"]:
            entry["ours"] = result["config"]  # composed; only the rollout check needs vLLM installed (LoRA)
        else:
            entry["ours"] = composed_or_raise(result, entry["launch"], name)
    out["specs_dir"] = specs
    return out


@needs_verl
@pytest.mark.slow
@pytest.mark.parametrize("name", ["grpo_lora", "egpo_custom"])
def test_import_composes_the_same_verl_config_key_by_key(imported, name):
    from registry.importer import differing_keys

    entry = imported[name]
    theirs = entry["theirs"]
    ours, composed = flatten(entry["ours"]), flatten(theirs.composed)
    compared = [k for k in set(flatten(theirs.base)) if not deliberate_reason(k)]
    assert len(compared) > 400  # every key verl reads, not a hand-picked few
    assert differing_keys(ours, composed, theirs.base) == {}
    # and the deliberate ones are where rlreg puts them
    assert entry["ours"]["reward"]["custom_reward_function"]["path"]
    assert composed.get("reward.custom_reward_function.path") is None or name == "egpo_custom"


@needs_verl
@pytest.mark.slow
def test_import_maps_what_it_can_and_reports_the_rest(imported):
    lora, egpo = imported["grpo_lora"], imported["egpo_custom"]
    spec = lora["spec"]
    assert spec.reward.function == "graded_tool_call"  # their reward_fn.py
    assert spec.data.split == "hardtry" and spec.data.shuffle is True and spec.data.max_samples == 200
    assert spec.train.optimizer.lr == 3e-6 and spec.train.rollout.n == 8 and spec.train.algorithm.kl_loss_type == "kl"
    section = spec.train.verl.lora  # LoRA as the spec's section, not the escape hatch
    assert (section.rank, section.alpha, section.target_modules) == (32, 64, "all-linear")
    assert not any("lora" in k for k in spec.train.verl.verl_overrides)
    assert imported["egpo_custom"]["spec"].train.verl.lora is None, "no lora_rank: full training"
    assert spec.train.verl.max_actor_ckpt_to_keep is None  # max_checkpoint_limit is not a verl key
    assert spec.train.verl.checkpoint_dir == "/shared/ckpt/grpo_lora"  # trainer.default_local_dir
    assert spec.eval.bfcl.model_name == "Qwen/Qwen3-1.7B-FC" and spec.eval.repeats == 3
    unmapped = "\n".join(lora["unmapped"])
    for key in ("trainer.max_checkpoint_limit", "actor_rollout_ref.num_workers", "ray_init_kwargs", "TARGET_DIR"):
        assert key in unmapped
    e = egpo["spec"]
    assert (e.train.algorithm.egpo_lambda, e.train.algorithm.egpo_alpha, e.train.algorithm.entropy_scope) == (0.25, 1.5, "response")
    assert e.reward.path == "/shared/rewards/partial_credit.py" and e.reward.name == "score_partial"
    assert e.reward.kwargs == {"weight": 0.5}


@needs_verl
@pytest.mark.slow
def test_import_with_base_writes_only_the_difference(imported, monkeypatch):
    specs = imported["specs_dir"]
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    out = specs / "grpo_lora_child.yaml"
    r = CliRunner().invoke(main, ["import", str(EXPS / "grpo_lora"), "-o", str(out), "--base", "grpo_lora"])
    assert r.exit_code == 0, r.output
    assert "not mapped: trainer.max_checkpoint_limit = 3: not a verl 0.9.1 key" in r.output
    doc = yaml.safe_load(out.read_text())
    assert doc["extends"] == "grpo_lora"
    assert set(doc) <= {"extends", "name", "description", "tags"}
    # a base that sets verl keys the experiment does not cannot be extended (extends never removes a key)
    r = CliRunner().invoke(main, ["import", str(EXPS / "egpo_custom"), "--base", "grpo_lora"])
    assert r.exit_code == 2 and "the base sets verl keys the experiment does not" in r.output


def test_missing_verl_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["import", str(EXPS / "grpo_lora"), "--verl-python", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "verl (for composing the experiment's Hydra config" in r.output


def test_fixture_dirs_are_self_made():
    # the fixtures are written for rlreg (hardtry's shape, not their files): no /dfs paths
    text = "".join(p.read_text() for p in EXPS.rglob("*") if p.is_file())
    assert "/dfs/" not in text and shutil.which("bash") is not None
