"""EGPO for verl: registers the ``egpo`` and ``egpo_token`` advantage estimators and gets the
per-token entropy to them. Loaded in every verl process through
``VERL_USE_EXTERNAL_MODULES=runners.verl.egpo_plugin`` (the project root on ``PYTHONPATH``).

The math is ``runners.common.advantages`` — the same functions the builtin trainer calls — so
both backends compute identical advantages for identical inputs.

Why a trainer patch: verl calls an estimator with rewards, mask, uid and the ``algorithm`` config,
never with entropy (domain.md §6). The entropy exists on the driver: the old-log-prob pass computes
it for every response token with the pre-update policy (the behaviour policy the bonus should
use), logs ``actor/entropy``, then drops it from the batch. We patch the DRIVER, not the actor
update: the actor update runs per mini-batch on the workers after advantages are fixed, so an
actor-side bonus would see a moving policy and could not reach the group-level sequence bonus.
The driver patch is exact for any ppo_epochs / mini-batch count.

* v1 trainer (``trainer.use_v1: true``, verl 0.9's default): ``PPOTrainer._compute_advantage`` is
  wrapped; it reads ``entropy``, ``responses``, ``response_mask``, ``prompts`` from the TransferQueue (the old-log-
  prob step stored them there), builds the scope mask, and holds both while the original runs.
  EGPO's stats (``egpo/bonus_mean`` …) are added to the step's metrics. With
  ``algorithm.round_entropy`` (rlreg sets it for multi-turn specs, any estimator) the same patch
  records the entropy of each rollout round's first k tokens (``runners/verl/round_entropy.py``).
* legacy trainer (``use_v1: false``): ``RayPPOTrainer._compute_old_log_prob`` is wrapped to keep a
  copy of ``entropys`` before the driver pops it; the estimator picks it up in the same step.

Scope (``algorithm.egpo.entropy_scope``, default per estimator: ``think`` for ``egpo``, ``response`` for
``egpo_token``): ``think`` = the tokens inside ``<think>…</think>``, found by the ids the trainer's own
tokenizer gives those tags, with the batch's ``prompts`` saying whether the chat template opened the
block (``runners.common.advantages.think_span_mask``); ``response`` = every response token.

Patches are applied when verl imports the trainer module (an import hook), so loading this plugin
in rollout/actor workers costs nothing there.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from runners.common.advantages import (
    DEFAULT_ENTROPY_SCOPE,
    config_value,
    get_estimator,
    think_span_mask,
    think_token_ids,
)

ESTIMATORS = ("egpo", "egpo_token")
PATCHED: list[str] = []
"""Names of the trainer methods patched in this process (for tests and logs)."""


@dataclass
class EntropySlot:
    """Per-token entropy and scope mask for the batch whose advantages are computed next."""

    entropy: torch.Tensor
    scope_mask: torch.Tensor | None
    stats: dict[str, float] = field(default_factory=dict)


_pending: EntropySlot | None = None


@contextlib.contextmanager
def provide_entropy(entropy: torch.Tensor, scope_mask: torch.Tensor | None) -> Iterator[EntropySlot]:
    """Make ``entropy`` [B, T] (and the scope mask) visible to the EGPO estimators while inside."""
    global _pending
    slot = EntropySlot(entropy.detach(), None if scope_mask is None else scope_mask.detach())
    previous, _pending = _pending, slot
    try:
        yield slot
    finally:
        _pending = previous


def _take_slot(name: str, shape: torch.Size) -> EntropySlot:
    if _pending is None:
        raise RuntimeError(
            f"advantage estimator '{name}' needs per-token entropy, but no trainer patch provided it: "
            "load runners.verl.egpo_plugin through VERL_USE_EXTERNAL_MODULES in the driver process "
            f"(patched here: {PATCHED or 'nothing'}), and keep the old-log-prob pass that computes "
            "the entropy (algorithm.rollout_correction.bypass_mode must be false)"
        )
    if _pending.entropy.shape[0] != shape[0]:
        raise RuntimeError(
            f"EGPO entropy covers {_pending.entropy.shape[0]} responses but the rewards have {shape[0]}: "
            "the batch changed between the old-log-prob pass and the advantage computation"
        )
    return _pending


def _fit_width(tensor: torch.Tensor | None, width: int) -> torch.Tensor | None:
    """Responses are left-aligned, so padding columns only ever differ in how many there are
    (each side pads to its own longest response): cut or zero-extend to the rewards' width."""
    if tensor is None or tensor.shape[1] == width:
        return tensor
    if tensor.shape[1] > width:
        return tensor[:, :width]
    return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]))


def _verl_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    estimator = get_estimator(name)

    def compute(token_level_rewards, response_mask, index=None, config=None, **_: Any):
        if index is None:
            raise RuntimeError(f"'{name}' groups responses by prompt: verl must pass the uid index")
        slot = _take_slot(name, token_level_rewards.shape)
        width, device = token_level_rewards.shape[1], token_level_rewards.device
        entropy = _fit_width(slot.entropy, width).to(device)
        scope = _fit_width(slot.scope_mask, width)
        scope = None if scope is None else scope.to(device)
        advantages, returns, stats = estimator(
            token_level_rewards, response_mask, index, config=config, entropy=entropy, scope_mask=scope
        )
        slot.stats = stats
        return advantages, returns

    compute.__name__ = f"rlreg_{name}"
    compute.__doc__ = f"rlreg {name} (runners.common.advantages.{name}) with the trainer's entropy."
    compute._rlreg_estimator = name  # type: ignore[attr-defined]
    return compute


def register() -> None:
    """Register ``egpo``/``egpo_token`` in verl's ADV_ESTIMATOR_REGISTRY (idempotent)."""
    from verl.trainer.ppo import core_algos

    for name in ESTIMATORS:
        existing = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
        if existing is not None and getattr(existing, "_rlreg_estimator", None) == name:
            continue
        core_algos.register_adv_est(name)(_verl_estimator(name))


# -- scope ------------------------------------------------------------------------------------


def scope_mask_for(
    algorithm_config: Any,
    tokenizer: Any,
    responses: torch.Tensor,
    response_mask: torch.Tensor,
    prompts: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The entropy scope named by ``algorithm.egpo.entropy_scope`` (default: the estimator's, see
    ``DEFAULT_ENTROPY_SCOPE``); None = the whole response. ``prompts`` (the batch's prompt ids, any
    padding) tell whether the chat template opened ``<think>`` (Qwen3-Thinking does)."""
    estimator = str(config_value(algorithm_config, "adv_estimator", "egpo"))
    default = DEFAULT_ENTROPY_SCOPE.get(estimator, "think")
    scope = config_value(config_value(algorithm_config, "egpo"), "entropy_scope", default)
    if scope == "response":
        return None
    if scope != "think":
        raise ValueError(f"algorithm.egpo.entropy_scope must be 'think' or 'response', not '{scope}'")
    if tokenizer is None:
        raise RuntimeError("entropy_scope 'think' needs the trainer's tokenizer to find <think>/</think>")
    open_id, close_id = think_token_ids(tokenizer)
    return think_span_mask(responses, response_mask, open_id, close_id, prompt_ids=prompts)


def _is_egpo(config: Any) -> bool:
    return str(config.algorithm.adv_estimator) in ESTIMATORS


# -- trainer patches ----------------------------------------------------------------------------


def _round_entropy_config(config: Any) -> Any:
    """``algorithm.round_entropy`` ({k, dir}; written by rlreg for multi-turn specs), or None."""
    return config_value(config.algorithm, "round_entropy", None)


def record_round_entropy(trainer: Any, rounds_cfg: Any, entropy: torch.Tensor, mask: torch.Tensor,
                         uids: Any, metrics: dict) -> None:
    """The step's per-round entropy: metrics + ``<dir>/entropy_step_<N>.json``. V = the trainer
    tokenizer's length (the builtin uses the logits' width; for Qwen3 log V differs by 0.02 %)."""
    from pathlib import Path

    from runners.verl.round_entropy import round_metrics, round_records, write_step_file

    step = int(getattr(trainer, "global_steps", 0))
    vocab = config_value(rounds_cfg, "vocab_size", None) or len(trainer.tokenizer)
    records = round_records(entropy, mask, int(config_value(rounds_cfg, "k", 20)), int(vocab), step, uids)
    metrics.update(round_metrics(records))
    write_step_file(Path(str(config_value(rounds_cfg, "dir", "entropy_steps"))), step, records)


def patch_v1_trainer(module: Any) -> None:
    """Wrap ``PPOTrainer._compute_advantage`` (verl/trainer/ppo/v1/trainer_base.py): EGPO's
    entropy, and (multi-turn specs) the per-round entropy record."""
    cls = module.PPOTrainer
    original = cls._compute_advantage
    if getattr(original, "_rlreg_patched", False):
        return

    def _compute_advantage(self, batch, metrics):
        egpo, rounds_cfg = _is_egpo(self.config), _round_entropy_config(self.config)
        if not egpo and not rounds_cfg:
            return original(self, batch, metrics)
        fields = ["entropy", "responses", "response_mask", "prompts"] + (["uid"] if rounds_cfg else [])
        data = module.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        if "entropy" not in data.keys():  # noqa: SIM118 - a TensorDict, not a dict
            if not egpo:  # the round record is a diagnostic: say so once per step, train on
                print("[rlreg] round entropy: no per-token entropy this step (bypass mode?)", flush=True)
                return original(self, batch, metrics)
            raise RuntimeError(
                "EGPO needs the per-token entropy of the old-log-prob pass, which this step skipped "
                "(algorithm.rollout_correction.bypass_mode=true reuses the rollout log-probs): disable bypass mode"
            )
        data = data.to_padded_tensor()
        uids = data.pop("uid").tolist() if "uid" in data.keys() else None  # noqa: SIM118 - as verl reads it
        entropy, responses, mask = data["entropy"], data["responses"], data["response_mask"]
        if rounds_cfg:
            record_round_entropy(self, rounds_cfg, entropy.float(), mask, uids, metrics)
        if not egpo:
            return original(self, batch, metrics)
        prompts = data["prompts"] if "prompts" in data.keys() else None  # noqa: SIM118
        scope = scope_mask_for(self.config.algorithm, getattr(self, "tokenizer", None), responses, mask, prompts)
        with provide_entropy(entropy.float(), scope) as slot:
            result = original(self, batch, metrics)
        metrics.update(slot.stats)
        return result

    _compute_advantage._rlreg_patched = True  # type: ignore[attr-defined]
    cls._compute_advantage = _compute_advantage
    _patched("v1.PPOTrainer._compute_advantage")


def patch_legacy_trainer(module: Any) -> None:
    """Wrap ``RayPPOTrainer._compute_old_log_prob`` (verl/trainer/ppo/ray_trainer.py) to keep the
    entropy the driver pops; the estimator consumes it later in the same step."""
    cls = module.RayPPOTrainer
    original = cls._compute_old_log_prob
    if getattr(original, "_rlreg_patched", False):
        return

    def _compute_old_log_prob(self, batch):
        global _pending
        result = original(self, batch)
        if _is_egpo(self.config):
            old_log_prob = result[0] if isinstance(result, tuple) else result
            entropy = old_log_prob.batch["entropys"].detach().float().clone()
            mask = batch.batch["response_mask"]
            prompts = batch.batch["prompts"] if "prompts" in batch.batch.keys() else None  # noqa: SIM118
            scope = scope_mask_for(
                self.config.algorithm, getattr(self, "tokenizer", None), batch.batch["responses"], mask, prompts
            )
            _pending = EntropySlot(entropy, scope)
        return result

    _compute_old_log_prob._rlreg_patched = True  # type: ignore[attr-defined]
    cls._compute_old_log_prob = _compute_old_log_prob
    _patched("RayPPOTrainer._compute_old_log_prob")


def _patched(name: str) -> None:
    PATCHED.append(name)
    # verl's own logging is at WARNING; a plain line makes the patch visible in the run's log
    print(f"[rlreg] EGPO plugin: patched {name}", flush=True)


_PATCHES: dict[str, Callable[[Any], None]] = {
    "verl.trainer.ppo.v1.trainer_base": patch_v1_trainer,
    "verl.trainer.ppo.ray_trainer": patch_legacy_trainer,
}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Applies ``_PATCHES[name]`` right after verl executes module ``name``."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _PATCHES[fullname](module)

        spec.loader.exec_module = exec_and_patch  # this module's own loader instance
        return spec


def install() -> None:
    """Register the estimators and arrange the trainer patches (now, or when verl imports them)."""
    register()
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])


install()
