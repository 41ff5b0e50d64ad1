"""A study (2 arms × 3 seeds, written with the cell tags contract) in a real headless Chromium:

1. the study report (file://): the verdict comes first, the metric table has the arms' cells, every
   embedded figure decodes → tests/artifacts/study_report.png;
2. MLflow's compare page of the six cell parents (they carry their train curves,
   registry.parent_view) links each metric to MLflow's metric page, which overlays the six
   actor/entropy curves: counted as plotly traces → tests/artifacts/ui_study_curves.png.
Uses the helpers of tests/test_ui_browser.py; skips without Debian chromium.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import mlflow
import pytest
from _servers import mlflow_ui
from test_ui_browser import ARTIFACTS, _chromium, _DevTools, _Page, _run_chromium

from analysis import report, runs, synthetic
from analysis.render import fmt_cell

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def study_ui(tmp_path_factory, _store_template):
    chromium = _chromium()
    tmp = tmp_path_factory.mktemp("study-ui")
    db = tmp / "mlflow.db"
    shutil.copy(_store_template, db)
    uri = f"sqlite:///{db}"
    client = mlflow.MlflowClient(uri)
    cells = synthetic.study(client, "ui-study", {"grpo": 0.5, "egpo": 0.62}, seeds=(1, 2, 3), steps=15)
    with mlflow_ui(uri, tmp) as base:
        yield {"chromium": chromium, "base": base, "client": client, "cells": cells, "tmp": tmp}


def test_study_report_renders_verdict_table_and_figures(study_ui):
    rep = report.build_report(study_ui["client"], [], study="ui-study")
    out = study_ui["tmp"] / "study.html"
    report.write_report(rep, out)
    res = _run_chromium(study_ui, "--virtual-time-budget=5000", "--dump-dom", out.as_uri(), profile="sdom")
    assert res.returncode == 0, res.stderr[-2000:]
    page = _Page()
    page.feed(res.stdout)
    acc = rep.comparison.row("eval/accuracy_mean")
    assert page.row("eval/accuracy_mean")[1] == [fmt_cell(c, True) for c in acc.cells]
    assert page.row("train.algorithm.adv_estimator")[1] == ["grpo", "egpo"]
    state = asyncio.run(_report_state(study_ui, out.as_uri()))
    assert state["verdict"].startswith("eval/accuracy_mean: egpo − grpo = ")
    assert "training-seed variation" in state["verdict"]
    assert state["verdict_top"] < state["table_top"]  # the verdict comes first
    assert state["images"] == [True] * len(rep.figures) and len(rep.figures) >= 3
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "study_report.png").write_bytes(state["png"])


async def _report_state(ui: dict, url: str) -> dict:
    async with _DevTools(ui) as dt:
        await dt.call("Page.navigate", url=url)
        await dt.wait_for("document.readyState === 'complete' && [...document.images].every(i => i.complete)")
        state = await dt.eval(
            "({verdict: document.getElementById('verdict').innerText,"
            " verdict_top: document.getElementById('verdict').getBoundingClientRect().top,"
            " table_top: document.getElementById('metrics').getBoundingClientRect().top,"
            " images: [...document.images].map(i => i.complete && i.naturalWidth > 300)})")
        state["png"] = await dt.screenshot()
        return state


def test_mlflow_overlays_the_study_cells_curves(study_ui):
    client, cells = study_ui["client"], study_ui["cells"]
    parents = [runs.get_run(client, r.parent_id) for arm in cells.values() for r in arm]
    assert all("actor/entropy" in p.metrics for p in parents)  # the curves live on the parents
    compare_url = runs.compare_page(parents, study_ui["base"])
    curves_url = runs.metric_page(parents, ["actor/entropy"], study_ui["base"])
    result = asyncio.run(_curves(study_ui, compare_url, curves_url))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "ui_study_curves.png").write_bytes(result["png"])
    print(f"metric page: {result['plots']} plotly traces in one plot, {result['rendered_s']:.1f} s after navigation")
    assert result["compare_links_metric_page"]  # the compare page links each metric to its overlay
    # one plot, a curve per cell: plotly draws each run's line as a trace pair (line + hover points)
    assert len(result["plots"]) == 1 and result["plots"][0] >= len(parents) == 6
    for name in ("grpo/seed=1", "grpo/seed=3", "egpo/seed=2"):  # cells named by their short cell id
        assert f"{name} (actor/entropy)" in result["text"]
    assert "Completed Runs\n6/6" in result["text"] or "6/6" in result["text"]


async def _curves(ui: dict, compare_url: str, curves_url: str) -> dict:
    async with _DevTools(ui) as dt:
        await dt.call("Page.navigate", url=compare_url)
        await dt.wait_for("document.body && document.body.innerText.includes('Comparing 6 Runs') && "
                          "document.body.innerText.includes('eval/accuracy_mean')")
        links = await dt.eval("[...document.querySelectorAll('a')].some(a => (a.getAttribute('href') || '')"
                              ".includes('/metric') && (a.getAttribute('href') || '').includes('actor%2Fentropy'))")
        t0 = time.monotonic()
        await dt.call("Page.navigate", url=curves_url)
        await dt.wait_for("document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= 6")
        rendered = time.monotonic() - t0
        await asyncio.sleep(1.0)  # let plotly finish its transition before the screenshot
        traces = await dt.eval("document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length")
        plots = await dt.eval("[...document.querySelectorAll('.js-plotly-plot')].map(p => p.querySelectorAll('.scatterlayer .trace').length)")
        text = await dt.eval("document.body.innerText")
        return {"compare_links_metric_page": links, "traces": traces, "plots": plots, "text": text,
                "rendered_s": rendered, "png": await dt.screenshot()}

