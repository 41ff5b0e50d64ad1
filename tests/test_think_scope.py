"""EGPO's entropy scope on Qwen3-Thinking-style chat templates (issue 15): the prompt opens
``<think>``, responses hold only ``</think>``, truncated responses hold no tag, multi-turn rollouts
mask tool output inside the response. Expected masks and bonuses are written out by hand."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.common.advantages import (
    DEFAULT_ENTROPY_SCOPE,
    egpo,
    egpo_token,
    grpo,
    prompt_opens_think,
    think_span_mask,
    think_token_ids,
)

OPEN, CLOSE = 9, 7  # not 0/1: ids always come from the tokenizer
A, B, C, EOS, PAD, TOOL = 1, 2, 3, 5, 0, 4


def rows(*seqs, width=None):
    """Right-padded responses and their masks; ``None`` marks a masked (tool output) token."""
    width = width or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD)
    mask = torch.zeros(len(seqs), width)
    for i, seq in enumerate(seqs):
        for j, tok in enumerate(seq):
            ids[i, j] = TOOL if tok is None else tok
            mask[i, j] = 0.0 if tok is None else 1.0
    return ids, mask


def left_padded(*prompts):
    width = max(len(p) for p in prompts)
    return torch.tensor([[PAD] * (width - len(p)) + list(p) for p in prompts])


# -- the chat template decides -------------------------------------------------------------------

THINKING_TEMPLATE = (  # what Qwen3-4B-Thinking-2507's template does at the end: open the block
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
NO_THINK_TEMPLATE = (  # Qwen3 hybrid with enable_thinking=False: an empty, closed block
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}"
)
PLAIN_TEMPLATE = (  # the model opens the block itself (or never thinks)
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "user": 4, "assistant": 5, "hi": 6, "</think>": 17, "<think>": 18}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    hf.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    return hf


def _prompt_ids(tokenizer, template, history=()):
    messages = [*history, {"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_rendered_prompt_says_whether_the_template_opened_think(tokenizer):
    open_id, close_id = think_token_ids(tokenizer)
    assert (open_id, close_id) == (18, 17)
    thinking = _prompt_ids(tokenizer, THINKING_TEMPLATE)
    no_think = _prompt_ids(tokenizer, NO_THINK_TEMPLATE)
    plain = _prompt_ids(tokenizer, PLAIN_TEMPLATE)
    # an earlier assistant turn that thought and closed its block does not open the next one
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think> b </think> c"}]
    plain_with_history = _prompt_ids(tokenizer, PLAIN_TEMPLATE, history)
    thinking_with_history = _prompt_ids(tokenizer, THINKING_TEMPLATE, history)
    width = max(map(len, (thinking, no_think, plain, plain_with_history, thinking_with_history)))
    left = torch.tensor([[0] * (width - len(p)) + p for p in (thinking, no_think, plain, plain_with_history, thinking_with_history)])
    right = torch.tensor([p + [0] * (width - len(p)) for p in (thinking, no_think, plain, plain_with_history, thinking_with_history)])
    expected = [True, False, False, False, True]
    assert prompt_opens_think(left, open_id, close_id).tolist() == expected
    assert prompt_opens_think(right, open_id, close_id).tolist() == expected  # verl v1 pads at the end


# -- single-turn masks, by hand ------------------------------------------------------------------


def test_prompt_opened_think_block():
    ids, mask = rows(
        [A, B, CLOSE, C, EOS],  # the Qwen3-Thinking shape: only the closing tag
        [A, B, C, A, B],  # truncated at max_response_length: no tag at all
        [CLOSE, C, EOS],  # the model closed the block at once: empty span
        [OPEN, A, CLOSE, C],  # a response that opens its own block anyway: after its <think>
        width=5,
    )
    prompts = left_padded([C, OPEN], [A, C, OPEN], [OPEN], [C, OPEN])
    assert think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts).tolist() == [
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
    ]
    # the same responses without the prompt: the truncated one had no span (the bug)
    assert think_span_mask(ids, mask, OPEN, CLOSE)[1].sum() == 0


def test_prompt_that_did_not_open_think():
    ids, mask = rows(
        [A, B, C, A],  # truncated, no tag, non-thinking template: no chain of thought
        [OPEN, A, B, C],  # opened by the model and truncated: to the end
        [OPEN, CLOSE, C, EOS],  # empty think block
        [A, CLOSE, C, EOS],  # a close with no open still means the block was open
    )
    prompts = left_padded([OPEN, A, CLOSE, B], [A], [A, B], [C])  # row 0: <think> … </think> in the prompt
    assert think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts).tolist() == [
        [0, 0, 0, 0],
        [0, 1, 1, 1],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
    ]


def test_non_contiguous_mask_holes_stay_out_of_the_span():
    # the old code cut each row at sum(mask) tokens: with a 3-token hole it never saw this </think>
    ids, mask = rows([A, B, None, None, None, C, CLOSE, C, EOS])
    prompts = left_padded([OPEN])
    assert think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts).tolist() == [[1, 1, 0, 0, 0, 1, 0, 0, 0]]
    ids, mask = rows([OPEN, A, None, None, B, CLOSE, C])
    assert think_span_mask(ids, mask, OPEN, CLOSE).tolist() == [[0, 1, 0, 0, 1, 0, 0]]


def test_multi_turn_rollouts():
    # turn 1 thinks and calls a tool; the masked tool response ends with the template's
    # generation prompt, which opens <think> again (Qwen3-Thinking); turn 2 thinks, then answers
    ids, mask = rows([A, CLOSE, C, EOS, None, None, None, B, B, CLOSE, C, EOS])
    ids[0, 6] = OPEN  # inside the masked tokens
    prompts = left_padded([OPEN])
    assert think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts).tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    ]
    # a template that does not reopen it: a second turn without tags has no span
    ids[0, 6], ids[0, 9] = TOOL, C
    assert think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts).tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    ]
    # a second turn truncated inside its (template-opened) block: to its end
    ids, mask = rows([A, CLOSE, C, None, None, B, B, B])
    ids[0, 4] = OPEN
    assert think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts).tolist() == [[1, 0, 0, 0, 0, 1, 1, 1]]


def test_prompt_ids_must_match_the_batch():
    ids, mask = rows([A, B])
    with pytest.raises(ValueError, match="2 rows for 1 responses"):
        think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=left_padded([A], [B]))


# -- the bonus ---------------------------------------------------------------------------------


def _outcome(scores, mask):
    rewards = torch.zeros_like(mask)
    last = torch.tensor([int(m.nonzero().max()) for m in mask])
    rewards[torch.arange(len(scores)), last] = torch.tensor(scores, dtype=rewards.dtype)
    return rewards


def test_truncated_response_of_a_thinking_model_gets_its_bonus():
    """Group of two: the truncated response (reward 0) and a finished one (reward 1).
    GRPO: A = ∓0.5/(std + 1e-6), std = sqrt(0.5). Scope entropy: row 0 = mean(0.2, 0.4, 0.6) = 0.4
    (all of it is thinking), row 1 = mean(0.1, 0.3) = 0.2 (before </think>)."""
    ids, mask = rows([A, B, C], [A, B, CLOSE])
    entropy = torch.tensor([[0.2, 0.4, 0.6], [0.1, 0.3, 5.0]])
    rewards = _outcome([0.0, 1.0], mask)
    cfg = {"egpo_lambda": 1.0, "egpo_alpha": 2.0}
    scope = think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=left_padded([OPEN], [OPEN]))
    assert scope.tolist() == [[1, 1, 1], [1, 1, 0]]
    adv, _, stats = egpo(rewards, mask, [0, 0], config=cfg, entropy=entropy, scope_mask=scope)
    a = 0.5 / (0.5**0.5 + 1e-6)
    # bonus = min(λ·E, |A|/α) with |A|/2 ≈ 0.354: row 0's 0.4 is capped, row 1's 0.2 is not
    assert adv[0].tolist() == pytest.approx([-a + min(0.4, a / 2)] * 3, rel=1e-6)
    assert adv[1].tolist() == pytest.approx([a + 0.2] * 3, rel=1e-6)
    assert stats["egpo/empty_scope_frac"] == 0.0
    # without the prompt the truncated response had an empty scope and no bonus
    old_scope = think_span_mask(ids, mask, OPEN, CLOSE)
    adv_old, _, stats_old = egpo(rewards, mask, [0, 0], config=cfg, entropy=entropy, scope_mask=old_scope)
    assert adv_old[0].tolist() == pytest.approx([-a] * 3, rel=1e-6) and stats_old["egpo/empty_scope_frac"] == 0.5


def test_lambda_zero_is_grpo_exactly_on_any_scope():
    ids, mask = rows([A, B, None, C, CLOSE, C], [A, A, A, A, A, A], [OPEN, CLOSE, C, EOS], [A, EOS])
    prompts = left_padded([OPEN], [OPEN], [A], [B])
    scope = think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts)
    rewards = _outcome([1.0, 0.0, 0.0, 1.0], mask)
    entropy = torch.rand(4, 6, generator=torch.Generator().manual_seed(0))
    base, _, _ = grpo(rewards, mask, [0, 0, 1, 1], config={})
    for fn in (egpo, egpo_token):
        adv, _, _ = fn(rewards, mask, [0, 0, 1, 1], config={"egpo_lambda": 0.0}, entropy=entropy, scope_mask=scope)
        assert torch.equal(adv, base)


# -- defaults ----------------------------------------------------------------------------------


def test_each_estimator_defaults_to_its_papers_scope():
    from registry.spec import train as train_spec
    from registry.spec.train import AlgorithmSpec

    assert train_spec.DEFAULT_ENTROPY_SCOPE == DEFAULT_ENTROPY_SCOPE
    assert AlgorithmSpec(adv_estimator="egpo").entropy_scope == "think"  # Hao et al.
    assert AlgorithmSpec(adv_estimator="egpo_token").entropy_scope == "response"  # Cheng et al.
    assert AlgorithmSpec(adv_estimator="egpo_token", entropy_scope="think").entropy_scope == "think"
    assert AlgorithmSpec().entropy_scope == "think"  # grpo ignores it; unchanged dump, unchanged cache key


# -- single-turn responses without prompts: the rule before this change ------------------------


def _previous_rule(response_ids, response_mask, think_open_id, think_close_id):
    """think_span_mask as it was (contiguous, left-aligned masks only), kept as the reference."""
    mask = torch.zeros_like(response_mask, dtype=torch.float32)
    for row, (ids, ok) in enumerate(zip(response_ids.tolist(), response_mask.bool().tolist())):
        length = sum(ok)
        ids = ids[:length]
        close = ids.index(think_close_id) if think_close_id in ids else None
        end = close if close is not None else length
        opens = [i for i in range(end) if ids[i] == think_open_id]
        start = opens[-1] + 1 if opens else (0 if close is not None else None)
        if start is not None and end > start:
            mask[row, start:end] = 1.0
    return mask * response_mask.float()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from([A, B, OPEN, CLOSE]), min_size=1, max_size=10), min_size=1, max_size=5),
       st.lists(st.booleans(), min_size=5, max_size=5))
def test_contiguous_masks_keep_the_previous_rule(seqs, opened):
    ids, mask = rows(*seqs, width=12)
    assert torch.equal(think_span_mask(ids, mask, OPEN, CLOSE), _previous_rule(ids, mask, OPEN, CLOSE))
    # the prompt only matters for a response with no </think>, and then only without its own <think>
    prompts = left_padded(*[[OPEN] if o else [A] for o in opened[: len(seqs)]])
    new = think_span_mask(ids, mask, OPEN, CLOSE, prompt_ids=prompts)
    old = _previous_rule(ids, mask, OPEN, CLOSE)
    for i, seq in enumerate(seqs):
        if CLOSE in seq or OPEN in seq or not opened[i]:
            assert torch.equal(new[i], old[i])
        else:
            assert new[i].tolist() == mask[i].tolist()  # all of it is thinking
