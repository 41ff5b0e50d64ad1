"""Checks that need verl itself, run in .venv-verl (scripts/setup-verl-venv.sh; CI creates it):

* golden: verl7/verl8 compose with verl's own Hydra config and pass ``validate_config``, and the
  composed config holds the user's values; a bad verl key and an impossible batch size are
  ``SpecError``s naming the field and the fix;
* the EGPO plugin, loaded by ``VERL_USE_EXTERNAL_MODULES`` as in a real run, registers ``egpo`` and
  ``egpo_token`` in verl's registry, patches both trainers, and verl's own code paths
  (``get_adv_estimator_fn``, ``ray_trainer.compute_advantage``, the real patched v1
  ``PPOTrainer._compute_advantage`` over a stub TransferQueue) produce exactly the builtin
  estimator's numbers on the same tensors — compared here, in the project's venv, against
  ``runners.common.advantages``.

Importing verl takes tens of seconds on a busy 2-core box, so each group is one subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from registry.errors import SpecError
from registry.loader import deep_merge, load_spec
from registry.spec import Spec

ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VERL_PYTHON.exists(),
        reason=".venv-verl is absent: create it with scripts/setup-verl-venv.sh (CI does)",
    ),
]


def _launch_config(spec: Spec, **kw):
    from runners.verl.config import build_config

    args = {"model_path": "/models/Qwen3-4B-Thinking-2507", "train_files": "/data/train.parquet",
            "val_files": "/data/test.parquet", "checkpoint_dir": "/ckpt", "env_vars": {"MLFLOW_RUN_ID": "r1"}}
    args.update(kw)
    return build_config(spec.train, spec, **args)


def _variant(base: Spec, change: dict) -> Spec:
    data = deep_merge(base.model_dump(mode="json"), change)
    data.pop("extends", None)
    return Spec.model_validate(data)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """verl7, verl8, a bad override key, an impossible batch size, dynamic sampling: one verl process."""
    from runners.verl.compose import check_request, run_checks

    verl7 = load_spec(ROOT / "specs" / "verl7.yaml").spec
    verl8 = load_spec(ROOT / "specs" / "verl8.yaml").spec
    cases = {
        "verl7": verl7,
        "verl8": verl8,
        "bad_key": _variant(verl8, {"train": {"verl": {"verl_overrides": {"actor_rollout_ref.actor.ppo_mini_batchsize": 8}}}}),
        # 6 prompts x 1 sample cannot be split over 4 GPUs
        "bad_batch": _variant(verl8, {"train": {"train_batch_size": 6, "ppo_mini_batch_size": 6, "rollout": {"n": 1}}}),
        "dapo": _variant(verl7, {"train": {"algorithm": {"filter_groups": {"enable": True, "max_num_gen_batches": 4}}}}),
    }
    launches = {name: _launch_config(spec) for name, spec in cases.items()}
    requests = [check_request(launch, tmp_path_factory.mktemp(name)) for name, launch in launches.items()]
    results = run_checks(VERL_PYTHON, requests)
    return {name: (cases[name], launches[name], result) for name, result in zip(cases, results)}


def _composed(checked, name):
    from runners.verl.compose import composed_or_raise

    spec, launch, result = checked[name]
    return composed_or_raise(result, launch, spec.name)


@pytest.mark.parametrize("name", ["verl7", "verl8"])
def test_specs_compose_and_pass_validate_config_with_the_users_values(checked, name):
    cfg = _composed(checked, name)
    actor = cfg["actor_rollout_ref"]["actor"]
    rollout = cfg["actor_rollout_ref"]["rollout"]
    assert actor["optim"]["lr"] == 1e-6 and actor["optim"]["weight_decay"] == 1e-4
    assert cfg["data"]["train_batch_size"] == 64 and rollout["n"] == 4
    assert cfg["data"]["max_prompt_length"] == 9216 and cfg["data"]["max_response_length"] == 1024
    # verl derives the rollout lengths from data.* — the composed config shows the result
    assert rollout["prompt_length"] == 9216 and rollout["response_length"] == 1024
    assert actor["use_kl_loss"] is True and actor["kl_loss_coef"] == 0.001 and actor["kl_loss_type"] == "low_var_kl"
    assert actor["clip_ratio_low"] == 0.2 and actor["clip_ratio_high"] == 0.28
    assert actor["ppo_mini_batch_size"] == 32 and actor["ppo_micro_batch_size_per_gpu"] == 1
    assert cfg["trainer"]["n_gpus_per_node"] == 4 and cfg["trainer"]["nnodes"] == 1
    assert cfg["trainer"]["total_epochs"] == 1
    assert cfg["trainer"]["save_freq"] == 50 and cfg["trainer"]["test_freq"] == 50
    assert cfg["trainer"]["logger"] == ["console", "mlflow"] and cfg["trainer"]["experiment_name"] == name
    assert cfg["reward"]["custom_reward_function"]["path"] == str(ROOT / "runners" / "reward.py")
    assert cfg["actor_rollout_ref"]["model"]["path"] == "/models/Qwen3-4B-Thinking-2507"
    # keys verl itself adds stay verl's defaults
    assert cfg["algorithm"]["gamma"] == 1.0 and cfg["actor_rollout_ref"]["hybrid_engine"] is True


def test_verl8_composes_egpo_under_algorithm(checked):
    cfg7, cfg8 = _composed(checked, "verl7"), _composed(checked, "verl8")
    assert cfg7["algorithm"]["adv_estimator"] == "grpo" and "egpo" not in cfg7["algorithm"]
    assert cfg8["algorithm"]["adv_estimator"] == "egpo"
    assert cfg8["algorithm"]["egpo"] == {"lambda": 0.4, "alpha": 2.0, "entropy_scope": "response"}


def test_filter_groups_compose_into_verls_dapo_config(checked):
    """verl's own FilterGroupsConfig (``_target_`` from ppo_trainer.yaml) takes the mapped keys."""
    cfg7, dapo = _composed(checked, "verl7"), _composed(checked, "dapo")
    assert cfg7["algorithm"]["filter_groups"]["enable"] is False
    fg = dapo["algorithm"]["filter_groups"]
    assert fg["_target_"] == "verl.trainer.config.FilterGroupsConfig"
    assert (fg["enable"], fg["metric"], fg["max_num_gen_batches"]) == (True, "reward", 4)
    assert fg["max_inflight_gen_batches"] == 1  # verl's default, untouched


def test_bad_verl_key_is_a_spec_error_with_the_fix(checked):
    with pytest.raises(SpecError) as info:
        _composed(checked, "bad_key")
    text = str(info.value)
    assert text.startswith("spec 'verl8': train.verl.verl_overrides: verl 0.9.1 rejects the config (compose)")
    assert "ppo_mini_batchsize" in text
    assert "prefix it with '+'" in text


def test_impossible_batch_size_is_a_spec_error_with_the_fix(checked):
    with pytest.raises(SpecError) as info:
        _composed(checked, "bad_batch")
    text = str(info.value)
    assert "(validate)" in text and "real_train_batch_size (6)" in text
    assert "train.train_batch_size x train.rollout.n must be a multiple of train.verl.nnodes x train.verl.n_gpus_per_node" in text


def test_verls_own_entrypoint_composes_the_same_config(checked, tmp_path):
    """The exact argv rlreg launches, with Hydra's ``--cfg job --resolve`` (print the config, run
    nothing): verl's real ``main_ppo`` accepts the config path/name and its result equals what the
    pre-launch check composed."""
    import yaml

    from runners.verl.config import CONFIG_NAME
    from runners.verl.launch import verl_argv, verl_env

    _, launch, _ = checked["verl8"]
    config_dir = tmp_path / "verl"
    launch.write(config_dir)
    argv = verl_argv(VERL_PYTHON, config_dir, launch.overrides) + ["--cfg", "job", "--resolve"]
    assert argv[1:7] == ["-m", "verl.trainer.main_ppo", "--config-path", str(config_dir), "--config-name", CONFIG_NAME]
    env = {**os.environ, **verl_env(project_root=ROOT, tracking_uri="sqlite:///x.db", run_id="r"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = yaml.safe_load(proc.stdout)
    assert printed == _composed(checked, "verl8")


def test_dry_run_is_short_and_names_the_full_composed_config(tmp_path, monkeypatch):
    """``rlreg run verl8 --dry-run``'s train part: the command, what the spec sets and what differs
    from verl's own defaults (composed by verl), the ~1000-line config in a named file."""
    import yaml

    from runners.verl import describe, describe_json

    monkeypatch.setenv("RLREG_HOME", str(tmp_path))
    spec = load_spec(ROOT / "specs" / "verl8.yaml").spec
    text = describe(spec.train, spec)
    data = describe_json(spec.train, spec)  # the same check, not a second verl process
    assert data["composed"] is True and len(text.splitlines()) < 120
    path = Path(data["files"]["composed_config"])
    assert path.parent == tmp_path / "dry-run" / "verl8" / "verl" and f"full config: {path}" in text
    full = path.read_text()
    assert len(full.splitlines()) > 500 and yaml.safe_load(full)["algorithm"]["egpo"]["entropy_scope"] == "response"
    diff = data["differs_from_defaults"]
    assert diff["algorithm.adv_estimator"] == {"default": "gae", "value": "egpo", "by": "spec"}
    assert diff["algorithm.egpo.lambda"] == {"default": "<absent>", "value": 0.4, "by": "spec"}
    assert diff["actor_rollout_ref.rollout.prompt_length"] == {"default": 512, "value": 9216, "by": "verl"}
    assert "actor_rollout_ref.actor.optim.lr" not in diff  # 1e-6 is verl's default too
    assert "  algorithm.adv_estimator: gae -> egpo" in text
    assert "  actor_rollout_ref.rollout.prompt_length: 512 -> 9216" in text
    assert "actor_rollout_ref.actor.optim.lr," in text  # listed among the keys set to verl's default
    assert json.loads(json.dumps(data)) == data



PLUGIN_SCRIPT = r'''
import json, sys, types
import numpy as np
import torch
import verl  # VERL_USE_EXTERNAL_MODULES loads runners.verl.egpo_plugin here, as in every verl process
from omegaconf import OmegaConf
from tensordict import TensorDict
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from verl import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1 import trainer_base

import runners.verl.egpo_plugin as plugin

out_dir = sys.argv[1]
res = {"registered": sorted(n for n in ("egpo", "egpo_token") if n in core_algos.ADV_ESTIMATOR_REGISTRY),
       "patched": sorted(plugin.PATCHED),
       "real_v1_patched": bool(getattr(trainer_base.PPOTrainer._compute_advantage, "_rlreg_patched", False))}

# a tokenizer whose <think>/</think> ids are not 0/1: the plugin must ask the tokenizer
vocab = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "</think>": 7, "<think>": 9}
tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")

g = torch.Generator().manual_seed(0)
B, T = 8, 12
lengths = torch.tensor([12, 9, 7, 12, 5, 10, 12, 8])
mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
responses = torch.randint(1, 4, (B, T), generator=g) * mask.long()
responses[0, 5] = 7                       # Qwen3-Thinking: <think> in the prompt, </think> in the response
responses[1, 0], responses[1, 4] = 9, 7   # both tags
responses[3, 2] = 9                        # never closed (truncated): think to the end
responses[5, 0], responses[5, 8] = 9, 7
responses[6, 3] = 7                        # row 2, 4, 7: no tags
mask[3, 6:8] = 0                           # a masked hole (tool output) inside row 3's think span
# prompts: row 2's ends inside an open think block (Qwen3-Thinking's template) -> its untagged,
# truncated-looking response is all thinking; row 7's template closed the block -> empty scope
prompt_lengths = [2, 3, 4, 1, 3, 4, 2, 3]
prompts_right = torch.randint(1, 4, (B, 4), generator=g) * (torch.arange(4)[None, :] < torch.tensor(prompt_lengths)[:, None])
prompts_right[2, 3] = 9
prompts_right[7, 1], prompts_right[7, 2] = 9, 7
prompts = torch.stack([torch.roll(prompts_right[i], 4 - prompt_lengths[i]) for i in range(B)])  # left-padded
scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
rewards = torch.zeros(B, T)
rewards[torch.arange(B), lengths - 1] = scores
index = np.array(["p0"] * 4 + ["p1"] * 4, dtype=object)
entropy = torch.rand(B, T, generator=g) * 3 * mask

def algo(estimator, lam=0.4, scope="think"):
    return OmegaConf.create({"adv_estimator": estimator, "norm_adv_by_std_in_grpo": True, "gamma": 1.0, "lam": 1.0,
                             "egpo": {"lambda": lam, "alpha": 2.0, "entropy_scope": scope}})

tensors = {"rewards": rewards, "mask": mask, "responses": responses, "entropy": entropy, "prompts": prompts}
cfg = algo("egpo")
scope = plugin.scope_mask_for(cfg, hf, responses, mask, prompts)
no_scope = OmegaConf.create({"adv_estimator": "egpo_token", "egpo": {"lambda": 0.4, "alpha": 2.0}})
res["egpo_token_default_scope_is_response"] = plugin.scope_mask_for(no_scope, hf, responses, mask, prompts) is None
no_scope.adv_estimator = "egpo"
res["egpo_default_scope_is_think"] = bool(torch.equal(plugin.scope_mask_for(no_scope, hf, responses, mask, prompts), scope))
tensors["scope"] = scope
for name in ("egpo", "egpo_token"):
    for sc in ("think", "response"):
        c = algo(name, scope=sc)
        s = plugin.scope_mask_for(c, hf, responses, mask, prompts)
        with plugin.provide_entropy(entropy, s):
            adv, ret = core_algos.get_adv_estimator_fn(name)(token_level_rewards=rewards, response_mask=mask, index=index, config=c)
        tensors[f"registry_{name}_{sc}"] = adv
        res[f"returns_equal_{name}_{sc}"] = bool(torch.equal(adv, ret))

# entropy padded wider than the rewards (each side pads to its own longest response): same result
with plugin.provide_entropy(torch.nn.functional.pad(entropy, (0, 3)), torch.nn.functional.pad(scope, (0, 3))):
    wide, _ = core_algos.get_adv_estimator_fn("egpo")(token_level_rewards=rewards, response_mask=mask, index=index, config=cfg)
res["wider_entropy_same_result"] = bool(torch.equal(wide, tensors["registry_egpo_think"]))
try:
    with plugin.provide_entropy(entropy[:-1], scope[:-1]):
        core_algos.get_adv_estimator_fn("egpo")(token_level_rewards=rewards, response_mask=mask, index=index, config=cfg)
    res["row_mismatch_error"] = None
except RuntimeError as exc:
    res["row_mismatch_error"] = str(exc)

# lambda = 0 through verl's registry == verl's own GRPO
with plugin.provide_entropy(entropy, scope):
    adv0, _ = core_algos.get_adv_estimator_fn("egpo")(token_level_rewards=rewards, response_mask=mask, index=index, config=algo("egpo", lam=0.0))
verl_grpo, _ = core_algos.compute_grpo_outcome_advantage(token_level_rewards=rewards, response_mask=mask, index=index, norm_adv_by_std_in_grpo=True)
tensors["verl_grpo"] = verl_grpo
res["lambda0_equals_verl_grpo"] = bool(torch.equal(adv0, verl_grpo))

# verl's driver-side function, as the legacy trainer calls it
data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask}, non_tensors={"uid": index})
with plugin.provide_entropy(entropy, scope):
    data = compute_advantage(data, adv_estimator="egpo", num_repeat=4, config=cfg)
tensors["ray_trainer_compute_advantage"] = data.batch["advantages"]

# no entropy provided -> a clear error, not GRPO in disguise
try:
    core_algos.get_adv_estimator_fn("egpo")(token_level_rewards=rewards, response_mask=mask, index=index, config=cfg)
    res["missing_entropy_error"] = None
except RuntimeError as exc:
    res["missing_entropy_error"] = str(exc)

# v1: verl's REAL PPOTrainer._compute_advantage (patched through the import hook) on a stub
# TransferQueue holding what the rollout/old-log-prob steps store there: nested (jagged) per-response
# tensors and the uid as non-tensor data. No Ray, no workers: only the queue is stubbed.
from tensordict.tensorclass import NonTensorData, NonTensorStack
def nested(t, lens, dtype=None):
    return torch.nested.as_nested_tensor([t[i, : lens[i]].to(dtype or t.dtype) for i in range(len(lens))], layout=torch.jagged)
store = TensorDict({"uid": NonTensorStack(*[NonTensorData(u) for u in index]),
                    "response_mask": nested(mask, lengths, torch.long), "rm_scores": nested(rewards, lengths),
                    "old_log_probs": nested(torch.zeros(B, T), lengths), "entropy": nested(entropy, lengths),
                    "responses": nested(responses, lengths),
                    "prompts": nested(prompts_right, prompt_lengths)}, batch_size=[B])
written = {}
class StubTQ:
    @staticmethod
    def kv_batch_get(keys, partition_id, select_fields):
        return store.select(*[f for f in select_fields if f in store.keys()])
    @staticmethod
    def kv_batch_put(keys, partition_id, fields):
        written.update(dict(fields.items()))
        return "batch-meta"
trainer_base.tq = StubTQ
Concrete = type("Concrete", (trainer_base.PPOTrainer,),
                {n: (lambda *a, **k: None) for n in trainer_base.PPOTrainer.__abstractmethods__})
trainer = object.__new__(Concrete)
trainer.config = OmegaConf.create({"algorithm": {**OmegaConf.to_container(cfg), "use_kl_in_reward": False},
                                   "actor_rollout_ref": {"rollout": {"n": 4}}})
trainer.tokenizer = hf
class Meta:
    keys = [f"{u}_0_{i}" for i, u in enumerate(index)]
    partition_id = "train"
    def __len__(self):
        return len(self.keys)
metrics = {}
res["v1_return"] = trainer._compute_advantage(Meta(), metrics)
tensors["v1_patched_path"] = written["advantages"].to_padded_tensor(0.0)
res["v1_metrics"] = sorted(metrics)

# legacy patch: entropys kept before the driver pops them, consumed by the next compute_advantage
class Legacy:
    def __init__(self):
        self.config = OmegaConf.create({"algorithm": cfg})
        self.tokenizer = hf
    def _compute_old_log_prob(self, batch):
        return DataProto.from_dict(tensors={"old_log_probs": torch.zeros(B, T), "entropys": entropy.clone()}), 0.0
plugin.patch_legacy_trainer(types.SimpleNamespace(RayPPOTrainer=Legacy))
batch = DataProto.from_dict(tensors={"responses": responses, "response_mask": mask, "prompts": prompts})
old, _ = Legacy()._compute_old_log_prob(batch)
old.batch.pop("entropys")  # what verl's fit loop does next
data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask}, non_tensors={"uid": index})
tensors["legacy_patched_path"] = compute_advantage(data, adv_estimator="egpo", num_repeat=4, config=cfg).batch["advantages"]

torch.save(tensors, f"{out_dir}/tensors.pt")
json.dump(res, open(f"{out_dir}/result.json", "w"))
'''


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plugin")
    script = out / "plugin_check.py"
    script.write_text(PLUGIN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VERL_USE_EXTERNAL_MODULES": "runners.verl.egpo_plugin",
           "VERL_USE_EXTERNAL_PLUGINS": "none", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(VERL_PYTHON), str(script), str(out)], capture_output=True, text=True, env=env,
                          cwd=out, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import torch

    return json.loads((out / "result.json").read_text()), torch.load(out / "tensors.pt")


def test_plugin_registers_and_patches_both_trainers(plugin_run):
    res, _ = plugin_run
    assert res["registered"] == ["egpo", "egpo_token"]
    assert res["real_v1_patched"] is True
    assert "v1.PPOTrainer._compute_advantage" in res["patched"]
    assert "RayPPOTrainer._compute_old_log_prob" in res["patched"]
    assert "VERL_USE_EXTERNAL_MODULES" in res["missing_entropy_error"]
    assert res["v1_return"] == "batch-meta"  # the real method ran to its end (kv_batch_put)
    assert res["wider_entropy_same_result"] is True
    assert "covers 7 responses but the rewards have 8" in res["row_mismatch_error"]


def test_plugin_scope_comes_from_the_tokenizers_think_ids(plugin_run):
    import torch

    from runners.common.advantages import think_span_mask

    res, t = plugin_run
    expected = think_span_mask(t["responses"], t["mask"], 9, 7, prompt_ids=t["prompts"])
    assert torch.equal(t["scope"], expected)
    assert t["scope"][0, :5].sum() == 5 and t["scope"][0, 5:].sum() == 0  # Qwen3-Thinking: no opening tag
    assert torch.equal(t["scope"][2], t["mask"][2])  # the prompt opened <think>, no tag in the response
    assert t["scope"][4].sum() == 0 and t["scope"][7].sum() == 0  # no tags, prompt not inside a block
    assert t["scope"][3, 3:6].tolist() == [1, 1, 1] and t["scope"][3, 6:8].sum() == 0  # the hole stays out
    assert t["scope"][3, 8:].tolist() == [1, 1, 1, 1]
    assert res["egpo_token_default_scope_is_response"] and res["egpo_default_scope_is_think"]


@pytest.mark.parametrize("name", ["egpo", "egpo_token"])
@pytest.mark.parametrize("scope", ["think", "response"])
def test_verl_registry_matches_the_builtin_estimator(plugin_run, name, scope):
    """Same tensors, builtin estimator configured from the verl8 spec's own AlgorithmSpec."""
    import torch

    from runners.common.advantages import get_estimator

    res, t = plugin_run
    algo = load_spec(ROOT / "specs" / "verl8.yaml").spec.train.algorithm.model_copy(
        update={"adv_estimator": name, "entropy_scope": scope}
    )
    index = ["p0"] * 4 + ["p1"] * 4
    builtin, _, _ = get_estimator(name)(
        t["rewards"], t["mask"], index, config=algo, entropy=t["entropy"],
        scope_mask=t["scope"] if scope == "think" else None,
    )
    assert torch.equal(t[f"registry_{name}_{scope}"], builtin)
    assert res[f"returns_equal_{name}_{scope}"]
    if name == "egpo" and scope == "think":
        for path in ("ray_trainer_compute_advantage", "v1_patched_path", "legacy_patched_path"):
            assert torch.equal(t[path], builtin), path


def test_egpo_bonus_is_real_and_lambda_zero_is_verls_grpo(plugin_run):

    res, t = plugin_run
    assert res["lambda0_equals_verl_grpo"]
    diff = t["registry_egpo_think"] - t["verl_grpo"]
    assert (diff >= 0).all() and diff.abs().max() > 0  # a bonus, never negative, and not a no-op
    assert (diff.abs() <= t["verl_grpo"].abs() / 2.0 + 1e-7).all()  # capped at |A|/alpha
    assert {"egpo/bonus_mean", "egpo/scope_entropy_mean"} <= set(res["v1_metrics"])


# -- merge with verl's real model merger --------------------------------------------------------

FSDP_CHECKPOINT_SCRIPT = r'''
import json, os, shutil, sys
from pathlib import Path
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor
from transformers import AutoModelForCausalLM

model_dir, actor = Path(sys.argv[1]), Path(sys.argv[2])
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3])
dist.init_process_group("gloo", rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,), mesh_dim_names=("fsdp",))
model = AutoModelForCausalLM.from_pretrained(model_dir)
# what verl's FSDP2 checkpoint manager writes: DTensor shards (Shard(0) over the fsdp mesh) per rank
state = {k: distribute_tensor(v.detach().clone(), mesh, [Shard(0)]) for k, v in model.state_dict().items()}
actor.mkdir(parents=True)
torch.save(state, actor / "model_world_size_1_rank_0.pt")
(actor / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
hf = actor / "huggingface"
hf.mkdir()
for f in model_dir.iterdir():
    if f.is_file() and not f.name.endswith((".safetensors", ".bin")):
        shutil.copy(f, hf / f.name)
dist.destroy_process_group()
'''


def test_merge_runs_verls_model_merger_on_an_fsdp_checkpoint(tiny_model_dir, tmp_path, make_ctx, tracker):
    """A real DTensor FSDP checkpoint (world size 1) of a tiny Qwen2 → verl.model_merger → the
    merged weights equal the original ones (in bfloat16), the manifest matches the files, MLflow
    has them."""
    import hashlib
    import socket
    import sys

    import torch
    from safetensors.torch import load_file

    from runners.verl import merge

    ckpt = tmp_path / "ckpt"
    (ckpt / "global_step_1" / "actor").mkdir(parents=True)  # an older step, must not be chosen
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "make_ckpt.py"
    script.write_text(FSDP_CHECKPOINT_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(ckpt / "global_step_2" / "actor"), str(port)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt / "latest_checkpointed_iteration.txt").write_text("2")
    pointer = tmp_path / "checkpoints.json"
    pointer.write_text(json.dumps({"dir": str(ckpt)}))

    spec = {"data": {"synthetic": {}}, "model": {"path": str(tiny_model_dir)},
            "train": {"backend": "verl", "verl": {"python": str(VERL_PYTHON)}}, "merge": {}}
    ctx = make_ctx("merge", spec, inputs={"train.checkpoints": pointer}, tracker=tracker)
    result = merge.run(ctx.spec.merge, ctx)

    merged = result.outputs["model"]
    weights = {}
    for f in merged.glob("*.safetensors"):
        weights.update(load_file(f))
    original = {}
    for f in Path(tiny_model_dir).glob("*.safetensors"):
        original.update(load_file(f))
    assert weights.keys() == original.keys()
    # verl's merger writes bfloat16 whatever the checkpoint held (its model is built in bf16)
    for key, value in original.items():
        assert weights[key].dtype == torch.bfloat16, key
        assert torch.equal(weights[key], value.to(torch.bfloat16)), key
    manifest = json.loads(result.outputs["manifest"].read_text())
    assert manifest["source"]["step"] == 2
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256((merged / entry["path"]).read_bytes()).hexdigest()
    assert (merged / "config.json").is_file() and any(merged.glob("tokenizer*"))
    arts = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "model/files")}
    assert "model/files/config.json" in arts
