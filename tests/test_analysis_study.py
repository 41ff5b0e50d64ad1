"""Studies and N-run comparisons on a real sqlite store written with the cell tags contract
(rlreg.study/arm/seed/cell): seed-level statistics, paired per-prompt statistics from the
eval/entries.json tables, Holm, reports, plots and the CLI."""

from __future__ import annotations

import json
import re
import shutil
import time

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from analysis import compare, paired, render, report, synthetic
from analysis.entries import load_entries
from analysis.stats import mean_ci
from registry.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory, _store_template):
    db = tmp_path_factory.mktemp("analysis-study") / "mlflow.db"
    shutil.copy(_store_template, db)
    uri = f"sqlite:///{db}"
    client = mlflow.MlflowClient(uri)
    cells = synthetic.study(client, "s2x3", {"grpo": 0.5, "egpo": 0.62}, seeds=(1, 2, 3))
    return uri, client, cells


def _seed_values(cells):
    return {arm: [mean_ci(r.accuracy).mean for r in runs] for arm, runs in cells.items()}


def test_study_arms_are_seeds_and_the_verdict_is_paired_by_seed(store):
    _, client, cells = store
    comp = compare.build(client, [], study="s2x3")
    assert comp.labels == ["grpo", "egpo"] and [a.seeds for a in comp.arms] == [["1", "2", "3"]] * 2
    row = comp.row("eval/accuracy_mean")
    assert row.primary and comp.primary == "eval/accuracy_mean"
    values = _seed_values(cells)
    for cell, arm in zip(row.cells, ("grpo", "egpo")):
        ref = sps.t.interval(0.95, 2, loc=np.mean(values[arm]), scale=sps.sem(values[arm]))
        assert cell.source == "seeds" and cell.unit == "training seeds"
        assert cell.repeats == pytest.approx(values[arm])
        assert (cell.ci.low, cell.ci.high) == pytest.approx((max(0, ref[0]), min(1, ref[1])))
    d = row.diffs[1]  # the cells of one seed share its seeds: paired by seed, Welch alongside
    ref = sps.ttest_rel(values["egpo"], values["grpo"])
    assert (d.ci.diff, d.ci.p) == pytest.approx((np.mean(values["egpo"]) - np.mean(values["grpo"]), ref.pvalue))
    assert d.unit == "training seeds (paired by seed)" and d.role == "primary" and "seeds in both arms" in d.power_note
    welch = sps.ttest_ind(values["egpo"], values["grpo"], equal_var=False)
    assert d.unpaired.unit == "training seeds" and d.unpaired.ci.p == pytest.approx(welch.pvalue)
    assert "seeds per arm" in d.unpaired.power_note
    # every secondary test is Holm-adjusted (two of them here: entropy, reward)
    secondary = [r.diffs[1] for r in comp.rows if not r.primary]
    assert len(secondary) == 2 and all(np.isfinite(s.p_adjusted) and s.p_adjusted >= s.ci.p for s in secondary)
    text = render.to_text(comp)
    assert text.startswith("Verdict:\n  eval/accuracy_mean: egpo − grpo = ")
    assert "The interval covers training-seed variation of the difference, paired by seed on the 3 seeds" in text
    assert "Unpaired (Welch over each arm's seeds, the seed pairing ignored): " in text
    assert "[secondary] actor/entropy_last" in text and "Holm-adjusted p" in text


def test_single_runs_pair_per_prompt_on_the_entries_tables(store):
    _, client, cells = store
    a, b, c = cells["grpo"][0], cells["egpo"][0], cells["egpo"][1]
    comp = compare.build(client, [a.parent_id, b.parent_id, c.parent_id])
    assert len(comp.arms) == 3 and all(not arm.replicated for arm in comp.arms)
    row = comp.row("eval/accuracy_mean")
    ta, tb = (load_entries(client, r.child_ids["eval"]) for r in (a, b))
    pa, pb = paired.per_prompt(ta, "correct"), paired.per_prompt(tb, "correct")
    ids = sorted(pa)
    ref = paired.paired_diff([pa[i] for i in ids], [pb[i] for i in ids])
    d = row.diffs[1]
    assert d.unit == "prompts (paired)" and d.paired == ref and d.n == (20, 20)
    assert d.ci.diff == pytest.approx(np.mean([pb[i] - pa[i] for i in ids]))
    assert "training-seed variance is unknown" in d.covers and "3 eval repeat(s)" in d.covers
    # two arms against the baseline on the primary metric: Holm over the two
    ps = [row.diffs[1].ci.p, row.diffs[2].ci.p]
    lo, hi = sorted(ps)
    assert sorted([row.diffs[1].p_adjusted, row.diffs[2].p_adjusted]) == pytest.approx([min(1, 2 * lo), max(min(1, 2 * lo), hi)])
    wins = row.diffs[1].paired
    assert wins.wins == sum(pb[i] > pa[i] for i in ids) and wins.losses == sum(pb[i] < pa[i] for i in ids)


def test_runs_evaluated_days_apart_in_other_experiments_pair(store, mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    rows_a = synthetic.entries(1, prompts=12, repeats=2, skill=0.4)
    rows_b = synthetic.entries(2, prompts=12, repeats=2, skill=0.7)
    old = synthetic.write_spec_run(client, synthetic.demo_spec("old", False) | {"experiment": "last-week"}, repeats=2,
                                   start_time=int(time.time() * 1000) - 5 * 86_400_000, entries=rows_a)
    new = synthetic.write_spec_run(client, synthetic.demo_spec("new", True), repeats=2, entries=rows_b)
    assert client.get_run(old.parent_id).info.experiment_id != client.get_run(new.parent_id).info.experiment_id
    d = compare.build(client, ["old", "new"]).row("eval/accuracy_mean").diffs[1]
    assert d.unit == "prompts (paired)" and d.paired.n == 12


def test_entries_naming_other_prompts_are_not_paired(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    rows_a = synthetic.entries(1, prompts=10, repeats=1)
    rows_b = synthetic.entries(2, prompts=10, repeats=1)
    for r in rows_b[:3]:
        r["prompt_sha"] = "0" * 16  # same id, different prompt text
    synthetic.write_spec_run(client, synthetic.demo_spec("x1", False), repeats=1, entries=rows_a)
    synthetic.write_spec_run(client, synthetic.demo_spec("x2", True), repeats=1, entries=rows_b)
    comp = compare.build(client, ["x1", "x2"])
    d = comp.row("eval/accuracy_mean").diffs[1]
    assert d.paired.n == 7 and d.test == "paired bootstrap; McNemar exact"
    assert any("3 entry id(s) of x1 and x2 name different prompts" in n for n in comp.notes)


def test_grid_points_of_one_arm_are_separate_arms(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    for lr in ("1e-6", "1e-5"):
        for seed in (1, 2):
            tags = {"rlreg.study": "g", "rlreg.arm": "egpo", "rlreg.seed": str(seed),
                    "rlreg.cell": f"egpo/train.optim.lr={lr}/seed={seed}", "rlreg.grid": json.dumps({"lr": lr})}
            synthetic.write_spec_run(client, synthetic.demo_spec("demo-egpo", True), seed=seed, tags=tags)
    comp = compare.build(client, [], study="g")
    assert comp.labels == ["egpo/train.optim.lr=1e-6", "egpo/train.optim.lr=1e-5"]
    assert [len(a.runs) for a in comp.arms] == [2, 2]


def test_study_report_and_three_run_report(store, tmp_path):
    _, client, cells = store
    rep = report.build_report(client, [], study="s2x3")
    names = [f.name for f in rep.figures]
    assert names[:2] == ["reward.png", "entropy.png"] and "eval_repeats.png" in names
    assert all(f.png.startswith(PNG) for f in rep.figures)
    html = report.to_html(rep)
    assert html.index('id="verdict"') < html.index("<h2>Arms</h2>") < html.index('id="metrics"')
    assert "training-seed variation of the difference, paired by seed" in html and "mean ± 1 sd across seeds" in html
    assert "Unpaired (Welch over each arm&#39;s seeds" in html or "Unpaired (Welch over each arm's seeds" in html
    assert "<code>train.algorithm.adv_estimator</code>" in html and "<code>seed</code>" not in html

    three = report.build_report(client, [cells["grpo"][0].parent_id, cells["egpo"][0].parent_id,
                                         cells["grpo"][1].parent_id])
    assert [f.name for f in three.figures][-1] == "wins_losses.png"
    assert len(three.wins) == 2 and three.wins[0]["n"] == 20
    md = report.to_markdown(three)
    assert md.index("## Verdict") < md.index("## Arms") and "| pair | wins | ties | losses | prompts |" in md
    assert "| `seed` | 1 | 1 | 2 |" in md  # seeds differ between plain runs: shown as a spec difference
    written = report.write_report(three, tmp_path / "three.md")
    assert len(written) == 1 + len(three.figures)


def test_overrides_are_a_spec_row(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    synthetic.write_spec_run(client, synthetic.demo_spec("o1", False))
    synthetic.write_spec_run(client, synthetic.demo_spec("o2", False), tags={"rlreg.overrides": "train.optim.lr=1e-6"})
    rep = report.build_report(client, ["o1", "o2"], metrics=["eval/accuracy_mean"])
    assert rep.spec_rows[0].key == "overrides (rlreg.overrides)" and rep.spec_rows[0].values == ["—", "train.optim.lr=1e-6"]


def test_cli_study_prefixes_where_plot(store, tmp_path):
    uri, client, cells = store
    run = CliRunner().invoke
    res = run(main, ["compare", "--study", "s2x3", "--format", "json", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["primary"] == "eval/accuracy_mean" and [a["label"] for a in data["arms"]] == ["grpo", "egpo"]
    acc = next(m for m in data["metrics"] if m["metric"] == "eval/accuracy_mean")
    assert acc["diffs"][0]["unit"] == "training seeds (paired by seed)" and acc["role"] == "primary"
    assert acc["diffs"][0]["unpaired"]["unit"] == "training seeds"

    a, b = cells["grpo"][2].parent_id, cells["egpo"][2].parent_id
    res = run(main, ["compare", a[:8], b[:12], "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert f"run {a}" in res.output and f"run {b}" in res.output
    res = run(main, ["compare", a[:8], "abcdef0", "--tracking-uri", uri])
    assert res.exit_code == 2 and "no run id starts with 'abcdef0'" in res.output

    res = run(main, ["compare", "--where", "tags.`rlreg.seed` = '1'", "--format", "csv", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("metric,grpo,")
    res = run(main, ["compare", "--where", "nonsense ==", "--tracking-uri", uri])
    assert res.exit_code == 2 and "not a valid MLflow filter" in res.output
    res = run(main, ["compare", "--study", "nope", "--tracking-uri", uri])
    assert res.exit_code == 2 and "studies in this store: s2x3" in res.output

    out = tmp_path / "curves.png"
    res = run(main, ["plot", "--study", "s2x3", "--metric", "actor/entropy", "--metric", "critic/score/mean",
                     "--metric", "nope/x", "-o", str(out), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(PNG) and "no run logged nope/x per step" in res.output
    res = run(main, ["plot", "--study", "s2x3", "--metric", "nope/x", "-o", str(out), "--tracking-uri", uri])
    assert res.exit_code == 2 and "none of the runs logged nope/x" in res.output

    html = tmp_path / "study.html"
    res = run(main, ["report", "--study", "s2x3", "-o", str(html), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    logged = re.search(r"logged to MLflow: run ([0-9a-f]{32})", res.output).group(1)
    tags = client.get_run(logged).data.tags
    assert tags["rlreg.role"] == "report" and tags["rlreg.report.study"] == "s2x3"
    assert "rlreg.study" not in tags  # a report is no cell of the study
    assert tags["mlflow.note.content"].startswith("eval/accuracy_mean: egpo − grpo")


def test_primary_metric_from_the_study_file(store, tmp_path, monkeypatch):
    uri, client, _ = store
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "study-s2x3.yaml").write_text("kind: study\nname: s2x3\nprimary_metric: train/reward_mean_last\n"
                                           "arms: {}\nseeds: [1]\n")
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    res = CliRunner().invoke(main, ["compare", "--study", "s2x3", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Verdict:\n  train/reward_mean_last: egpo − grpo")
    assert "[secondary] eval/accuracy_mean" in res.output


def test_accuracy_keys_always_print_in_percent(mlflow_uri):
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(mlflow_uri)
    pair = synthetic.demo_pair(client, with_entropy_stage=False)
    for run in pair:  # a tool-name accuracy whose interval would leave [0, 1]
        client.log_batch(run.child_ids["eval"], metrics=[Metric("eval/tool_name_accuracy", v, 0, r)
                                                        for r, v in enumerate([0.0, 0.05, 0.0])])
        client.log_batch(run.parent_id, metrics=[Metric("eval/tool_name_accuracy_mean", 0.05 / 3, 0, 0)])
    comp = compare.build(client, ["demo-grpo", "demo-egpo"])
    row = comp.row("eval/tool_name_accuracy_mean")
    assert row.percent and row.cells[0].ci.low == 0.0  # clipped into [0, 1]
    text = render.to_text(comp)
    assert "eval/tool_name_accuracy_mean    1.7% [0.0, 5.3] (n=3)" in text or "1.7% [0.0, " in text
    assert render.fmt_cell(comp.row("eval/accuracy_mean").cells[0], True).endswith("(n=5)")


def test_primary_metric_from_the_cells_tag(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    for arm in ("a", "b"):
        for seed in (1, 2):
            tags = {"rlreg.study": "tagged", "rlreg.arm": arm, "rlreg.seed": str(seed), "rlreg.cell": f"{arm}/seed={seed}",
                    "rlreg.grid": "{}", "rlreg.primary_metric": "train/reward_mean_last"}
            synthetic.write_spec_run(client, synthetic.demo_spec(f"demo-{arm}", arm == "b"), seed=seed * 3, tags=tags)
    comp = compare.build(client, [], study="tagged")
    assert comp.primary == "train/reward_mean_last" and comp.row("train/reward_mean_last").primary
