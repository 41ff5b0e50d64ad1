"""spec -> verl ppo_trainer mapping (no verl needed): verl7/verl8 carry the user's real values
(domain.md §1, hardtry exps/verl7|8 verl_common_config*.yaml), overrides keep their meaning,
bad override keys are spec errors, and the dry-run description shows the launch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from registry.errors import SpecError
from registry.loader import load_spec
from registry.spec import Spec
from runners.verl.config import (
    CONFIG_NAME,
    REWARD_FILE,
    VERL_SEARCHPATH,
    build_config,
    get_dotted,
    hydra_value,
    override_list,
)

ROOT = Path(__file__).resolve().parents[1]

# The user's verl7 values (shared with verl8), as verl keys.
SHARED = {
    "actor_rollout_ref.model.path": "/models/Qwen3-4B-Thinking-2507",
    "actor_rollout_ref.model.trust_remote_code": True,
    "actor_rollout_ref.model.use_remove_padding": True,
    "actor_rollout_ref.model.enable_gradient_checkpointing": True,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.weight_decay": 1e-4,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 32,
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 1,
    "actor_rollout_ref.actor.use_kl_loss": True,
    "actor_rollout_ref.actor.kl_loss_coef": 0.001,
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.actor.entropy_coeff": 0.0,
    "actor_rollout_ref.actor.clip_ratio_low": 0.20,
    "actor_rollout_ref.actor.clip_ratio_high": 0.28,
    "actor_rollout_ref.actor.strategy": "fsdp",
    "actor_rollout_ref.actor.fsdp_config.param_offload": True,
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload": True,
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": 1,
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.n": 4,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.6,
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": 1,
    "actor_rollout_ref.rollout.dtype": "bfloat16",
    "algorithm.norm_adv_by_std_in_grpo": True,
    "algorithm.use_kl_in_reward": False,
    "data.train_files": "/data/train.parquet",
    "data.val_files": "/data/test.parquet",
    "data.train_batch_size": 64,
    "data.max_prompt_length": 9216,
    "data.max_response_length": 1024,
    "data.truncation": "left",
    "data.filter_overlong_prompts": True,
    "data.return_raw_chat": True,
    "trainer.n_gpus_per_node": 4,
    "trainer.nnodes": 1,
    "trainer.total_epochs": 1,
    "trainer.save_freq": 50,
    "trainer.test_freq": 50,
    "trainer.val_before_train": True,
    "trainer.resume_mode": "auto",
    "trainer.logger": ["console", "mlflow"],
    "reward.custom_reward_function.path": str(REWARD_FILE),
    "reward.custom_reward_function.name": "compute_score",
    "reward.custom_reward_function.reward_kwargs.reward_function": "think_tool_call",
}


def _build(spec: Spec, **kw):
    args = {
        "model_path": "/models/Qwen3-4B-Thinking-2507",
        "train_files": "/data/train.parquet",
        "val_files": "/data/test.parquet",
        "checkpoint_dir": "/ckpt",
        "env_vars": {"MLFLOW_RUN_ID": "r1", "MLFLOW_TRACKING_URI": "sqlite:////tmp/m.db"},
    }
    args.update(kw)
    return build_config(spec.train, spec, **args)


@pytest.fixture(scope="module")
def verl7():
    return load_spec(ROOT / "specs" / "verl7.yaml").spec


@pytest.fixture(scope="module")
def verl8():
    return load_spec(ROOT / "specs" / "verl8.yaml").spec


@pytest.mark.parametrize("which", ["verl7", "verl8"])
def test_specs_map_to_the_users_values(which, request):
    spec = request.getfixturevalue(which)
    cfg = _build(spec).config
    for key, expected in SHARED.items():
        assert get_dotted(cfg, key) == expected, key
    assert cfg["trainer"]["experiment_name"] == which
    assert cfg["trainer"]["default_local_dir"] == "/ckpt"
    assert cfg["ray_kwargs"]["ray_init"]["runtime_env"]["env_vars"]["MLFLOW_RUN_ID"] == "r1"


def test_verl7_is_grpo_and_verl8_is_egpo_with_the_users_hyperparameters(verl7, verl8):
    a7, a8 = _build(verl7).config["algorithm"], _build(verl8).config["algorithm"]
    assert a7["adv_estimator"] == "grpo" and "egpo" not in a7
    assert a8["adv_estimator"] == "egpo"
    assert a8["egpo"] == {"lambda": 0.4, "alpha": 2.0, "entropy_scope": "response"}  # as hardtry ran it
    # everything else identical: the pair differs only by the estimator
    c7, c8 = _build(verl7).config, _build(verl8).config
    for c in (c7, c8):
        c["algorithm"].pop("adv_estimator")
        c["algorithm"].pop("egpo", None)
        c["trainer"].pop("experiment_name")
    assert c7 == c8


def test_verl8_spec_data_and_eval_sections_match_hardtry(verl8):
    assert verl8.data.max_samples == 1000 and verl8.data.test_size == 0.05 and verl8.data.seed == 42
    assert verl8.data.data_source == "hardgen" and verl8.data.ability == "function_call"
    assert verl8.data.source.endswith("hardgen_openai_messages_fc.json")
    assert verl8.model.path == "${MODEL_ROOT}/Qwen3-4B-Thinking-2507"
    assert verl8.eval.backend == "bfcl" and verl8.eval.repeats == 5
    assert verl8.eval.bfcl.test_category == "multi_turn_base"
    assert verl8.stages() == ["convert", "train", "merge", "eval"]


def test_config_file_composes_over_ppo_trainer(verl8, tmp_path):
    launch = _build(verl8)
    path = launch.write(tmp_path)
    assert path.name == f"{CONFIG_NAME}.yaml"
    body = yaml.safe_load(path.read_text())
    assert body["defaults"] == ["ppo_trainer", "_self_"]
    assert body["hydra"]["searchpath"] == [VERL_SEARCHPATH]
    assert body["algorithm"]["egpo"]["lambda"] == 0.4


def test_unexpanded_variables_are_not_omegaconf_interpolations(verl8, tmp_path):
    body = yaml.safe_load(_build(verl8, model_path="${MODEL_ROOT}/Qwen3").write(tmp_path).read_text())
    assert body["actor_rollout_ref"]["model"]["path"] == "\\${MODEL_ROOT}/Qwen3"


@pytest.mark.parametrize(
    "value, text",
    [
        (True, "true"), (None, "null"), (1e-6, "1e-06"), (8, "8"), ("vllm", "vllm"),
        ("/a b/c", "'/a b/c'"), ("1e-6", "'1e-6'"), ("true", "'true'"), ([1, "x"], "[1,x]"),
        ({"a": 1}, "{a:1}"), ("it's", "'it\\'s'"),
    ],
)
def test_hydra_values_keep_their_type(value, text):
    assert hydra_value(value) == text


def test_verl_overrides_become_trailing_hydra_overrides(verl8):
    data = verl8.model_dump(mode="json")
    data["train"]["verl"]["verl_overrides"] = {
        "actor_rollout_ref.rollout.enforce_eager": True,
        "+actor_rollout_ref.model.override_config.attention_dropout": 0.0,
    }
    data.pop("extends", None)
    launch = _build(Spec.model_validate(data))
    assert launch.overrides == [
        "actor_rollout_ref.rollout.enforce_eager=true",
        "+actor_rollout_ref.model.override_config.attention_dropout=0.0",
    ]
    assert override_list({"~trainer.val_before_train": None}) == ["~trainer.val_before_train=null"]


@pytest.mark.parametrize("key", ["actor rollout", "a..b", "=x", "actor_rollout_ref.rollout.n=4"])
def test_malformed_override_keys_are_spec_errors(key, verl8):
    from registry.loader import deep_merge

    data = deep_merge(verl8.model_dump(mode="json"), {"train": {"verl": {"verl_overrides": {key: 1}}}})
    data.pop("extends", None)
    with pytest.raises(Exception) as info:
        Spec.model_validate(data)
    assert "verl_overrides key" in str(info.value) and "dotted verl key" in str(info.value)


def test_ray_address_and_cluster_shape(verl8):
    data = verl8.model_dump(mode="json")
    data.pop("extends", None)
    data["train"]["verl"].update({"ray_address": "ray://head:10001", "nnodes": 2, "n_gpus_per_node": 8})
    cfg = _build(Spec.model_validate(data)).config
    assert cfg["ray_kwargs"]["ray_init"]["address"] == "ray://head:10001"
    assert cfg["trainer"]["nnodes"] == 2 and cfg["trainer"]["n_gpus_per_node"] == 8


def test_describe_without_verl_prints_the_launch_and_says_why_not_composed(verl8, tmp_path, monkeypatch):
    from runners.verl import describe, describe_json

    monkeypatch.setenv("RLREG_HOME", str(tmp_path))

    data = verl8.model_dump(mode="json")
    data.pop("extends", None)
    data["train"]["verl"]["python"] = "/nonexistent/venv/bin/python"
    spec = Spec.model_validate(data)
    text = describe(spec.train, spec)
    assert "/nonexistent/venv/bin/python -m verl.trainer.main_ppo --config-path" in text
    assert f"--config-name {CONFIG_NAME}" in text
    assert "VERL_USE_EXTERNAL_MODULES=runners.verl.egpo_plugin" in text
    assert "MLFLOW_RUN_ID=<train child run id>" in text
    assert "adv_estimator: egpo" in text and "lambda: 0.4" in text
    assert "not composed: no verl python at /nonexistent/venv/bin/python" in text
    assert "scripts/setup-verl-venv.sh" in text
    assert "algorithm.egpo.entropy_scope: response" in text and len(text.splitlines()) < 120  # verl8 as it ran
    written = tmp_path / "dry-run" / "verl8" / "verl" / f"{CONFIG_NAME}.yaml"
    assert f"generated config file: {written}" in text and written.is_file()
    data = describe_json(spec.train, spec)
    assert json.loads(json.dumps(data)) == data  # the JSON plan can embed it
    assert data["composed"] is False and data["spec_sets"]["trainer.experiment_name"] == "verl8"
    assert data["command"][1:3] == ["-m", "verl.trainer.main_ppo"]


def test_config_diff_names_changed_new_and_removed_keys():
    from runners.verl.dry_run import config_diff, flatten

    assert flatten({"a": {"b": 1, "c": {}}, "d": [1, 2]}) == {"a.b": 1, "a.c": {}, "d": [1, 2]}
    defaults = {"data": {"seed": None, "batch": 1024, "gone": 1}, "trainer": {"logger": ["console", "wandb"]}}
    composed = {"data": {"seed": 42, "batch": 1024}, "trainer": {"logger": ["console", "mlflow"]}, "algorithm": {"egpo": {"lambda": 0.4}}}
    assert config_diff(composed, defaults) == {
        "algorithm.egpo.lambda": {"default": "<absent>", "value": 0.4},
        "data.gone": {"default": 1, "value": "<absent>"},
        "data.seed": {"default": None, "value": 42},
        "trainer.logger": {"default": ["console", "wandb"], "value": ["console", "mlflow"]},
    }


def test_spec_error_names_the_spec_field_and_fix():
    from runners.verl.compose import spec_error

    err = spec_error(
        "verl8",
        {"step": "validate", "type": "AssertionError",
         "message": "real_train_batch_size (6) must be divisible by minimal possible batch size (4)"},
        "0.9.1", "egpo",
    )
    assert isinstance(err, SpecError)
    assert str(err).startswith("spec 'verl8': train: verl 0.9.1 rejects the config (validate): real_train_batch_size (6)")
    assert "train.train_batch_size x train.rollout.n" in str(err)


def test_filter_groups_maps_to_verls_dapo_keys(verl7):
    """Dynamic sampling (spec train.algorithm.filter_groups) becomes verl's algorithm.filter_groups;
    off by default (verl's own default), so the user's verl7 launch is unchanged."""
    cfg = _build(verl7).config
    assert "filter_groups" not in cfg["algorithm"]  # off: verl's defaults, as hardtry composed them
    on = Spec.model_validate({**verl7.model_dump(mode="json", exclude={"extends"}), "train": {
        **verl7.train.model_dump(mode="json"),
        "algorithm": {**verl7.train.algorithm.model_dump(mode="json"),
                      "filter_groups": {"enable": True, "max_num_gen_batches": 4}}}})
    assert get_dotted(_build(on).config, "algorithm.filter_groups") == {
        "enable": True, "metric": "reward", "max_num_gen_batches": 4}


def test_lora_section_becomes_verls_model_lora_keys(verl8):
    from registry.loader import deep_merge

    data = deep_merge(verl8.model_dump(mode="json"), {"train": {"verl": {"lora": {"rank": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"]}}}})
    data.pop("extends", None)
    lora = Spec.model_validate(data)
    args = dict(model_path="/m", train_files="/t", val_files="/v", checkpoint_dir="/c", env_vars={})
    model = build_config(lora.train, lora, **args).config["actor_rollout_ref"]["model"]
    assert (model["lora_rank"], model["lora_alpha"], model["target_modules"]) == (16, 32, ["q_proj", "v_proj"])
    plain = build_config(verl8.train, verl8, **args).config["actor_rollout_ref"]["model"]
    assert "lora_rank" not in plain, "off: verl's own default (0) stays"
