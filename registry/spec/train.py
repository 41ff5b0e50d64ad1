"""``train``: RL post-training (GRPO / EGPO), builtin torch trainer or verl."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from registry.spec.base import MAX_BATCH, MAX_RECORDS, MAX_STEPS, MAX_TEMPERATURE, MAX_TOKENS, SEED_MAX, SpecModel
from registry.spec.verl import VerlSpec

EGPO_ESTIMATORS = ("egpo", "egpo_token")
DEFAULT_ENTROPY_SCOPE = {"egpo": "think", "egpo_token": "response"}


class FilterGroupsSpec(SpecModel):
    """Dynamic sampling (DAPO; verl's ``algorithm.filter_groups``): groups whose rewards are all
    equal carry no GRPO gradient, so they are dropped and more prompts are drawn until the batch
    holds ``train_batch_size`` informative groups."""

    enable: bool = Field(False, description="Drop groups whose rewards are all equal and refill the batch (verl: algorithm.filter_groups.enable).")
    metric: Literal["reward"] = Field(
        "reward", description="What must vary inside a group: the sequence reward (verl's `reward`, the pre-KL score)."
    )
    max_num_gen_batches: int = Field(
        10,
        ge=0,
        le=1000,
        description="Generation batches (of train_batch_size prompts) one step may draw. builtin: when they run out, "
        "the step trains on what it has, topped up with uninformative groups (logged), never an endless loop; "
        "0 = up to one epoch of batches. verl 0.9.1's v1 trainer reads the key but ignores it (it bounds work "
        "by max_inflight_gen_batches).",
    )


class AlgorithmSpec(SpecModel):
    """Advantage estimator and policy-loss settings (verl names where verl has them)."""

    adv_estimator: Literal["grpo", "egpo", "egpo_token"] = Field(
        "grpo",
        description="`grpo` (verl semantics); `egpo` sequence-level entropy bonus (Hao et al. 2025); "
        "`egpo_token` token-level bonus (Cheng et al. 2025).",
    )
    norm_adv_by_std_in_grpo: bool = Field(True, description="Divide by the group std (false: mean-centre only).")
    egpo_lambda: float | None = Field(
        None, le=100.0, ge=0, description="EGPO λ: bonus = min(λ·H, |A|/α). Only for egpo estimators (default 0.4)."
    )
    egpo_alpha: float | None = Field(
        None, le=1000.0, gt=1, description="EGPO α (>1 so the bonus never flips a sign). Only for egpo estimators (default 2.0)."
    )
    entropy_scope: Literal["think", "response"] | None = Field(
        None,
        description="Tokens whose entropy feeds the EGPO bonus: `think` = the chain of thought "
        "(`<think>…</think>`; a prompt that opened `<think>` starts it at the first response token), "
        "`response` = every response token. Default: each paper's choice — `think` for `egpo` "
        "(Hao et al.), `response` for `egpo_token` (Cheng et al.). hardtry's verl8 ran `egpo` with `response`.",
    )
    use_kl_loss: bool = Field(True, description="Add a KL loss against the frozen reference policy.")
    kl_loss_coef: float = Field(0.001, le=100.0, ge=0, description="KL loss weight.")
    kl_loss_type: Literal["low_var_kl", "kl", "mse"] = Field("low_var_kl", description="KL estimator.")
    entropy_coeff: float = Field(0.0, ge=-1.0, le=1.0, description="Entropy regularisation weight (verl's entropy_coeff).")
    clip_ratio_low: float = Field(0.20, gt=0, lt=1.0, description="PPO clip ε below 1: ratios under 1 - ε are clipped, in (0, 1).")
    clip_ratio_high: float = Field(0.28, gt=0, le=10.0, description="PPO clip ε above 1 (clip-higher), in (0, 10].")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-mean"] = Field("token-mean", description="Loss aggregation.")
    filter_groups: FilterGroupsSpec = Field(
        default_factory=FilterGroupsSpec, description="Dynamic sampling (DAPO): keep only groups with mixed rewards."
    )

    @model_validator(mode="after")
    def _egpo_keys(self) -> AlgorithmSpec:
        if self.entropy_scope is None:
            # runners.common.advantages.DEFAULT_ENTROPY_SCOPE; grpo ignores it (think, as before)
            self.entropy_scope = DEFAULT_ENTROPY_SCOPE.get(self.adv_estimator, "think")
        if self.adv_estimator in EGPO_ESTIMATORS:
            if self.egpo_lambda is None:
                self.egpo_lambda = 0.4
            if self.egpo_alpha is None:
                self.egpo_alpha = 2.0
        elif self.egpo_lambda is not None or self.egpo_alpha is not None:
            raise ValueError(
                f"egpo_lambda/egpo_alpha only apply to egpo estimators, not '{self.adv_estimator}' "
                "(remove them, or set adv_estimator: egpo)"
            )
        return self


class MultiTurnSpec(SpecModel):
    """Tool-executing rollouts (ARPO-style; verl's `rollout.multi_turn`): a response is generated
    until it emits a tool call, the tool runs, its answer is appended as a `tool` turn with the chat
    template, and generation continues until an answer without a call or `max_tool_rounds`. Tool
    tokens are masked out of the loss, the advantages and the entropy statistics; the reward sees
    the whole trajectory. Off by default: rollouts are single-turn and no tool runs."""

    enable: bool = Field(False, description="Run tools during rollouts (multi-turn trajectories).")
    max_tool_rounds: int = Field(
        3, ge=1, le=64,
        description="Tool answers a trajectory may read; generation stops after the last one's "
        "continuation (verl: `max_assistant_turns` = this + 1).",
    )
    tool_source: Literal["replay", "tools_config"] = Field(
        "replay",
        description="Where a tool call's answer comes from, as in the entropy stage: `replay` the "
        "record's own recorded tool turn for that round (falls back to `tools_config` callables), "
        "or always execute the Python callables of `tools_config`. A malformed or unknown call "
        "gets an error message as its answer.",
    )
    tools_config: str | None = Field(
        None,
        description="YAML mapping tool names to Python callables (`tools: {name: module:function}`), "
        "e.g. specs/tools/demo_tools.yaml; required with `tool_source: tools_config`.",
    )
    max_tool_response_length: int = Field(
        256, ge=1, le=MAX_TOKENS,
        description="Characters of one tool answer kept in the context; longer answers are cut with "
        "verl's `(truncated)` marker (verl 0.9.1's key of the same name counts characters too).",
    )
    tool_response_truncate_side: Literal["left", "middle", "right"] = Field(
        "middle",
        description="Which part of a long tool answer is cut (verl's key and default): `left` "
        "keeps the end, `right` keeps the start, `middle` keeps both ends.",
    )
    entropy_k: int = Field(
        20, ge=1, le=MAX_TOKENS,
        description="Leading tokens after each tool answer (and of round 0) whose entropy, "
        "normalised by log V, is recorded per step (`entropy_step_N.json`).",
    )
    format: Literal["hermes"] = Field(
        "hermes", description="Tool-call format: `<tool_call>{json}</tool_call>` (verl's `hermes`)."
    )

    @model_validator(mode="after")
    def _tools_named(self) -> MultiTurnSpec:
        if self.enable and self.tool_source == "tools_config" and not self.tools_config:
            raise ValueError(
                "multi_turn.tool_source 'tools_config' needs multi_turn.tools_config "
                "(e.g. specs/tools/demo_tools.yaml), or use tool_source: replay"
            )
        return self


class RolloutSpec(SpecModel):
    """Sampling of the responses that get scored."""

    n: int = Field(4, le=1024, ge=1, description="Responses sampled per prompt (group size).")
    temperature: float = Field(1.0, le=MAX_TEMPERATURE, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    max_prompt_length: int = Field(9216, le=MAX_TOKENS, ge=8, description="Longer prompts are filtered out.")
    max_response_length: int = Field(
        1024, le=MAX_TOKENS, ge=1,
        description="New tokens per response (multi-turn: model and tool tokens over all its turns, as "
        "verl's response_length; a tool answer that would fill it ends the trajectory).",
    )
    multi_turn: MultiTurnSpec = Field(default_factory=MultiTurnSpec)


class OptimizerSpec(SpecModel):
    lr: float = Field(1e-6, le=1.0, gt=0, description="Actor learning rate.")
    weight_decay: float = Field(0.01, le=10.0, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, le=MAX_STEPS, ge=0, description="Linear warmup steps.")
    schedule: Literal["constant", "cosine"] = Field("constant", description="LR schedule after warmup.")
    grad_clip: float = Field(1.0, le=1e6, gt=0, description="Max gradient norm.")


class TrainSpec(SpecModel):
    """RL stage. Batch semantics follow verl: ``train_batch_size`` prompts per step, each sampled
    ``rollout.n`` times, updated in mini-batches of ``ppo_mini_batch_size`` prompts."""

    backend: Literal["builtin", "verl"] = Field("builtin", description="`builtin` torch trainer or `verl` on Ray.")
    algorithm: AlgorithmSpec = Field(default_factory=AlgorithmSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    train_batch_size: int = Field(64, le=MAX_BATCH, ge=1, description="Prompts per training step.")
    ppo_mini_batch_size: int = Field(64, le=MAX_BATCH, ge=1, description="Prompts per optimizer mini-batch.")
    ppo_epochs: int = Field(1, le=1000, ge=1, description="Passes over each rollout batch.")
    total_epochs: int = Field(1, le=100_000, ge=1, description="Passes over the training data.")
    total_training_steps: int | None = Field(None, le=MAX_STEPS, ge=1, description="Stop after this many steps (null: epochs decide).")
    save_freq: int = Field(50, le=MAX_STEPS, ge=-1, description="Checkpoint every N steps (-1: never).")
    test_freq: int = Field(50, le=MAX_STEPS, ge=-1, description="Validate every N steps (-1: never).")
    seed: int = Field(
        42, ge=0, le=SEED_MAX,
        description="Training seed: rollout sampling and prompt order (verl: data and rollout seeds). "
        "Unset in a spec: the spec's top-level `seed`.",
    )
    micro_batch_size: int | None = Field(
        None, le=MAX_BATCH,
        ge=1,
        description="builtin: responses per forward/backward pass (gradient accumulation inside a "
        "mini-batch, and the chunk for old/reference log-probs); null = a whole mini-batch at once. "
        "Lower it when GPU memory runs out; the result does not change.",
    )
    generation_batch_size: int | None = Field(
        None, le=MAX_BATCH,
        ge=1,
        description="builtin: sequences per `generate` call during rollout; null = all "
        "train_batch_size × rollout.n at once.",
    )
    train_max_samples: int = Field(
        -1, ge=-1, le=MAX_RECORDS,
        description="verl's `data.train_max_samples`: train on N rows of convert.train (-1 = all). The "
        "rows are verl 0.9.1's choice with `data.shuffle: true`: numpy `default_rng(train.seed).choice(rows, "
        "N, replace=False)`, taken before the overlong-prompt filter; so each training seed draws its own "
        "prompt set. A small set trains several epochs on the same prompts (the RL prompt set size; "
        "docs/training.md).",
    )
    val_max_prompts: int = Field(
        64, le=MAX_RECORDS, ge=1, description="builtin: test-split prompts scored greedily every `test_freq` steps."
    )
    verl: VerlSpec = Field(default_factory=VerlSpec, description="verl launch settings (backend: verl).")

    @model_validator(mode="after")
    def _batches_divide(self) -> TrainSpec:
        if self.train_batch_size % self.ppo_mini_batch_size:
            raise ValueError(
                f"train_batch_size ({self.train_batch_size}) must be a multiple of "
                f"ppo_mini_batch_size ({self.ppo_mini_batch_size}); lower ppo_mini_batch_size"
            )
        return self
