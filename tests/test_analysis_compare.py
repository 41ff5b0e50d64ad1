"""`analysis.compare` / `analysis.runs` against a real sqlite store written in the registry's run
contract (analysis.synthetic): numbers must equal the logged values."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil

import mlflow
import pytest

from analysis import compare, render, runs, synthetic
from analysis.stats import mean_ci, welch_diff
from registry.errors import UsageError


@pytest.fixture(scope="module")
def demo(tmp_path_factory, _store_template):
    """One store for the read-only tests: the demo pair plus an older and a failed demo-egpo."""
    db = tmp_path_factory.mktemp("analysis-compare") / "mlflow.db"
    shutil.copy(_store_template, db)
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    grpo, egpo = synthetic.demo_pair(client)
    older = synthetic.write_spec_run(client, synthetic.demo_spec("demo-egpo", True), seed=7, start_time=1_000,
                                     with_entropy_stage=False)
    failed = synthetic.write_spec_run(client, synthetic.demo_spec("demo-egpo", True), seed=8, status="FAILED",
                                      start_time=4_000_000_000_000, with_entropy_stage=False)
    return client, grpo, egpo, older, failed


def test_numbers_equal_logged_values(demo):
    client, grpo, egpo, *_ = demo
    comp = compare.build(client, ["demo-grpo", "demo-egpo"])
    assert comp.labels == ["demo-grpo", "demo-egpo"]
    assert [r.run_id for r in comp.runs] == [grpo.parent_id, egpo.parent_id]

    row = comp.row("eval/accuracy_mean")
    for cell, fake in zip(row.cells, (grpo, egpo)):
        logged = [m.value for m in client.get_metric_history(fake.child_ids["eval"], "eval/accuracy")]
        parent = client.get_run(fake.parent_id).data.metrics
        child = client.get_run(fake.child_ids["eval"]).data.metrics  # interval bounds live on the eval child
        assert cell.source == "repeats" and cell.repeats == logged == fake.accuracy
        assert cell.value == pytest.approx(parent["eval/accuracy_mean"])
        assert "eval/accuracy_ci95_low" not in parent
        assert (cell.ci.low, cell.ci.high) == pytest.approx(
            (child["eval/accuracy_ci95_low"], child["eval/accuracy_ci95_high"]))
        assert cell.ci.n == int(parent["eval/repeats"])
    d = row.diffs[1].ci
    ref = welch_diff(grpo.accuracy, egpo.accuracy)
    assert (d.diff, d.low, d.high, d.p) == pytest.approx((ref.diff, ref.low, ref.high, ref.p))
    assert row.percent

    reward = comp.row("train/reward_mean_last")
    assert [c.value for c in reward.cells] == [grpo.reward[-1], egpo.reward[-1]]
    assert [c.source for c in reward.cells] == ["parent", "parent"]
    assert reward.diffs[1].ci.diff == pytest.approx(egpo.reward[-1] - grpo.reward[-1])
    # companions are folded into the _mean cell, not rows of their own
    assert {r.metric for r in comp.rows} == {"eval/accuracy_mean", "train/reward_mean_last", "actor/entropy_last"}


def test_latest_finished_parent_and_pins(demo):
    client, _, egpo, older, failed = demo
    newest = runs.parents_frame("demo-egpo", tracking_uri=client.tracking_uri).iloc[0]
    assert newest.run_id == failed.parent_id and newest.status == "FAILED"
    assert runs.latest_parent(client, "demo-egpo").run_id == egpo.parent_id  # the newer FAILED one skipped
    comp = compare.build(client, ["demo-grpo", "demo-egpo"], pinned={"demo-egpo": older.parent_id})
    assert comp.runs[1].run_id == older.parent_id
    assert comp.row("eval/accuracy_mean").cells[1].repeats == older.accuracy


def test_run_ids_and_stage_ids(demo):
    client, grpo, egpo, older, _ = demo
    comp = compare.build(client, [egpo.parent_id, older.child_ids["eval"], grpo.parent_id])
    assert [r.run_id for r in comp.runs] == [egpo.parent_id, older.parent_id, grpo.parent_id]
    assert comp.labels == [f"demo-egpo@{egpo.parent_id[:8]}", f"demo-egpo@{older.parent_id[:8]}", "demo-grpo"]
    assert len(comp.row("eval/accuracy_mean").diffs) == 3  # None for the baseline, then one per other run


def test_selected_metrics_include_child_histories(demo):
    client, grpo, egpo, *_ = demo
    comp = compare.build(client, ["demo-grpo", "demo-egpo"], metrics=["eval/accuracy", "actor/entropy"])
    assert [r.metric for r in comp.rows] == ["eval/accuracy", "actor/entropy"]
    assert comp.row("eval/accuracy").cells[0].repeats == grpo.accuracy
    entropy = comp.row("actor/entropy").cells
    assert [c.value for c in entropy] == [grpo.entropy[-1], egpo.entropy[-1]]
    assert entropy[0].source == "parent"  # the parent carries the train curve (registry.parent_view)


@pytest.mark.parametrize(
    ("refs", "kwargs", "message"),
    [
        (["demo-grpo", "nope"], {}, "no runs of spec 'nope' (specs in this store: demo-egpo, demo-grpo"),
        (["demo-grpo"], {}, "at least two runs"),
        (["demo-grpo", "demo-egpo"], {"metrics": ["eval/f1"]}, "metric(s) eval/f1 not logged on any compared run"),
        (["demo-grpo", "demo-egpo"], {"pinned": {"demo-x": "0" * 32}}, "not compared"),
        (["demo-grpo", "0" * 32], {}, f"run '{'0' * 32}' is not in the store"),
    ],
)
def test_usage_errors(demo, refs, kwargs, message):
    client = demo[0]
    with pytest.raises(UsageError, match=None) as err:
        compare.build(client, refs, **kwargs)
    assert message in err.value.message


def test_pin_to_other_spec_is_refused(demo):
    client, grpo, *_ = demo
    with pytest.raises(UsageError, match="belongs to spec 'demo-grpo'"):
        compare.build(client, ["demo-grpo", "demo-egpo"], pinned={"demo-egpo": grpo.parent_id})


def test_no_finished_run(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    run = synthetic.write_spec_run(client, synthetic.demo_spec("only-failed", False), status="FAILED")
    with pytest.raises(UsageError, match=f"spec 'only-failed' has no FINISHED run \\(newest: {run.parent_id}, FAILED\\)"):
        runs.latest_parent(client, "only-failed")


def test_cache_hit_and_logged_ci_fallbacks(mlflow_uri):
    """A reused eval child holds only headline metrics; its history lives on the cache_hit run.
    A parent with no eval child at all still gets an interval from its logged ci95 + repeats."""
    client = mlflow.MlflowClient(mlflow_uri)
    source = synthetic.write_spec_run(client, synthetic.demo_spec("demo-grpo", False), seed=3)
    exp = client.create_experiment("elsewhere")  # runs of other specs live in another experiment
    parent = client.create_run(exp, tags={"rlreg.spec": "other", "rlreg.role": "parent"}).info.run_id
    ci = mean_ci([0.5, 0.55, 0.6, 0.52])
    client.log_batch(parent, metrics=[mlflow.entities.Metric(k, v, 0, 0) for k, v in {
        "eval/accuracy_mean": ci.mean, "eval/accuracy_ci95_low": ci.low, "eval/accuracy_ci95_high": ci.high,
        "eval/repeats": 4.0}.items()])
    client.set_terminated(parent)
    reused = client.create_run(exp, tags={"rlreg.spec": "demo-grpo-reuse", "rlreg.role": "parent"}).info.run_id
    client.set_terminated(reused)
    child = client.create_run(exp, tags={"mlflow.parentRunId": reused, "rlreg.role": "stage", "rlreg.stage": "eval",
                                         "rlreg.cache_hit": source.child_ids["eval"]}).info.run_id
    client.log_batch(child, metrics=[mlflow.entities.Metric("eval/accuracy_mean", 0.6, 0, 0)])
    client.set_terminated(child)

    comp = compare.build(client, ["other", reused, "demo-grpo"], metrics=["eval/accuracy_mean"])
    other, reuse, src = comp.row("eval/accuracy_mean").cells
    assert other.source == "logged-ci" and other.ci.std == pytest.approx(ci.std) and other.ci.n == 4
    assert reuse.source == "repeats" and reuse.repeats == source.accuracy == src.repeats


def test_percent_is_a_property_of_the_metric():
    assert compare.is_fraction("eval/accuracy_mean", [0.6, 0.62])
    assert compare.is_fraction("eval/format_valid_rate_mean", [0.9, 1.0])
    # an interval bound outside [0, 1] no longer switches percent off for the row
    assert compare.is_fraction("eval/accuracy_mean", [0.02, -0.027])
    assert compare.is_fraction("eval/tool_name_accuracy_mean")
    assert not compare.is_fraction("eval/response_length_mean", [0.5])


def _check_coverage_lines(comp) -> None:
    """Each difference's unit/coverage line, with "as above" resolved to the line it refers to, is its own."""
    lines = render.to_text(comp).split("Differences (95% CI")[1].splitlines()
    shown, last = [], None
    for i, line in enumerate(lines):
        if line.startswith("  [primary] ") or line.startswith("  [secondary] "):
            nxt = lines[i + 1]
            last = last if nxt == "      unit and coverage: as above" else nxt
            shown.append(last)
    wanted = [f"      unit: {d.unit or 'none'}; covers {d.covers}" if d.covers else "      unit: none"
              for _, d in render._diff_lines(comp)]
    assert shown == wanted


def test_renderers(demo):
    client, grpo, egpo, *_ = demo
    comp = compare.build(client, ["demo-grpo", "demo-egpo"])
    ref = welch_diff(grpo.accuracy, egpo.accuracy)

    text = render.to_text(comp)
    expected = (f"demo-egpo − demo-grpo = {ref.diff * 100:+.1f} pts "
                f"[{ref.low * 100:+.1f}, {ref.high * 100:+.1f}]").replace("-", "−").replace("demo−", "demo-")
    assert expected in text
    assert ("no difference detected at this sample size" in text) == (ref.low <= 0 <= ref.high)
    assert "within noise" not in text
    assert "unit: eval repeats; covers eval sampling only: 5 vs 5 repeats" in text
    _check_coverage_lines(comp)
    # units interleaved (repeats, single values, repeats, single values): "as above" must still be right
    primary = next(r for r in comp.rows if r.primary)
    singles = [r for r in comp.rows if not r.primary and any(d is not None and not d.unit for d in r.diffs)]
    assert len(singles) >= 2 and any(d is not None and d.unit for d in primary.diffs)  # mixed units
    comp.rows = [primary, singles[0], dataclasses.replace(primary, metric="copy", primary=False), singles[1]]
    _check_coverage_lines(comp)

    data = json.loads(render.to_json(comp))
    acc = next(m for m in data["metrics"] if m["metric"] == "eval/accuracy_mean")
    assert acc["values"]["demo-egpo"]["repeats"] == egpo.accuracy
    assert acc["diffs"][0]["ci_low"] == pytest.approx(ref.low)

    rows = list(csv.DictReader(io.StringIO(render.to_csv(comp))))
    assert [r["metric"] for r in rows] == [r.metric for r in comp.rows]
    reward = next(r for r in rows if r["metric"] == "train/reward_mean_last")
    assert float(reward["demo-grpo"]) == grpo.reward[-1]

    md = render.to_markdown(comp)
    assert md.count("\n| `") == 2 * len(comp.rows)  # one value row and one difference row per metric


def test_frames_and_bulk_histories(demo):
    client, grpo, egpo, older, failed = demo
    uri = client.tracking_uri
    before = mlflow.get_tracking_uri()
    frame = runs.parents_frame("demo-egpo", tracking_uri=uri)
    assert mlflow.get_tracking_uri() == before  # no global side effect
    assert set(frame.run_id) == {egpo.parent_id, older.parent_id, failed.parent_id}
    assert "params.train.algorithm.egpo_lambda" in frame.columns

    ids = [grpo.child_ids["train"], egpo.child_ids["train"]]
    hist = runs.metric_histories(client, ids, ["actor/entropy", "train/reward_mean", "never/logged"])
    got = hist[(hist.run_id == ids[1]) & (hist.key == "actor/entropy")]["value"].tolist()
    assert got == egpo.entropy
    assert set(hist.key) == {"actor/entropy", "train/reward_mean"}
    assert hist[(hist.run_id == ids[0]) & (hist.key == "train/reward_mean")]["step"].tolist() == list(range(20))


def test_histories_use_the_public_client_api_only():
    import pathlib

    src = pathlib.Path(runs.__file__).read_text()
    assert "_tracking_client" not in src and ".store" not in src


def test_spec_from_run(demo):
    client, _, egpo, *_ = demo
    spec = runs.spec_from_run(egpo.parent_id, client)
    assert spec == egpo.spec
    assert runs.spec_from_run(egpo.child_ids["train"], client)["train"]["algorithm"]["egpo_lambda"] == 0.4


def test_spec_from_run_without_artifact(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    run = synthetic.write_spec_run(client, synthetic.demo_spec("bare", False), with_artifacts=False)
    with pytest.raises(UsageError, match="has no spec.yaml artifact"):
        runs.spec_from_run(run.parent_id, client)
