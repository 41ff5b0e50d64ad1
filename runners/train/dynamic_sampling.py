"""Dynamic sampling (DAPO, Yu et al. 2025; verl's ``algorithm.filter_groups``).

A GRPO group whose rewards are all equal has advantage 0 for every response: it adds no policy
gradient, only noise to the batch statistics. With ``filter_groups.enable`` a step keeps only the
groups with mixed rewards and draws further generation batches (``train_batch_size`` prompts each,
the next ones in the data order) until it holds ``train_batch_size`` of them; the surplus of the
last batch is dropped, as in verl. The number of generation batches a step may draw is bounded by
``max_num_gen_batches`` (0: one epoch's worth), so a task the model never or always solves cannot
loop forever: the step then trains on the informative groups it found, topped up with uniform ones
(which contribute nothing), and logs ``rollout/filter_groups_exhausted = 1``.

Metrics per step: ``rollout/informative_share`` (share of generated groups with mixed rewards, also
without filtering), ``rollout/reward_mean_generated`` (mean reward of every response generated,
dropped groups included: ``train/reward_mean`` is over the kept batch, which filtering biases), ``rollout/num_gen_batches`` (DAPO recipe's ``train/num_gen_batches``), and
verl 0.9.1's v1 names ``training/filter_groups/evicted_samples`` (responses of dropped uniform
groups) and ``training/filter_groups/discarded_surplus_samples``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from runners.train.prompts import Prompt
from runners.train.rollout import RolloutBatch


def informative_groups(batch: RolloutBatch) -> list[bool]:
    """Per group (rows of one group adjacent): are its rewards not all equal?"""
    assert batch.scores is not None
    return [bool((batch.scores[r] != batch.scores[r[0]]).any()) for r in group_rows(batch)]


def group_rows(batch: RolloutBatch) -> list[list[int]]:
    """Row indices of each group (runs of equal adjacent group ids)."""
    rows: list[list[int]] = []
    for i, g in enumerate(batch.group_ids):
        if rows and batch.group_ids[i - 1] == g:
            rows[-1].append(i)
        else:
            rows.append([i])
    return rows


def merge(parts: Sequence[tuple[RolloutBatch, list[int]]], pad_id: int) -> RolloutBatch:
    """Rows ``idx`` of each batch, re-padded to one layout (prompts left, responses right); group
    ids renumbered so a prompt drawn twice in one step forms two groups."""
    P = max(b.prompt_length for b, _ in parts)
    R = max(b.response_length for b, _ in parts)
    ids, attn, rmask = [], [], []
    group_ids, gts, texts, trunc, ptoks, scores = [], [], [], [], [], []
    extras: list[dict] | None = [] if all(b.extra_infos is not None for b, _ in parts) else None
    turns: list | None = [] if all(b.turns is not None for b, _ in parts) else None
    next_gid, seconds = 0, 0.0
    for b, idx in parts:
        seconds += b.generate_seconds
        sel = torch.tensor(idx, dtype=torch.long)
        p, r = b.prompt_length, b.response_length
        pid = torch.full((len(idx), P), pad_id, dtype=torch.long)
        pm = torch.zeros((len(idx), P), dtype=torch.long)
        pid[:, P - p :] = b.input_ids[sel, :p]
        pm[:, P - p :] = b.attention_mask[sel, :p]
        rid = torch.full((len(idx), R), pad_id, dtype=torch.long)
        rm = torch.zeros((len(idx), R), dtype=torch.float)
        ra = torch.zeros((len(idx), R), dtype=torch.long)
        rid[:, :r] = b.input_ids[sel, p:]
        rm[:, :r] = b.response_mask[sel]
        ra[:, :r] = b.attention_mask[sel, p:]  # multi-turn: tool tokens are attended, not in the mask
        ids.append(torch.cat([pid, rid], 1))
        attn.append(torch.cat([pm, ra], 1))
        rmask.append(rm)
        for j, i in enumerate(idx):  # a new group starts where the source group id changes
            if j and b.group_ids[i] != b.group_ids[idx[j - 1]]:
                next_gid += 1
            group_ids.append(next_gid)
        next_gid += 1
        gts += [b.ground_truths[i] for i in idx]
        texts += [b.texts[i] for i in idx]
        if extras is not None:
            extras += [b.extra_infos[i] for i in idx]
        if turns is not None:
            turns += [b.turns[i] for i in idx]
        trunc.append(b.truncated[sel])
        ptoks.append(b.prompt_tokens[sel])
        assert b.scores is not None
        scores.append(b.scores[sel])
    return RolloutBatch(
        input_ids=torch.cat(ids), attention_mask=torch.cat(attn), response_mask=torch.cat(rmask), prompt_length=P,
        group_ids=group_ids, ground_truths=gts, texts=texts, truncated=torch.cat(trunc),
        prompt_tokens=torch.cat(ptoks), generate_seconds=seconds, scores=torch.cat(scores),
        extra_infos=extras, turns=turns,
    )


@dataclass
class Sampled:
    batch: RolloutBatch
    cursor: int
    """Generation batches consumed so far (all steps): where the next step's prompts start."""
    metrics: dict[str, float]


def sample_step(
    draw: Callable[[int], list[Prompt]],
    rollout: Callable[[list[Prompt]], RolloutBatch],
    cursor: int,
    *,
    groups_wanted: int,
    enable: bool,
    max_num_gen_batches: int,
    pad_id: int,
) -> Sampled:
    """One step's scored batch. ``draw(i)`` = prompts of generation batch ``i``; ``rollout(prompts)``
    = a scored RolloutBatch (n rows per prompt, adjacent); ``max_num_gen_batches`` ≥ 1 (the
    caller turns verl's 0 = unlimited into one epoch)."""
    if not enable:
        batch = rollout(draw(cursor))
        flags = informative_groups(batch)
        return Sampled(batch, cursor + 1, {"rollout/informative_share": sum(flags) / len(flags),
                                           "rollout/reward_mean_generated": float(batch.scores.mean())})
    if max_num_gen_batches < 1:
        raise ValueError("max_num_gen_batches must be >= 1 here")
    kept: list[tuple[RolloutBatch, list[int]]] = []
    uniform: list[tuple[RolloutBatch, list[list[int]]]] = []
    n_kept = n_groups = n_informative = uniform_rows = surplus_rows = drawn = 0
    score_sum, score_count = 0.0, 0
    while n_kept < groups_wanted and drawn < max_num_gen_batches:
        batch = rollout(draw(cursor))
        cursor += 1
        drawn += 1
        rows = group_rows(batch)
        flags = informative_groups(batch)
        score_sum, score_count = score_sum + float(batch.scores.sum()), score_count + len(batch.scores)
        n_groups += len(flags)
        n_informative += sum(flags)
        good = [r for r, f in zip(rows, flags) if f]
        bad = [r for r, f in zip(rows, flags) if not f]
        uniform_rows += sum(len(r) for r in bad)
        take = good[: groups_wanted - n_kept]
        surplus_rows += sum(len(r) for r in good[len(take) :])
        if take:
            kept.append((batch, [i for r in take for i in r]))
            n_kept += len(take)
        if bad:
            uniform.append((batch, bad))
    exhausted = n_kept < groups_wanted
    missing = groups_wanted - n_kept
    for batch, bad in uniform:  # top up with uniform groups: zero advantage, the batch keeps its size
        if missing == 0:
            break
        take = bad[:missing]
        kept.append((batch, [i for r in take for i in r]))
        missing -= len(take)
    metrics = {
        "rollout/informative_share": n_informative / n_groups,
        "rollout/reward_mean_generated": score_sum / score_count,
        "rollout/num_gen_batches": float(drawn),
        "rollout/filter_groups_exhausted": float(exhausted),
        "training/filter_groups/evicted_samples": float(uniform_rows),
        "training/filter_groups/discarded_surplus_samples": float(surplus_rows),
    }
    return Sampled(merge(kept, pad_id), cursor, metrics)
