"""SFT stage: warm-start the policy so RL sees non-zero rewards.

    convert.train/test parquet ─► (prompt + ground-truth answer) rendered with the chat template
        ─► masked next-token loss on assistant tokens ─► AdamW + warmup/cosine ─► HF dir ``model``

Resumable: checkpoints (model, optimizer, scheduler, RNG, step) go to ``ctx.work_dir`` every
``save_every`` steps; a rerun continues from the newest and logs metrics at the same steps, so the
MLflow curves continue instead of restarting. Mixed precision: with ``model.dtype`` bf16/fp16 on
CUDA the weights stay float32 for AdamW and the forward runs under autocast; the saved model is
cast to ``model.dtype``.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch

from registry.context import StageContext, StageResult
from registry.spec.sft import SFTSpec
from runners.modeling import apply_cpu_threads, load_model, resolve_base_model
from runners.reward_file import load_reward
from runners.sft.checkpoint import apply_checkpoint, resume_checkpoint, save_checkpoint
from runners.sft.data import BatchPlan, Example, collate, load_examples
from runners.sft.format_check import format_report

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def lr_lambda(spec: SFTSpec):
    """Factor on the peak lr after ``s`` completed steps: linear warmup, then constant or cosine to 0."""

    def factor(s: int) -> float:
        if s < spec.warmup_steps:
            return (s + 1) / spec.warmup_steps
        if spec.schedule == "constant":
            return 1.0
        progress = (s - spec.warmup_steps) / max(1, spec.max_steps - spec.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def masked_loss_sum(model: Any, batch: dict[str, torch.Tensor], autocast: Any) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over assistant tokens, and their count.

    The LM head runs only on positions that predict an assistant token (a quarter of a tool-call
    conversation): the decoder's hidden states are gathered first. Models without the usual
    decoder + output-embedding split fall back to full logits."""
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    head = model.get_output_embeddings()
    decoder = getattr(model, model.base_model_prefix, None)
    with autocast:
        if head is not None and decoder is not None and decoder is not model:
            hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            logits = head(hidden[:, :-1][keep])
        else:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][keep]
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[keep], reduction="sum")
    return loss, int(keep.sum())


@torch.no_grad()
def eval_loss(model: Any, examples: list[Example], pad_id: int, batch_size: int, device: str, autocast: Any) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
        loss, n = masked_loss_sum(model, batch, autocast)
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(1, count)


def run(stage_spec: SFTSpec, ctx: StageContext) -> StageResult:
    from registry.progress import progress

    spec, model_spec = stage_spec, ctx.spec.model
    if model_spec is None:
        from registry.errors import UsageError

        raise UsageError("the sft stage needs a `model` section (path or tiny)")
    train_parquet = ctx.input("convert.train")
    test_parquet = ctx.inputs.get("convert.test")
    apply_cpu_threads(model_spec)
    base = resolve_base_model(model_spec, train_parquet=train_parquet, cache_dir=ctx.work_dir / "base", resolve_path=ctx.resolve_path)

    # Train in float32 (AdamW on bf16 weights loses small updates); bf16/fp16 via autocast on CUDA.
    model, tokenizer = load_model(base, dtype="float32", device=model_spec.device, trust_remote_code=model_spec.trust_remote_code)
    device = str(next(model.parameters()).device)
    amp_dtype = AUTOCAST_DTYPES.get(model_spec.dtype) if device.startswith("cuda") else None
    autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    pad_id = tokenizer.pad_token_id

    train, skipped = load_examples(train_parquet, tokenizer, max_length=spec.max_length, train_on=spec.train_on)
    test, _ = load_examples(test_parquet, tokenizer, max_length=spec.max_length, train_on="last_assistant") if test_parquet else ([], 0)
    if skipped:
        print(f"sft: skipped {skipped} train rows longer than sft.max_length={spec.max_length}", file=sys.stderr)
    eval_set = test[: spec.eval_samples]

    torch.manual_seed(spec.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec))
    step, resumed_from = 0, None
    state, discarded = resume_checkpoint(ctx.work_dir)
    if discarded:
        print(f"sft: discarding checkpoints, starting over: {discarded}", file=sys.stderr)
        ctx.tracker.set_tags({"rlreg.resume_discarded": discarded[:5000]})
    if state is not None:
        step, _ = apply_checkpoint(state, model, optimizer, scheduler)
        resumed_from = step
        print(f"sft: resuming from step {step}", file=sys.stderr)

    ctx.tracker.set_tags({"sft.base_model": str(base), "sft.resumed_from_step": resumed_from if resumed_from is not None else "none"})
    if step == 0 and eval_set:
        ctx.tracker.log_metrics({"sft/eval_loss": eval_loss(model, eval_set, pad_id, spec.batch_size, device, autocast)}, step=0)

    plan = BatchPlan([len(e.input_ids) for e in train], seed=spec.seed, batch_size=spec.batch_size,
                     micro_batches=spec.grad_accum, group_by_length=spec.group_by_length)
    recent: list[float] = []
    last_eval = None
    bar = progress(spec.max_steps, step, desc="sft", unit="step")  # a line every 10 % when not a terminal
    while step < spec.max_steps:
        started = time.perf_counter()
        micro = [
            {k: v.to(device) for k, v in collate([train[i] for i in idx], pad_id).items()}
            for idx in plan.step(step)
        ]
        total_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
        step_loss = 0.0
        for batch in micro:
            loss_sum, _ = masked_loss_sum(model, batch, autocast)
            (loss_sum / max(1, total_tokens)).backward()
            step_loss += float(loss_sum.detach()) / max(1, total_tokens)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip))
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seen = sum(int(b["attention_mask"].sum()) for b in micro)
        metrics = {"sft/loss": step_loss, "sft/lr": lr, "sft/grad_norm": grad_norm,
                   "sft/tokens_per_s": seen / max(1e-9, time.perf_counter() - started)}
        if eval_set and (step % spec.eval_every == 0 or step == spec.max_steps):
            last_eval = eval_loss(model, eval_set, pad_id, spec.batch_size, device, autocast)
            metrics["sft/eval_loss"] = last_eval
        ctx.tracker.log_metrics(metrics, step=step)
        recent = (recent + [step_loss])[-10:]
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.1e}")
        if step % spec.save_every == 0 and step < spec.max_steps:
            save_checkpoint(ctx.work_dir, step, model, optimizer, scheduler, {"loss": step_loss})
    bar.close()
    ctx.tracker.flush()

    result_metrics: dict[str, float] = {}
    if recent:
        result_metrics["sft/final_loss"] = sum(recent) / len(recent)
    if eval_set:
        result_metrics["sft/eval_loss"] = last_eval if last_eval is not None else eval_loss(model, eval_set, pad_id, spec.batch_size, device, autocast)
    if spec.format_samples and test:
        sample = test[: spec.format_samples]
        longest = max(len(tokenizer(e.ground_truth, add_special_tokens=False)["input_ids"]) for e in sample)
        rates, rows = format_report(
            model, tokenizer, sample, load_reward(ctx.spec.reward, ctx.project_root, ctx.spec.data.data_source if ctx.spec.data else ""),
            max_new_tokens=longest + 16, batch_size=spec.batch_size,
        )
        result_metrics["sft/format_rate"] = rates["format_rate"]
        result_metrics["sft/reward_rate"] = rates["reward_rate"]
        ctx.tracker.log_table(rows, "sft_samples.json")
    ctx.tracker.log_metrics(result_metrics, step=step)
    ctx.tracker.flush()

    out = ctx.out_dir / "model"
    if model_spec.dtype != "float32":
        model.to(getattr(torch, model_spec.dtype))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return StageResult(
        outputs={"model": out},
        metrics=result_metrics,
        info={"base_model": str(base), "train_examples": len(train), "skipped_too_long": skipped, "test_examples": len(test),
              "steps": step, "resumed_from_step": resumed_from},
    )
