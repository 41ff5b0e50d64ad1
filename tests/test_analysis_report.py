"""Reports (Markdown, self-contained HTML, MLflow logging), plots and the CLI commands."""

from __future__ import annotations

import base64
import json
import re
import shutil

import mlflow
import pytest
from click.testing import CliRunner

from analysis import plots, render, report, runs, synthetic
from analysis.cli import compare as compare_cmd
from analysis.cli import report as report_cmd
from analysis.stats import mean_ci

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory, _store_template):
    db = tmp_path_factory.mktemp("analysis-report") / "mlflow.db"
    shutil.copy(_store_template, db)
    uri = f"sqlite:///{db}"
    client = mlflow.MlflowClient(uri)
    grpo, egpo = synthetic.demo_pair(client)
    return uri, client, grpo, egpo


@pytest.fixture(scope="module")
def demo_report(store):
    _, client, *_ = store
    return report.build_report(client, ["demo-grpo", "demo-egpo"])


def test_report_content(demo_report):
    changes = {c.key: (c.left, c.right) for c in demo_report.spec_changes}
    assert changes["train.algorithm.adv_estimator"] == ("grpo", "egpo")
    assert changes["train.algorithm.egpo_lambda"][1] == 0.4
    assert "train.rollout.n" not in changes  # changed keys only
    assert demo_report.spec_source == "spec.yaml"
    names = [f.name for f in demo_report.figures]
    assert names == ["reward.png", "entropy.png", "eval_accuracy_repeats.png", "entropy_after_tool_call.png"]
    assert all(f.png.startswith(PNG) for f in demo_report.figures)
    assert demo_report.title == "demo-grpo vs demo-egpo"


def test_html_is_self_contained(demo_report):
    html = report.to_html(demo_report)
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//|file:)""", html)
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == len(demo_report.figures)
    assert all(base64.b64decode(img).startswith(PNG) for img in images)
    acc = demo_report.comparison.row("eval/accuracy_mean")
    for cell in acc.cells:
        assert render.fmt_cell(cell, True) in html
    assert "<code>train.algorithm.egpo_lambda</code>" in html
    assert "#/compare-runs?runs=%5B%22" + demo_report.comparison.runs[0].run_id in html
    assert render.diff_parts(acc.diffs[1], True)[0] in html


def test_markdown_writes_figures(demo_report, tmp_path):
    written = report.write_report(demo_report, tmp_path / "r.md")
    md = written[0].read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 4 and all((tmp_path / link).read_bytes().startswith(PNG) for link in links)
    assert "| `train.algorithm.adv_estimator` | grpo | egpo |" in md
    with pytest.raises(report.UsageError, match="end the name in .md or .html"):
        report.write_report(demo_report, tmp_path / "r.pdf")


def test_log_report_makes_its_own_run(demo_report, store):
    _, client, grpo, egpo = store
    run_id = report.log_report(client, demo_report)
    run = client.get_run(run_id)
    assert run.data.tags["rlreg.role"] == "report" and run.info.status == "FINISHED"
    assert run.data.tags["rlreg.report.runs"] == f"{grpo.parent_id},{egpo.parent_id}"
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "report.md", "report_files", "comparison.json"} <= top
    assert len(client.list_artifacts(run_id, "report_files")) == 4
    assert [a.path for a in client.list_artifacts(grpo.parent_id)] == ["spec.yaml"]  # parents untouched
    assert runs.latest_parent(client, "demo-grpo").run_id == grpo.parent_id


def test_spec_diff_from_params_and_no_train(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    a = synthetic.write_spec_run(client, synthetic.demo_spec("pa", False), with_artifacts=False)
    b = synthetic.write_spec_run(client, synthetic.demo_spec("pb", True), seed=3)
    rep = report.build_report(client, [a.parent_id, b.parent_id], metrics=["eval/accuracy_mean"])
    assert rep.spec_source == "params"
    changes = {c.key: (c.left, c.right) for c in rep.spec_changes}
    assert changes["train.algorithm.adv_estimator"] == ("grpo", "egpo")
    assert changes["train.algorithm.egpo_alpha"][1] == "2.0"  # params are strings
    assert "report_files" not in report.to_markdown(rep)


def test_with_stats_panel_values():
    series = {"a": ([0, 1, 2], [3.0, 1.0, 2.0]), "b": ([0, 1], [5.0, 4.0])}
    fig = plots.with_stats(series, "actor/entropy")
    lines_ax, bars_ax = fig.axes
    assert [list(l.get_ydata()) for l in lines_ax.get_lines()] == [[3.0, 1.0, 2.0], [5.0, 4.0]]
    heights = [round(p.get_height(), 6) for p in bars_ax.patches]
    assert heights == [2.0, 3.0, 1.0, 4.5, 5.0, 4.0]  # mean, max, min of a, then of b
    assert plots.to_png(fig).startswith(PNG)


def test_eval_repeats_plot():
    values = {"a": [0.5, 0.6, 0.7], "b": [0.4]}
    fig = plots.eval_repeats(values, "eval/accuracy", percent=True)
    ax = fig.axes[0]
    points = [list(l.get_ydata()) for l in ax.get_lines() if l.get_marker() == "o"]
    assert points == [[50.0, 60.0, 70.0], [40.0]]
    ci = mean_ci(values["a"])
    assert len(ax.patches) == 1  # the 95% band of a; b has one repeat, so no band
    band = ax.patches[0]
    assert (band.get_y(), band.get_y() + band.get_height()) == pytest.approx((ci.low * 100, ci.high * 100))


def test_cli_compare_and_report(store, tmp_path):
    uri, client, grpo, egpo = store
    runner = CliRunner()
    res = runner.invoke(compare_cmd, ["demo-grpo", "demo-egpo", "--format", "json", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [r["run_id"] for r in data["runs"]] == [grpo.parent_id, egpo.parent_id]

    res = runner.invoke(compare_cmd, ["demo-grpo", "demo-egpo", "--metrics", "eval/accuracy_mean",
                                      "--run", f"demo-egpo={egpo.parent_id}"], env={"MLFLOW_TRACKING_URI": uri})
    assert res.exit_code == 0 and "demo-egpo − demo-grpo = " in res.output and "pts [" in res.output

    res = runner.invoke(compare_cmd, ["demo-grpo", "ghost", "--tracking-uri", uri])
    assert res.exit_code == 2 and "Error: no runs of spec 'ghost'" in res.output
    res = runner.invoke(compare_cmd, ["demo-grpo", "demo-egpo", "--run", "demo-egpo", "--tracking-uri", uri])
    assert res.exit_code == 2 and "expected SPEC=RUN_ID" in res.output

    out = tmp_path / "r.html"
    res = runner.invoke(report_cmd, ["demo-grpo", "demo-egpo", "-o", str(out), "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8").count("data:image/png;base64,") == 4
    logged = re.search(r"logged to MLflow: run ([0-9a-f]{32})", res.output).group(1)
    assert client.get_run(logged).data.tags["rlreg.role"] == "report"


def test_cli_wired_in_rlreg(store):
    from registry.cli import main

    uri = store[0]
    runner = CliRunner()
    for cmd in ("compare", "report"):
        res = runner.invoke(main, [cmd, "--help"])
        assert res.exit_code == 0 and "--tracking-uri" in res.output, res.output
    res = runner.invoke(main, ["compare", "demo-grpo", "demo-egpo", "--format", "csv", "--tracking-uri", uri])
    assert res.exit_code == 0 and res.output.startswith("metric,demo-grpo,")


def test_several_repeat_metrics_share_one_figure(mlflow_uri):
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(mlflow_uri)
    pair = synthetic.demo_pair(client, with_entropy_stage=False)
    rates = {}
    for i, run in enumerate(pair):
        rates[run.spec["name"]] = values = [0.9 - 0.01 * i, 0.95, 1.0, 0.92, 0.97]
        client.log_batch(run.child_ids["eval"], metrics=[Metric("eval/format_valid_rate", v, 0, r)
                                                        for r, v in enumerate(values)])
        client.log_batch(run.parent_id, metrics=[Metric("eval/format_valid_rate_mean", mean_ci(values).mean, 0, 0)])
    rep = report.build_report(client, ["demo-grpo", "demo-egpo"])
    row = rep.comparison.row("eval/format_valid_rate_mean")
    assert [c.repeats for c in row.cells] == [rates["demo-grpo"], rates["demo-egpo"]] and row.percent
    names = [f.name for f in rep.figures]
    assert "eval_repeats.png" in names and "eval_accuracy_repeats.png" not in names

    fig = plots.eval_repeats_panels({"eval/accuracy": ({"a": [0.5, 0.6]}, True),
                                     "eval/format_valid_rate": ({"a": [0.9, 1.0]}, True),
                                     "eval/response_length": ({"a": [40.0, 44.0]}, False)})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["eval/accuracy", "eval/format_valid_rate", "eval/response_length"]
    assert list(visible[2].get_lines()[0].get_ydata()) == [40.0, 44.0]
    assert len(fig.axes) == 4  # a 2×2 grid, the last panel hidden
