"""The entropy value: ``decode_batch`` against a closed form (scripted logits) and against a
direct full-forward computation on a real tiny transformers model (KV cache + left padding)."""

from __future__ import annotations

import math

import pytest
import torch
from entropy_scripted import VOCAB, ScriptedStepModel, vocab_decode

from runners.entropy.decoding import HFStepModel, decode_batch


def closed_form_normalised_entropy(strength: float, vocab: int, temperature: float) -> float:
    """One logit = strength, the other V-1 logits = 0, scaled by 1/τ: H / log V."""
    z = strength / temperature
    denom = math.exp(z) + vocab - 1
    p, q = math.exp(z) / denom, 1 / denom
    return -(p * math.log(p) + (vocab - 1) * q * math.log(q)) / math.log(vocab)


END, STOP, X, Y = 0, 1, VOCAB.index("x"), VOCAB.index("y")


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_first_k_entropies_match_closed_form_and_stop_reasons(temperature):
    # Row 0: x y x </tool_call> …  Row 1: y <end>.  Row 2: x x x x x (hits max_new_tokens).
    targets = [[X, Y, X, STOP, X], [Y, END], [X] * 8]
    strengths = [[4.0, 1.0, 0.5, 6.0, 2.0], [3.0, 2.0], [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
    model = ScriptedStepModel(targets, strengths)
    gens = decode_batch(model, [[1, 2], [3], [4, 5, 6]], max_new_tokens=[10, 10, 5], decode=vocab_decode,
                        end_ids={END}, k=3, temperature=temperature, greedy=True)
    v = len(VOCAB)
    for g, st in zip(gens, strengths):
        n = min(3, len(g.token_ids))
        assert g.entropies == pytest.approx([closed_form_normalised_entropy(s, v, temperature) for s in st[:n]],
                                            rel=1e-5)
    assert (gens[0].text, gens[0].finish) == ("xyx</tool_call>", "tool_call")
    assert (gens[1].text, gens[1].finish, gens[1].token_ids) == ("y", "end", [Y, END])
    assert (gens[2].text, gens[2].finish) == ("xxxxx", "length")


def test_rows_with_no_budget_generate_nothing():
    model = ScriptedStepModel([[X, END]], [[1.0, 1.0]])
    (g,) = decode_batch(model, [[1]], max_new_tokens=[0], decode=vocab_decode, end_ids={END}, k=5)
    assert g.token_ids == [] and g.entropies == [] and model.prefill_prompts is None


def test_sampling_is_seeded_and_follows_the_scaled_distribution():
    # Uniform logits: every token is equally likely; the same seed gives the same tokens.
    model = ScriptedStepModel([[X] * 50], [[0.0] * 50], vocab_size=len(VOCAB))
    run = lambda seed: decode_batch(model, [[1]], max_new_tokens=[30], decode=vocab_decode, end_ids=set(),
                                    stop_strings=(), k=1, generator=torch.Generator().manual_seed(seed))[0]
    a, b, c = run(3), run(3), run(4)
    assert a.token_ids == b.token_ids != c.token_ids
    assert len(set(a.token_ids)) > 5  # sampled, not argmax
    assert a.entropies == [pytest.approx(1.0)]  # uniform logits: normalised entropy exactly 1


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from runners.modeling import load_model

    torch.manual_seed(0)
    model, tokenizer = load_model(tiny_model_dir, "float32", "cpu")
    return model, tokenizer


def test_hf_step_model_matches_full_forward_with_left_padding(tiny):
    """Entropies measured through the KV-cached, left-padded loop equal those of one plain forward
    pass over each (unpadded) prompt + generated tokens."""
    from runners.common.entropy import normalized_entropy
    from runners.entropy.backend_hf import end_token_ids

    model, tok = tiny
    prompts = [tok("<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n<|im_start|>assistant\n",
                   add_special_tokens=False)["input_ids"],
               tok("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]]
    assert len(prompts[0]) != len(prompts[1])  # left padding is exercised
    k, temperature = 6, 0.8
    gens = decode_batch(HFStepModel(model, tok.pad_token_id), prompts, max_new_tokens=[8, 8],
                        decode=lambda ids: tok.decode(ids, skip_special_tokens=False),
                        end_ids=end_token_ids(tok, model), k=k, temperature=temperature,
                        generator=torch.Generator().manual_seed(0))
    for prompt, g in zip(prompts, gens):
        ids = torch.tensor([prompt + g.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0]
        # Logits at position len(prompt)-1+t predict generated token t.
        direct = normalized_entropy(logits[len(prompt) - 1 : len(prompt) - 1 + len(g.entropies)], temperature)
        assert len(g.entropies) == min(k, len(g.token_ids))
        assert g.entropies == pytest.approx(direct.tolist(), abs=1e-5)
        assert all(0.0 <= h <= 1.0 for h in g.entropies)


def test_vllm_topk_estimate_is_a_lower_bound_and_exact_with_full_mass():
    from runners.entropy.backend_vllm import topk_entropy

    logits = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0])
    logp = torch.log_softmax(logits, -1)
    exact = float(-(logp.exp() * logp).sum())
    top3, mass3 = topk_entropy(sorted(logp.tolist(), reverse=True)[:3])
    assert top3 < exact and 0.0 < mass3 < 1.0
    full, mass = topk_entropy(logp.tolist())
    assert full == pytest.approx(exact, abs=1e-6) and mass == pytest.approx(1.0)
    # Raw logprobs + temperature: renormalising over all tokens reproduces the scaled entropy.
    scaled = torch.log_softmax(logits / 0.7, -1)
    exact_scaled = float(-(scaled.exp() * scaled).sum())
    assert topk_entropy(logp.tolist(), 0.7, renormalise=True)[0] == pytest.approx(exact_scaled, abs=1e-6)


def test_vllm_backend_without_vllm_names_the_extra():
    import importlib.util

    from registry.errors import MissingExtra
    from runners.entropy.backend_vllm import VLLMBackend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(MissingExtra, match=r"vllm .*pip install 'rl-registry\[vllm\]'"):
        VLLMBackend("/nowhere", dtype="auto", k=5, temperature=1.0, greedy=False, seed=0, logprobs=20)


def test_vllm_backend_against_a_fake_engine(monkeypatch, tiny_model_dir):
    """vLLM needs a GPU; a stand-in module at that boundary checks what the backend asks of the
    engine (stop string kept, full distribution, logprobs) and how it reads the answer back."""
    import sys
    import types
    from dataclasses import dataclass

    from runners.entropy.backend_vllm import VLLMBackend, topk_entropy

    @dataclass
    class Logprob:
        logprob: float

    @dataclass
    class Completion:
        text: str
        token_ids: list
        logprobs: list
        finish_reason: str
        stop_reason: object

    seen = {}
    position = {1: Logprob(math.log(0.5)), 2: Logprob(math.log(0.3)), 3: Logprob(math.log(0.1))}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            seen["llm"] = kw
            self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(get_vocab_size=lambda: 1000))

        def generate(self, prompts, params, use_tqdm=False):
            seen["params"] = [p.kw for p in params]
            return [types.SimpleNamespace(outputs=[Completion('<tool_call>{"name": "f"}</tool_call>', [5, 6, 7],
                                                              [position] * 3, "stop", "</tool_call>")]),
                    types.SimpleNamespace(outputs=[Completion("bye", [8], [position], "stop", None)]),
                    types.SimpleNamespace(outputs=[Completion("cut", [9, 9], [position] * 2, "length", None)])]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    backend = VLLMBackend(str(tiny_model_dir), dtype="auto", k=2, temperature=1.0, greedy=False, seed=3, logprobs=20)
    assert backend.estimator == "vllm_topk_lower_bound" and seen["llm"]["logprobs_mode"] == "processed_logprobs"
    gens = backend.generate([[1, 2], [3], [4]], [16, 16, 2])
    assert [g.finish for g in gens] == ["tool_call", "end", "length"]
    h, mass = topk_entropy([math.log(0.5), math.log(0.3), math.log(0.1)])
    assert gens[0].entropies == pytest.approx([h / math.log(1000)] * 2) and len(gens[1].entropies) == 1
    assert gens[0].topk_mass == pytest.approx([0.9, 0.9]) and mass == pytest.approx(0.9)
    p = seen["params"][0]
    assert p["stop"] == ["</tool_call>"] and p["include_stop_str_in_output"] and p["logprobs"] == 20
    assert (p["top_p"], p["top_k"], p["max_tokens"]) == (1.0, -1, 16) and seen["params"][2]["max_tokens"] == 2


def test_a_tokenizer_without_chat_template_is_a_clear_error(tiny):
    import copy

    from registry.errors import InputDataError
    from runners.entropy.backend_hf import render_chat

    _, tok = tiny
    assert render_chat(tok, [{"role": "user", "content": "hi"}], None).endswith("<|im_start|>assistant\n")
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(InputDataError, match="no chat template"):
        render_chat(bare, [{"role": "user", "content": "hi"}], None)
