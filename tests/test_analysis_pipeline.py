"""analysis against runs written by the real registry pipeline (convert-only specs, cheap), through
the `rlreg` command group: the run contract as the lead's code writes it, not as we imagine it."""

from __future__ import annotations

import json

import mlflow
import pytest
from click.testing import CliRunner

from analysis import compare, runs
from registry.cli import main

SPEC_A = """\
description: convert only
experiment: analysis-pipeline
data:
  synthetic: {num_records: 40, seed: 3}
  max_samples: 40
  test_size: 0.2
"""


@pytest.fixture()
def env(tmp_path, mlflow_uri, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(SPEC_A)
    (specs / "c.yaml").write_text("extends: a\ndata: {test_size: 0.5}\n")
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "rlreg-home"))
    return {"client": mlflow.MlflowClient(mlflow_uri), "tmp": tmp_path}


def rlreg(*args: str):
    return CliRunner().invoke(main, list(args))


def run_spec(name: str) -> str:
    r = rlreg("run", name, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])["parent_run_id"]


def test_compare_report_and_diff_on_pipeline_runs(env):
    client = env["client"]
    a, c = run_spec("a"), run_spec("c")

    comp = compare.build(client, ["a", "c"])
    assert [r.run_id for r in comp.runs] == [a, c]
    logged = [client.get_run(rid).data.metrics for rid in (a, c)]
    assert {row.metric for row in comp.rows} == set(logged[0])  # every headline metric the pipeline copied
    for row in comp.rows:
        assert [cell.value for cell in row.cells] == [m[row.metric] for m in logged]
        assert row.diffs[1].ci.diff == pytest.approx(logged[1][row.metric] - logged[0][row.metric])

    r = rlreg("compare", "a", "c", "--format", "json")
    assert r.exit_code == 0, r.output
    assert [x["run_id"] for x in json.loads(r.output)["runs"]] == [a, c]

    out = env["tmp"] / "r.md"
    r = rlreg("report", "a", "c", "-o", str(out))
    assert r.exit_code == 0, r.output
    md = out.read_text(encoding="utf-8")
    assert "| `data.test_size` | 0.2 | 0.5 |" in md  # from the pipeline's spec.yaml artifacts
    assert "no train reward history" in md  # convert-only: the missing figures are noted, not fatal
    report_run = client.search_runs([client.get_run(a).info.experiment_id],
                                    filter_string="tags.`rlreg.role` = 'report'")[0]
    assert report_run.data.tags["rlreg.report.runs"] == f"{a},{c}"

    assert runs.spec_from_run(c, client)["data"]["test_size"] == 0.5
    r = rlreg("diff", a, c)  # the lead's diff, reading run ids through analysis.runs.spec_from_run
    assert r.exit_code == 0, r.output
    assert "data.test_size" in r.output and "0.2" in r.output and "0.5" in r.output

    r = rlreg("compare", "a", "nope")
    assert r.exit_code == 2 and "Error: no runs of spec 'nope'" in r.output
