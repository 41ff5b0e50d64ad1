"""Seeds across arms: what an arm's seeds change, and which cells of two arms pair by seed.

In a study, the cells of different arms with the same ``rlreg.seed`` share that seed's
randomness by design: ``train.seed`` (prompt order, rollout sampling), ``eval.seed`` (the eval's
sampling seeds) and the shared stages (convert, SFT: one run each). So seed s of arm A and seed s
of arm B are a pair, and the per-seed difference B − A is what varies over training seeds
(docs/statistics.md, "Paired by seed"). Which randomness a pair shares is read from the runs —
equal ``train.seed`` / ``eval.seed`` params and equal stage cache keys — not assumed.

An arm without a train stage (a study's SFT baseline: convert, sft, eval) is no sample of
training seeds: its seed reaches only the eval's sampling seeds and its model is one shared run,
so its spread over seeds is eval sampling only; ``scope`` says that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analysis import runs as R
from analysis.arms import Arm, seed_of

TRAIN = "train"
MEASURE_STAGES = ("eval", "entropy", "bfcl", "generate")  # read a model, do not make one
TAG_CACHE_KEY = "rlreg.cache_key"
STAGE_ORDER = ("convert", "sft", "train", "merge")
SEED_PARAMS = (("train.seed", "prompt order, rollout sampling"), ("eval.seed", "eval sampling"))


@dataclass(frozen=True)
class Scope:
    """What the seeds of one arm change."""

    trained: bool
    variation: str  # "training-seed variation" or "eval-sampling variation only"
    why: str = ""  # for an arm without training: why its spread is not training seeds

    def of(self, label: str) -> str:
        return f"{self.variation} for {label}" + (f" ({self.why})" if self.why else "")


TRAINED = Scope(True, "training-seed variation")


def _key(kid: R.RunRecord) -> str:
    return kid.tags.get(TAG_CACHE_KEY) or R.data_run_id(kid)


def scope(arm: Arm) -> Scope:
    """Trained unless the arm's cells are known to have no train stage: every cell has stage
    children and none is ``train``, and no ``train.*`` param was used."""
    kids = [k for k in arm.children if k]
    if not kids or len(kids) < len(arm.runs) or any(TRAIN in k for k in kids):
        return TRAINED
    if any(p.startswith(TRAIN + ".") for r in arm.runs for p in r.params):
        return TRAINED
    makers = sorted({s for k in kids for s in k if s not in MEASURE_STAGES})
    varying = [s for s in makers if len({_key(k[s]) if s in k else "" for k in kids}) > 1]
    if not varying:
        model = "the SFT model" if "sft" in makers else "the model"
        return Scope(False, "eval-sampling variation only",
                     f"it has no train stage: its seeds change only the eval's sampling seeds; {model} is one shared run")
    return Scope(False, f"variation of its {', '.join(varying)} runs and eval sampling",
                 f"it has no train stage; its {', '.join(varying)} stage differs between its cells")


@dataclass(frozen=True)
class SeedPairs:
    seeds: list[str]  # seeds both arms have, in the arms' order
    a: list[float]
    b: list[float]
    only_a: list[str]
    only_b: list[str]
    shares: list[str]  # what a pair's two cells share, read from the runs

    @property
    def n(self) -> int:
        return len(self.seeds)

    def left_out(self, label_a: str, label_b: str) -> str:
        parts = [f"{label} seed{'s' if len(s) > 1 else ''} {', '.join(s)}" for label, s in
                 ((label_a, self.only_a), (label_b, self.only_b)) if s]
        n = len(self.only_a) + len(self.only_b)
        return f"left out of the pairing: {n} seed{'s' if n > 1 else ''} only one arm has ({'; '.join(parts)})" if n else ""


def _by_seed(arm: Arm, values: Sequence[float | None]) -> dict[str, tuple[float, int]]:
    """``{seed: (value, index of the run in the arm)}`` for the runs with a seed and a value."""
    out = {}
    for i, (run, value) in enumerate(zip(arm.runs, values)):
        seed = seed_of(run)
        if seed and value is not None:
            out[seed] = (float(value), i)
    return out


def pairs(a: Arm, b: Arm, values_a: Sequence[float | None], values_b: Sequence[float | None]) -> SeedPairs:
    """Cells of ``a`` and ``b`` matched by seed (per-run values aligned with ``arm.runs``)."""
    xa, xb = _by_seed(a, values_a), _by_seed(b, values_b)
    seeds = [s for s in xa if s in xb]
    return SeedPairs(seeds, [xa[s][0] for s in seeds], [xb[s][0] for s in seeds],
                     [s for s in xa if s not in xb], [s for s in xb if s not in xa],
                     _shares(a, b, [(xa[s][1], xb[s][1]) for s in seeds]))


def _shares(a: Arm, b: Arm, index: Sequence[tuple[int, int]]) -> list[str]:
    if not index:
        return []
    out = []
    for param, what in SEED_PARAMS:
        if all(a.runs[i].params.get(param) is not None and a.runs[i].params.get(param) == b.runs[j].params.get(param)
               for i, j in index):
            out.append(f"{param} ({what})")
    kids = [(a.children[i] if i < len(a.children) else {}, b.children[j] if j < len(b.children) else {})
            for i, j in index]
    stages = sorted((s for s in kids[0][0] if s in kids[0][1]), key=lambda s: (STAGE_ORDER.index(s) if s in STAGE_ORDER
                                                                          else len(STAGE_ORDER), s))
    same = [s for s in stages if s not in MEASURE_STAGES
            and all(s in ka and s in kb and _key(ka[s]) == _key(kb[s]) for ka, kb in kids)]
    if same:
        out.append(f"the same {', '.join(same)} run{'s' if len(same) > 1 else ''}")
    return out


def spread(label_a: str, label_b: str, scopes: Mapping[str, Scope]) -> str:
    """What the seed-to-seed spread of a difference is: ``training-seed variation`` when both arms
    train, else each arm's own scope."""
    sa, sb = scopes[label_a], scopes[label_b]
    if sa.trained and sb.trained:
        return TRAINED.variation
    return f"{sb.of(label_b)} and {sa.of(label_a)}"
