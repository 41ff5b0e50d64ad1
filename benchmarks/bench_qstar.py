"""q* benchmarks (issue 8): the α solve, and the whole decoding loop's overhead.

    .venv/bin/python benchmarks/bench_qstar.py            # both parts, ~2-4 min on 2 cores
    .venv/bin/python benchmarks/bench_qstar.py --part solve --threads 1

Part 1 — KL-symmetry α for 64 positions × V = 32k, all in one run:
  * ``bisect-loop``: the seed's method, a Python loop over positions, 20 bisection steps each over
    the full vocabulary (torch);
  * ``newton-full``: batched safeguarded Newton over the full vocabulary (the GPU path);
  * ``compact``: the shipped CPU path (support {π > ε} + lumped tail, exact fallback for heavy tails).
  Accuracy of each against scipy brentq in float64 on the full vocabulary: max |Δα| and the largest
  |KL(q‖π_θ) − KL(q‖π_t)| / KL(q‖π_θ) at the returned α.
  Rows are "LLM-like": a N(0, 1) bulk of junk logits plus 30 plausible tokens 8-16 nats above it
  (entropy ≈ 2 nats); π_t = π_θ's logits + N(0, 0.7²) noise. A "flat" set (every token similar)
  shows the fallback's cost.

Part 2 — the same two tiny Qwen2 models (V = 32k), the same prompts and lengths (no EOS):
  plain two-model decoding (both forwards, sample from π_θ) vs q* decoding for each α method.
  Times are medians over interleaved repeats (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.generate import qstar
from runners.generate.decode import decode, tune_cpu_malloc
from runners.generate.mixer import QStarMixer, ThetaOnlyMixer


# -- inputs -------------------------------------------------------------------------------------
def llm_like(batch: int, vocab: int, seed: int, noise: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, vocab, generator=g)
    idx = torch.randint(0, vocab, (batch, 30), generator=g)
    z.scatter_(1, idx, 8 + 8 * torch.rand(batch, 30, generator=g))
    zt = z + noise * torch.randn(batch, vocab, generator=g)
    return torch.log_softmax(z, -1), torch.log_softmax(zt, -1)


def flat(batch: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, vocab, generator=g) * 2
    return torch.log_softmax(z, -1), torch.log_softmax(z + torch.randn(batch, vocab, generator=g), -1)


# -- solvers under test -------------------------------------------------------------------------
def bisect_loop(lth: torch.Tensor, lt: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """The seed's approach: per position, 20 bisection steps over the whole vocabulary."""
    out = torch.empty(lth.shape[0])
    for row in range(lth.shape[0]):
        a, b = lth[row], lt[row]
        ell = b - a
        lo, hi = 0.0, 1.0
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            q = torch.softmax(a + mid * ell, -1)
            if float((q * ell).sum()) < 0:
                lo = mid
            else:
                hi = mid
        out[row] = 0.5 * (lo + hi)
    return out


def reference(lth: torch.Tensor, lt: torch.Tensor) -> np.ndarray:
    from scipy.optimize import brentq
    from scipy.special import logsumexp

    out = []
    for a, b in zip(lth.double().numpy(), lt.double().numpy()):
        ell = b - a

        def f(x, a=a, ell=ell):
            m = a + x * ell
            return float(np.sum(np.exp(m - logsumexp(m)) * ell))

        out.append(brentq(f, 0.0, 1.0, xtol=1e-13))
    return np.array(out)


def kl_gap(lth: torch.Tensor, lt: torch.Tensor, alpha: np.ndarray) -> float:
    d = qstar.diagnostics(lth.double(), lt.double(), qstar.log_qstar(lth.double(), lt.double(), torch.from_numpy(alpha).double()))
    return float(((d.kl_theta - d.kl_t).abs() / d.kl_theta.clamp_min(1e-12)).max())


def timeit(fn, repeats: int) -> tuple[float, float, object]:
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def part_solve(batch: int, vocab: int, repeats: int) -> None:
    print(f"\n## α solve: {batch} positions × V = {vocab}, torch threads = {torch.get_num_threads()}\n")
    print("| rows | method | ms/position (median) | ms/position (best) | max abs Δα vs brentq | max rel. KL gap | mean support | max tail mass | exact rows |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, (lth, lt) in (("llm-like", llm_like(batch, vocab, 0)), ("flat", flat(batch, vocab, 1))):
        ref = reference(lth, lt)
        ent = float(qstar.entropy_of(lth).mean())
        rows = [
            ("bisect-loop (20 steps, per position)", lambda a=lth, b=lt: bisect_loop(a, b), max(2, repeats // 5)),
            ("newton-full (batched, float32)", lambda a=lth, b=lt: qstar.solve_alpha_full(a, b, 1e-6, dtype=torch.float32)[0], repeats),
        ]
        for eps in (1e-4, 1e-5, 1e-6):
            rows.append((f"compact ε={eps:g}", (lambda e=eps, a=lth, b=lt: qstar.solve_alpha(a, b, 1e-6, support_eps=e)), repeats))
        for name, fn, reps in rows:
            med, best, res = timeit(fn, reps)
            extra = ("", "", "")
            if isinstance(res, qstar.AlphaSolve):
                alpha = res.alpha.double().numpy()
                sup = qstar.solve_alpha_compact(lth, lt, 1e-6, support_eps=float(name.split("=")[1]))
                extra = (f"{sup.support_size.mean():.0f}", f"{np.maximum(sup.tail_theta, sup.tail_t).max():.1e}", f"{res.exact_rows}")
            else:
                alpha = res.double().numpy()
            print(f"| {label} (H≈{ent:.1f}) | {name} | {1e3 * med / batch:.4f} | {1e3 * best / batch:.4f} | "
                  f"{np.abs(alpha - ref).max():.1e} | {kl_gap(lth, lt, alpha):.1e} | {extra[0]} | {extra[1]} | {extra[2]} |")


# -- whole loop ---------------------------------------------------------------------------------
def make_models(vocab: int, hidden: int, layers: int):
    """Two different Qwen2 models with one vocabulary; the LM-head rows of 300 "plausible" tokens are
    scaled up so next-token distributions are peaked like an LLM's instead of near-uniform."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = Qwen2ForCausalLM(cfg).eval()
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)  # the same plausible tokens in both models
            rows = torch.randperm(vocab, generator=g)[:300]
            m.lm_head.weight[rows] *= 25.0
        models.append(m)
    return models


def part_loop(vocab: int, batch: int, prompt_len: int, new_tokens: int, repeats: int) -> None:
    hidden, layers = 256, 4
    theta, target = make_models(vocab, hidden, layers)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, vocab, (prompt_len,), generator=g).tolist() for _ in range(batch)]

    def once(mixer):
        start = time.perf_counter()
        out = decode([theta, target], prompts, mixer, pad_id=0, eos_ids=set(), max_new_tokens=new_tokens,
                     generator=torch.Generator().manual_seed(1))
        assert all(len(t) == new_tokens for t in out.tokens)
        return time.perf_counter() - start, out

    variants = {
        "plain two-model (sample π_θ)": lambda: ThetaOnlyMixer(),
        "q* fixed α": lambda: QStarMixer("fixed"),
        "q* entropy α": lambda: QStarMixer("entropy"),
        "q* kl_symmetry α": lambda: QStarMixer("kl_symmetry"),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    stats: dict[str, object] = {}
    once(ThetaOnlyMixer())  # warm-up
    for _ in range(repeats):
        for name, factory in variants.items():  # interleaved: load changes hit every variant alike
            mixer = factory()
            elapsed, out = once(mixer)
            times[name].append(elapsed)
            stats[name] = (mixer.stats, out)
    base = statistics.median(times["plain two-model (sample π_θ)"])
    print(f"\n## whole loop: 2 × Qwen2 (hidden {hidden}, {layers} layers, V = {vocab}), batch {batch}, "
          f"prompt {prompt_len}, {new_tokens} new tokens, {repeats} interleaved repeats\n")
    print("| decoding | s per run (median) | ms per token step | overhead vs plain | α solve ms/position | exact-fallback rows |")
    print("|---|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        st, out = stats[name]
        solve = 1e3 * st.solve_seconds / max(st.positions, 1) if isinstance(st, qstar_stats_type()) else 0.0
        fallback = f"{st.exact_rows}/{st.positions}" if name.endswith("kl_symmetry α") else ""
        print(f"| {name} | {med:.3f} | {1e3 * med / new_tokens:.2f} | {100 * (med / base - 1):+.1f} % | {solve:.4f} | {fallback} |")
    kl_out = stats["q* kl_symmetry α"][1]
    ent = [v for d in kl_out.diagnostics for v in d["kl_theta"]]
    alphas = [v for d in kl_out.diagnostics for v in d["alpha"]]
    print(f"\nkl_symmetry run: mean KL(q‖π_θ) {sum(ent) / len(ent):.3f}, mean α {sum(alphas) / len(alphas):.3f}")


def qstar_stats_type():
    from runners.generate.mixer import MixerStats

    return MixerStats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["solve", "loop", "all"], default="all")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the box has 2 shared cores)")
    ap.add_argument("--vocab", type=int, default=32_000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--loop-repeats", type=int, default=5)
    ap.add_argument("--default-malloc", action="store_true", help="skip the stage's mallopt tuning")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.default_malloc:
        print(f"glibc malloc tuned (as the generate stage does on CPU): {tune_cpu_malloc()}")
    if args.part in ("solve", "all"):
        part_solve(64, args.vocab, args.repeats)
    if args.part in ("loop", "all"):
        part_loop(args.vocab, batch=8, prompt_len=32, new_tokens=48, repeats=args.loop_repeats)


if __name__ == "__main__":
    main()
