"""Seed-paired verdicts and what an arm's seeds cover, on synthetic studies in a real sqlite store
(cells written with the study tags contract; analysis.synthetic): the paired verdict is
scipy.stats.ttest_rel on the per-seed values matched by ``rlreg.seed``, the Welch result goes
along, mismatched seed sets pair the common seeds, ``--unpaired-seeds`` turns it off, and an arm
without a train stage is said to vary eval sampling only."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from analysis import compare, power, render, report, synthetic
from analysis.stats import mean_ci
from registry.cli import main

ACC = "eval/accuracy_mean"
SFT_WHY = ("eval-sampling variation only for sft (it has no train stage: its seeds change only the eval's "
           "sampling seeds; the SFT model is one shared run)")


@pytest.fixture(scope="module")
def store(tmp_path_factory, _store_template):
    db = tmp_path_factory.mktemp("analysis-seedpair") / "mlflow.db"
    shutil.copy(_store_template, db)
    uri = f"sqlite:///{db}"
    client = mlflow.MlflowClient(uri)
    cells = {
        "matched": synthetic.study(client, "matched", {"grpo": 0.5, "egpo": 0.58}, seeds=(1, 2, 3)),
        "shifted": synthetic.study(client, "shifted", {"grpo": 0.5, "egpo": 0.58}, seeds=(1, 2, 3, 4),
                                   arm_seeds={"egpo": (2, 3, 4, 5)}),
        "apart": synthetic.study(client, "apart", {"grpo": 0.5, "egpo": 0.58}, seeds=(1, 2),
                                 arm_seeds={"egpo": (2, 3)}),
        "sft": synthetic.study(client, "with-sft", {"sft": 0.5, "grpo": 0.52, "egpo": 0.55}, seeds=(1, 2, 3),
                               untrained=("sft",)),
    }
    return uri, client, cells


def _by_seed(runs) -> dict[str, float]:
    return {str(r.spec["seed"]): mean_ci(r.accuracy).mean for r in runs}


def test_matched_seeds_are_paired_by_seed_and_equal_ttest_rel(store):
    _, client, cells = store
    comp = compare.build(client, [], study="matched")
    d = comp.row(ACC).diffs[1]
    g, e = _by_seed(cells["matched"]["grpo"]), _by_seed(cells["matched"]["egpo"])
    seeds = ["1", "2", "3"]
    ref = sps.ttest_rel([e[s] for s in seeds], [g[s] for s in seeds])
    ci = ref.confidence_interval(0.95)
    assert d.unit == "training seeds (paired by seed)" and d.test == "paired t" and d.n == (3, 3)
    assert (d.ci.diff, d.ci.low, d.ci.high, d.ci.p) == pytest.approx(
        (np.mean([e[s] - g[s] for s in seeds]), ci.low, ci.high, ref.pvalue))
    assert d.covers.startswith("training-seed variation of the difference, paired by seed on the 3 seeds both "
                               "arms ran (1, 2, 3); a seed's two cells share train.seed (prompt order, rollout "
                               "sampling), eval.seed (eval sampling)")
    # the power line is the paired one: the sd of the per-seed differences
    sd = float(np.std([e[s] - g[s] for s in seeds], ddof=1))
    assert f"sd of the per-seed differences {sd * 100:.1f} pts" in d.power_note
    assert f"±{power.mde(sd, 3, paired=True) * 100:.1f} pts" in d.power_note
    assert f"≈ {power.n_needed(0.02, sd, paired=True)} seeds in both arms" in d.power_note
    # the unpaired Welch is kept and shown
    welch = sps.ttest_ind(list(e.values()), list(g.values()), equal_var=False)
    assert d.unpaired is not None and d.unpaired.unit == "training seeds"
    assert d.unpaired.ci.p == pytest.approx(welch.pvalue) and d.unpaired.ci.p != pytest.approx(d.ci.p)
    text = render.to_text(comp)
    assert "(95% CI over training seeds (paired by seed), n = 3 seed pairs, paired t)" in text
    assert text.count("Unpaired (Welch over each arm's seeds, the seed pairing ignored): ") >= 2  # verdict + table
    # the unit/coverage paragraph is printed where it changes; "as above" always means the line above
    section = text.split("Differences (95% CI")[1].split("\n\nNotes:")[0]
    n_diffs = section.count("  [primary] ") + section.count("  [secondary] ")
    assert n_diffs >= 2 and section.count("unit and coverage: as above") >= 1
    last = None
    for line in section.splitlines():
        if line.startswith("      unit: "):
            last = line
        elif line == "      unit and coverage: as above":
            assert last is not None
    md = report.to_markdown(report.build_report(client, [], study="matched"))
    assert "Unpaired (Welch over each arm's seeds" in md


def test_pairs_follow_the_seed_tag_not_the_run_order(store):
    """grpo ran seeds 1–4, egpo 2–5: seeds 2, 3, 4 pair (index pairing would match 1↔2, …)."""
    _, client, cells = store
    d = compare.build(client, [], study="shifted").row(ACC).diffs[1]
    g, e = _by_seed(cells["shifted"]["grpo"]), _by_seed(cells["shifted"]["egpo"])
    common = ["2", "3", "4"]
    ref = sps.ttest_rel([e[s] for s in common], [g[s] for s in common])
    assert d.unit == "training seeds (paired by seed)" and d.n == (3, 3)
    assert (d.ci.diff, d.ci.p) == pytest.approx((np.mean([e[s] - g[s] for s in common]), ref.pvalue))
    assert "the 3 seeds both arms ran (2, 3, 4)" in d.covers
    assert d.covers.endswith("left out of the pairing: 2 seeds only one arm has (grpo seed 1; egpo seed 5)")
    # the unpaired line is over every seed of each arm
    welch = sps.ttest_ind(list(e.values()), list(g.values()), equal_var=False)
    assert d.unpaired.n == (4, 4) and d.unpaired.ci.p == pytest.approx(welch.pvalue)


def test_one_common_seed_is_no_pairing(store):
    _, client, cells = store
    d = compare.build(client, [], study="apart").row(ACC).diffs[1]
    g, e = _by_seed(cells["apart"]["grpo"]), _by_seed(cells["apart"]["egpo"])
    welch = sps.ttest_ind(list(e.values()), list(g.values()), equal_var=False)
    assert d.unit == "training seeds" and d.test == "Welch" and d.unpaired is None
    assert d.ci.p == pytest.approx(welch.pvalue)
    assert d.covers.endswith("not paired by seed: the arms have 1 seed in common (2 needed)")


def test_unpaired_seeds_option(store, tmp_path):
    uri, client, cells = store
    comp = compare.build(client, [], study="matched", pair_seeds=False)
    d = comp.row(ACC).diffs[1]
    g, e = _by_seed(cells["matched"]["grpo"]), _by_seed(cells["matched"]["egpo"])
    welch = sps.ttest_ind(list(e.values()), list(g.values()), equal_var=False)
    assert d.unit == "training seeds" and d.unpaired is None and d.ci.p == pytest.approx(welch.pvalue)
    assert any(n.startswith("--unpaired-seeds: ") for n in comp.notes)

    run = CliRunner().invoke
    res = run(main, ["compare", "--study", "matched", "--format", "json", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    acc = next(m for m in json.loads(res.output)["metrics"] if m["metric"] == ACC)["diffs"][0]
    assert acc["unit"] == "training seeds (paired by seed)" and acc["unpaired"]["p"] == pytest.approx(welch.pvalue)
    res = run(main, ["compare", "--study", "matched", "--unpaired-seeds", "--format", "json", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    acc = next(m for m in json.loads(res.output)["metrics"] if m["metric"] == ACC)["diffs"][0]
    assert acc["unit"] == "training seeds" and acc["unpaired"] is None and acc["p"] == pytest.approx(welch.pvalue)
    res = run(main, ["report", "--study", "matched", "--unpaired-seeds", "--no-log", "-o", str(tmp_path / "r.md"),
                     "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "r.md").read_text()
    assert "over training seeds, n = 3 vs 3, Welch" in md and "Unpaired (Welch" not in md


def test_an_arm_without_training_varies_eval_sampling_only(store):
    _, client, cells = store
    comp = compare.build(client, [], study="with-sft")
    assert comp.labels == ["sft", "grpo", "egpo"]
    assert not comp.scopes["sft"].trained and comp.scopes["grpo"].trained
    row = comp.row(ACC)
    for d, arm in zip(row.diffs[1:], ("grpo", "egpo")):
        assert d.unit == "training seeds (paired by seed)"
        assert f"variation over seeds of the difference, paired by seed on the 3 seeds both arms ran (1, 2, 3): " \
               f"training-seed variation for {arm} and {SFT_WHY}; a seed's two cells share eval.seed " \
               "(eval sampling), the same convert run," in d.covers
        assert "train.seed" not in d.covers  # the SFT cells have no training to share
        assert "training-seed variation for" in d.unpaired.covers and SFT_WHY in d.unpaired.covers
        s, r = _by_seed(cells["sft"]["sft"]), _by_seed(cells["sft"][arm])
        assert d.ci.p == pytest.approx(sps.ttest_rel([r[k] for k in "123"], [s[k] for k in "123"]).pvalue)
    text = render.to_text(comp)
    assert "sft: 3 runs (" in text and f"); {SFT_WHY.replace(' for sft', '')}" in text
    assert "The interval covers training-seed variation: 3 vs 3" not in text
    # unpaired, the Welch sentence says the same
    d = compare.build(client, [], study="with-sft", pair_seeds=False).row(ACC).diffs[1]
    assert d.covers.startswith(f"training-seed variation for grpo and {SFT_WHY}: 3 vs 3 seeds")
    # the two RL arms alone: plain training seeds
    d = compare.build(client, [], study="with-sft", where="tags.`rlreg.arm` != 'sft'").row(ACC).diffs[1]
    assert d.covers.startswith("training-seed variation of the difference, paired by seed")


def test_an_untrained_arm_whose_sft_differs_says_so(tmp_path, _store_template):
    shutil.copy(_store_template, tmp_path / "mlflow.db")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for arm in ("base", "rl"):
        for seed in (1, 2):
            spec = synthetic.demo_spec(f"demo-{arm}", False) | {"seed": seed}
            stages = ("convert", "train", "eval")
            if arm == "base":
                del spec["train"]
                stages = ("convert", "sft", "eval")
            tags = {"rlreg.study": "s", "rlreg.arm": arm, "rlreg.seed": str(seed), "rlreg.cell": f"{arm}/seed={seed}"}
            synthetic.write_spec_run(client, spec, seed=seed, tags=tags, stages=stages,
                                     cache_keys={"convert": "c", "sft": f"sft-{seed}"})
    comp = compare.build(client, [], study="s")
    assert not comp.scopes["base"].trained
    assert comp.scopes["base"].variation == "variation of its sft runs and eval sampling"
    d = comp.row(ACC).diffs[1]
    assert "variation of its sft runs and eval sampling for base (it has no train stage; its sft stage differs " \
           "between its cells)" in d.covers and "the same convert run" in d.covers


def test_the_worked_example_of_docs_statistics():
    from analysis.verdict import seed_paired_diff

    g, e = [0.55, 0.58, 0.52], [0.61, 0.66, 0.59]
    d = seed_paired_diff(ACC, "grpo", "egpo", g, e, seeds=["1", "2", "3"])
    assert d.sentence() == ("eval/accuracy_mean: egpo − grpo = +7.0 pts [+4.5, +9.5] (95% CI over training seeds "
                            "(paired by seed), n = 3 seed pairs, paired t): higher (p = 0.0067).")
    assert "sd of the per-seed differences 1.0 pts" in d.power_note and "±3.3 pts" in d.power_note
    assert "≈ 5 seeds in both arms" in d.power_note
    swapped = seed_paired_diff(ACC, "grpo", "egpo", g, [0.61, 0.59, 0.66], seeds=["1", "2", "3"])
    assert (round(swapped.ci.low, 3), round(swapped.ci.high, 3), round(swapped.ci.p, 2)) == (-0.093, 0.233, 0.21)
    # no spread in the differences: the difference is what it is
    same = seed_paired_diff(ACC, "grpo", "egpo", [0.5, 0.6], [0.5, 0.6], seeds=["1", "2"])
    assert same.verdict == "identical" and same.ci.p == 1.0
    # differences equal up to float noise are no spread either (not "higher, p = 1e-16")
    noise = seed_paired_diff(ACC, "grpo", "egpo", [0.1 + 0.2, 0.3], [0.3, 0.1 + 0.2], seeds=["1", "2"])
    assert noise.verdict == "identical" and noise.ci.low == noise.ci.high == 0.0
