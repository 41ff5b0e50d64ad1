"""plot-entropy's sources: verl console logs and rollout dumps (fixtures written by verl 0.9.1's own
LocalLogger / RayPPOTrainer._write_generations, see tests/fixtures/verl/make_fixtures.py), globs of
entropy_step_*.json, step histories, N-run comparisons with labels and stats, MLflow runs/studies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysis import entropy_sources as S
from analysis.entropy_cli import plot_entropy
from registry.errors import InputDataError

FIX = Path(__file__).parent / "fixtures" / "verl"
PNG = b"\x89PNG"


def test_console_log_lines_in_verls_format_with_numpy_reprs_and_ray_prefix():
    steps = S.parse_log(FIX / "console.log")
    assert sorted(steps) == [1, 2, 3, 4, 5]
    assert steps[2]["actor/entropy"] == pytest.approx(0.7)
    assert steps[2]["actor/pg_loss"] == pytest.approx(-0.02)  # printed as np.float64(-0.02)
    assert steps[3]["critic/score/mean"] == pytest.approx(0.5)  # np.float32(0.5)
    assert steps[1]["actor/lr"] == pytest.approx(1e-6) and steps[1]["timing_s/gen"] == pytest.approx(1.5e-3)
    assert S.history_from_log(FIX / "console.log") == [
        {"step": s, "entropy": pytest.approx(0.9 - 0.1 * s)} for s in range(1, 6)]


@pytest.mark.parametrize("line, expected", [
    ("step:3 - actor/entropy:0.5", (3, {"actor/entropy": 0.5})),
    ("\x1b[36m(TaskRunner pid=1)\x1b[0m step:7 - a/b:np.float64(nan) - c:-1.5e-3", (7, {"c": -1.5e-3})),
    ("epoch step:4 - val-core/x/reward/mean@4:np.float64(0.25)", (4, {"val-core/x/reward/mean@4": 0.25})),
    ("no metrics here", None),
])
def test_parse_step_line_variants(line, expected):
    got = S.parse_step_line(line)
    if expected is None:
        assert got is None
        return
    step, metrics = got
    assert step == expected[0]
    for key, value in expected[1].items():
        assert metrics[key] == pytest.approx(value)
    if "nan" in line:
        assert metrics["a/b"] != metrics["a/b"]  # NaN kept as NaN


def test_rlreg_metrics_history_jsonl_is_a_log_too(tmp_path):
    log = tmp_path / "metrics_history.jsonl"
    log.write_text("".join(json.dumps({"step": s, "metrics": {"actor/entropy": 1.0 / s, "x": None}}) + "\n"
                           for s in (1, 2, 3)))
    assert [r["entropy"] for r in S.history_from_log(log)] == pytest.approx([1.0, 0.5, 1 / 3])
    with pytest.raises(InputDataError, match="no `policy/entropy` values.*keys seen: actor/entropy"):
        S.history_from_log(log, "policy/entropy")


def test_rollout_dumps_with_round_entropies_become_round_records():
    src = S.rollout_source(FIX / "rollouts")
    assert src.kind == "rounds"
    # 2 dumps × (1 + 2 + 3) rounds
    assert len(src.records) == 12
    assert {r["step"] for r in src.records} == {1, 2}
    assert sorted({r["round"] for r in src.records}) == [0, 1, 2]
    assert all(r["is_after_tool_call"] == (r["round"] > 0) for r in src.records)


def test_rollout_dumps_with_scalar_entropy_become_a_step_history_and_plain_dumps_are_refused():
    src = S.rollout_source(FIX / "rollouts_scalar")
    assert src.kind == "steps"
    assert src.history == [{"step": 1, "entropy": pytest.approx(0.6)}, {"step": 2, "entropy": pytest.approx(0.7)}]
    with pytest.raises(InputDataError, match="carry no entropy .*fields: acc, gts, input, output, score, step"):
        S.rollout_source(FIX / "rollouts_plain")


@pytest.mark.parametrize("body,message", [
    ('{"step": 1, "entropy": 0.5}\n[1, 2]\n', r"1\.jsonl: line 2: expected a JSON object, got list"),
    ('{"step": 1, "entropy": 0.5}\n\n{"step": 1,\n', r"1\.jsonl: line 3: not valid JSON"),
])
def test_a_bad_rollout_dump_line_is_named_by_file_and_line(tmp_path, body, message):
    (tmp_path / "1.jsonl").write_text(body)
    with pytest.raises(InputDataError, match=message):
        S.rollout_source(tmp_path)


def _step_files(directory: Path, steps=(10, 2, 1)) -> None:
    directory.mkdir(parents=True)
    for step in steps:
        (directory / f"entropy_step_{step}.json").write_text(json.dumps(
            [{"sample_idx": i, "round": r, "entropy": 0.1 * r + 0.01 * step, "is_after_tool_call": r > 0}
             for i in range(2) for r in range(3)]))


def test_entropy_step_globs_pool_per_directory_with_the_step_from_the_name(tmp_path):
    _step_files(tmp_path / "ckpt")
    sources = S.file_sources([str(tmp_path / "ckpt" / "entropy_step_*.json")])
    assert len(sources) == 1 and sources[0].label == "ckpt"
    assert [r["step"] for r in sources[0].records][::6] == [1, 2, 10]  # numeric order, not 1, 10, 2
    with pytest.raises(InputDataError, match="matches no file"):
        S.expand([str(tmp_path / "none_*.json")])


def test_cli_glob_and_shell_expanded_files_give_one_profile_per_directory(tmp_path):
    _step_files(tmp_path / "a")
    _step_files(tmp_path / "b", steps=(1,))
    out = tmp_path / "rounds.png"
    files = sorted(str(p) for p in (tmp_path / "a").glob("*.json"))  # what the shell would pass
    result = CliRunner().invoke(plot_entropy, ["--entropy_file", files[0], *files[1:], "--entropy_file",
                                               str(tmp_path / "b" / "entropy_step_*.json"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "24 records; a: 3 rounds, b: 3 rounds" in result.output and out.read_bytes()[:4] == PNG


def _history(path: Path, values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"step": i + 1, "entropy": v} for i, v in enumerate(values)]))
    return path


def test_cli_compares_n_histories_with_labels_and_stats(tmp_path):
    q = _history(tmp_path / "q" / "entropy_history_questioner_v1.json", [4.5, 4.2, 3.9])
    s = _history(tmp_path / "s" / "entropy_history_solver_v1.json", [3.0, 2.5])
    out = tmp_path / "qs.png"
    result = CliRunner().invoke(plot_entropy, ["--entropy_file", str(q), "--entropy_file", str(s), "--log_file",
                                               str(FIX / "console.log"), "--labels", "Questioner,Solver",
                                               "--labels", "verl", "--with_stats", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 histories; Questioner: 3 steps, Solver: 2 steps, verl: 5 steps" in result.output
    assert out.read_bytes()[:4] == PNG


def test_with_stats_panel_holds_mean_max_min_per_run():
    from analysis import plots

    fig = plots.with_stats({"Q": ([1, 2, 3], [4.5, 4.2, 3.9]), "S": ([1, 2], [3.0, 2.5])}, "actor/entropy")
    bars = fig.axes[1]
    heights = [round(p.get_height(), 6) for p in bars.patches]
    assert heights == [pytest.approx(4.2), 4.5, 3.9, 2.75, 3.0, 2.5]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["mean", "max", "min"]
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["Q", "S"]


@pytest.mark.parametrize("args, message", [
    (["--labels", "only-one"], "1 labels for 2 sources"),
    (["--with_stats", "--entropy_file", "ROUNDS"], "cannot draw tool-round profiles and step histories"),
    (["--simulate"], "give exactly one source"),
])
def test_cli_refuses_bad_combinations(tmp_path, args, message):
    h = _history(tmp_path / "h" / "entropy_history.json", [1.0, 0.9])
    rounds = tmp_path / "entropy_data.json"
    rounds.write_text(json.dumps([{"sample_idx": 0, "round": 0, "entropy": 0.5}]))
    args = [str(rounds) if a == "ROUNDS" else a for a in args]
    result = CliRunner().invoke(plot_entropy, ["--entropy_file", str(h), "--log_file", str(FIX / "console.log"),
                                               *args, "-o", str(tmp_path / "x.png")])
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output


def test_cli_rollout_dir_and_with_stats_on_rounds_is_refused(tmp_path):
    out = tmp_path / "r.png"
    ok = CliRunner().invoke(plot_entropy, ["--rollout_dir", str(FIX / "rollouts"), "-o", str(out)])
    assert ok.exit_code == 0 and "12 records" in ok.output and out.is_file(), ok.output
    bad = CliRunner().invoke(plot_entropy, ["--rollout_dir", str(FIX / "rollouts"), "--with_stats", "-o", str(out)])
    assert bad.exit_code == 1 and "--with_stats applies to step histories" in bad.output


def _parent_with_train(client, exp_id, spec, values, study=None, cell=None, artifact_dir=None):
    tags = {"rlreg.role": "parent", "rlreg.spec": spec}
    if study:
        tags |= {"rlreg.study": study, "rlreg.cell": cell}
    parent = client.create_run(exp_id, tags=tags).info.run_id
    child = client.create_run(exp_id, tags={"rlreg.role": "stage", "rlreg.stage": "train",
                                            "mlflow.parentRunId": parent}).info.run_id
    if artifact_dir is not None:  # the train stage's entropy_history.json
        client.log_artifact(child, str(_history(artifact_dir / "entropy_history.json", values)))
    else:
        for step, v in enumerate(values, 1):
            client.log_metric(child, "actor/entropy", v, step=step)
    for rid in (child, parent):
        client.set_terminated(rid, "FINISHED")
    return parent


def test_runs_and_a_study_are_found_through_mlflow(mlflow_uri, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.create_experiment("entropy-study")
    _parent_with_train(client, exp, "grpo", [1.0, 0.8, 0.6], "s1", "grpo/seed=1", artifact_dir=tmp_path / "a")
    _parent_with_train(client, exp, "egpo", [1.0, 0.9], "s1", "egpo/seed=1")
    bare = client.create_run(exp, tags={"rlreg.role": "parent", "rlreg.spec": "other", "rlreg.study": "s1",
                                        "rlreg.cell": "other/seed=1"}).info.run_id  # no history: skipped
    client.set_terminated(bare, "FINISHED")
    found = dict(S.find_runs(client, study="s1"))
    assert set(found) == {"grpo/seed=1", "egpo/seed=1", "other/seed=1"}
    assert [r["entropy"] for r in S.run_history(client, found["grpo/seed=1"])] == [1.0, 0.8, 0.6]
    out = tmp_path / "study.png"
    result = CliRunner().invoke(plot_entropy, ["--study", "s1", "--with_stats", "-o", str(out),
                                               "--tracking-uri", mlflow_uri])
    assert result.exit_code == 0, result.output
    assert "2 histories" in result.output and "grpo/seed=1: 3 steps" in result.output
    by_spec = CliRunner().invoke(plot_entropy, ["--run", "egpo", "--run", "grpo", "-o", str(out),
                                                "--tracking-uri", mlflow_uri])
    assert by_spec.exit_code == 0 and "egpo: 2 steps, grpo: 3 steps" in by_spec.output, by_spec.output
    by_exp = CliRunner().invoke(plot_entropy, ["--experiment", "entropy-study", "-o", str(out),
                                               "--tracking-uri", mlflow_uri])
    assert by_exp.exit_code == 0 and "2 histories" in by_exp.output, by_exp.output
    none = CliRunner().invoke(plot_entropy, ["--study", "nope", "-o", str(out), "--tracking-uri", mlflow_uri])
    assert none.exit_code == 1 and "none of its 0 parent runs" in none.output
