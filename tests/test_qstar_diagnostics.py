"""rlreg analyze-diagnostics: α methods side by side from generate diagnostics files and runs."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from analysis.qstar_diagnostics import DiagSource, analyze_diagnostics, load_diagnostics_file, summarize


def _diag_file(path, alphas_per_sample, kl=(0.01, 0.01), ess=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, alphas in enumerate(alphas_per_sample):
        n = len(alphas)
        lines.append({"sample_idx": i, "num_tokens": n, "stopped_on_eos": True,
                      "alpha_mean": sum(alphas) / n, "alpha_std": 0.0, "ess_ratio_mean": ess, "ess_ratio_std": 0.0,
                      "kl_theta_mean": kl[0], "kl_t_mean": kl[1],
                      "tokens": {"alpha": alphas, "ess_ratio": [ess] * n, "kl_theta": [kl[0]] * n,
                                 "kl_t": [kl[1]] * n}})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_summary_by_hand_and_the_alpha_range_fraction(tmp_path):
    src = DiagSource("x", load_diagnostics_file(_diag_file(tmp_path / "a.jsonl", [[0.1, 0.5], [0.9, 0.5]])), "a")
    s = summarize(src)
    assert s["token_level"] and s["alpha"]["n"] == 4 and s["alpha"]["mean"] == pytest.approx(0.5)
    assert s["alpha"]["min"] == 0.1 and s["alpha"]["max"] == 0.9
    assert s["alpha_outside_range_fraction"] == pytest.approx(0.5)
    assert s["log10_ess_ratio"]["mean"] == pytest.approx(0.0)
    no_tokens = DiagSource("y", [{"sample_idx": 0, "alpha_mean": 0.5, "ess_ratio_mean": 10.0}], "y")
    assert summarize(no_tokens)["log10_ess_ratio"]["mean"] == pytest.approx(1.0) and not summarize(no_tokens)["token_level"]


def test_cli_compares_three_methods_writes_table_csv_figure_and_warns(tmp_path):
    files = [_diag_file(tmp_path / "kl" / "generated.diagnostics.jsonl", [[0.5, 0.52], [0.49]], kl=(0.02, 0.02)),
             _diag_file(tmp_path / "fixed" / "generated.diagnostics.jsonl", [[0.5, 0.5], [0.5]], kl=(0.01, 0.03)),
             _diag_file(tmp_path / "ent" / "generated.diagnostics.jsonl", [[0.85, 0.6], [0.1]], ess=2.0)]
    out = tmp_path / "out"
    r = CliRunner().invoke(analyze_diagnostics, [*map(str, files), "--labels", "kl_symmetry,fixed,entropy",
                                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "| kl_symmetry | 2 | 0.503" in r.output and "| entropy | 2 |" in r.output
    assert "warning: entropy: 66.7% of α values outside [0.2, 0.8]" in r.output
    assert "warning: kl_symmetry" not in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert [s["label"] for s in summary] == ["kl_symmetry", "fixed", "entropy"]
    assert summary[1]["kl_t"]["mean"] == pytest.approx(0.03)
    rows = list(csv.DictReader((out / "samples.csv").open()))
    assert [r["sample_idx"] for r in rows] == ["0", "1"] and float(rows[1]["entropy/alpha_mean"]) == pytest.approx(0.1)
    assert (out / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reads_a_generate_run_and_logs_the_range_metric(tmp_path, mlflow_uri):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.create_experiment("q")
    parent = client.create_run(exp, tags={"rlreg.role": "parent", "rlreg.spec": "demo-qstar"}).info.run_id
    child = client.create_run(exp, tags={"rlreg.role": "stage", "rlreg.stage": "generate",
                                         "mlflow.parentRunId": parent}).info.run_id
    client.log_param(child, "generate.alpha_method", "kl_symmetry")
    f = _diag_file(tmp_path / "g" / "generated.diagnostics.jsonl", [[0.1, 0.5, 0.5, 0.5]])
    client.log_artifact(child, str(f), "generate")
    for rid in (child, parent):
        client.set_terminated(rid, "FINISHED")
    r = CliRunner().invoke(analyze_diagnostics, ["demo-qstar", "-o", str(tmp_path / "o"), "--json",
                                                 "--tracking-uri", mlflow_uri])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("["):])
    assert summary[0]["label"] == "demo-qstar (kl_symmetry)" and summary[0]["alpha_outside_range_fraction"] == 0.25
    assert client.get_run(child).data.metrics["generate/alpha_outside_range_fraction"] == 0.25


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl"], "missing.jsonl: diagnostics file not found"),
    (["BAD"], "line 1: needs `sample_idx` and `alpha_mean`"),
    (["GOOD", "--labels", "a,b"], "2 labels for 1 sources"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"x": 1}) + "\n")
    good = _diag_file(tmp_path / "good.jsonl", [[0.5]])
    args = [str(bad) if a == "BAD" else str(good) if a == "GOOD" else a for a in args]
    r = CliRunner().invoke(analyze_diagnostics, [*args, "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
