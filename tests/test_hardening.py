"""Issue 16, inputs: every hostile input ends in one `Error:` line with exit 2 (spec/usage) or 1
(run), never a traceback or a hang; nonsense values are refused with a fix; a bug is one
`Error: internal error: … (details in <log>)` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from _servers import free_port
from click.testing import CliRunner

from registry.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOOD = "experiment: hardening\ndata: {synthetic: {num_records: 30, seed: 1}, max_samples: 30, test_size: 0.2}\n"
BOMB = "".join(f"  {c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def cli(args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """The CLI as a user runs it; the timeout bounds a hang (it is not a speed assertion)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "registry", *args], capture_output=True, text=True,
                          timeout=timeout, env=full, stdin=subprocess.DEVNULL)


def one_error(r, code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = [x for x in r.stderr.splitlines() if x.startswith("Error: ")]
    assert lines, r.stderr
    return "\n".join(lines)


@pytest.mark.parametrize("where", ["tags", "train.verl.verl_overrides"])
def test_alias_bomb_is_refused_before_anything_walks_it(tmp_path, where):
    head = "  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + BOMB
    if where == "tags":
        text = GOOD + "tags:\n" + head
    else:
        text = (GOOD + "model: {tiny: {}}\ntrain:\n  backend: verl\n  verl:\n    verl_overrides:\n"
                + "".join("    " + line + "\n" for line in head.splitlines()))
    spec = tmp_path / "bomb.yaml"
    spec.write_text(text)
    for args in (["validate", str(spec)], ["show", str(spec), "--resolved"], ["run", str(spec), "--dry-run"]):
        msg = one_error(cli(args), 2)
        assert "expands to more than" in msg and "alias" in msg


@pytest.mark.parametrize("text, expect", [
    ("data: {synthetic: {}}\nseed: 1\nseed: 2\n", "duplicate key 'seed' (lines 2 and 3"),
    ("data: {synthetic: {}}\nseed: " + "9" * 5000 + "\n", "5000 digits"),
    ("data: {synthetic: {}}\n" + "# pad\n" * 200_000, "more than the"),
])
def test_yaml_level_limits(tmp_path, text, expect):
    (tmp_path / "s.yaml").write_text(text)
    assert expect in one_error(cli(["validate", str(tmp_path / "s.yaml")]), 2)


@pytest.mark.parametrize("override", [
    "seed=" + "9" * 5000,
    "tags.x=[&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(f"&{c} [{','.join([f'*{p}'] * 10)}]" for p, c in zip("abcde", "bcdef")) + "]",
])
def test_command_line_overrides_are_bounded_too(override):
    r = CliRunner().invoke(main, ["show", "demo-grpo", override])
    assert r.exit_code == 2 and r.output.startswith("Error: override ") and "Traceback" not in r.output


def test_fifo_and_device_spec_files_do_not_block(tmp_path):
    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in one_error(cli(["validate", str(fifo)], timeout=60), 2)


@pytest.mark.parametrize("source", ["fifo", "/dev/null"])
def test_fifo_or_dev_null_as_data_source(tmp_path, mlflow_uri, source):
    if source == "fifo":
        source = str(tmp_path / "data.jsonl")
        os.mkfifo(source)
    (tmp_path / "s.yaml").write_text(f"experiment: hardening\ndata: {{source: {source}, format: jsonl}}\n")
    r = cli(["run", str(tmp_path / "s.yaml")], env={"RLREG_HOME": str(tmp_path / "home")}, timeout=120)
    assert "not a file" in one_error(r, 2)
    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("hardening").experiment_id])
    assert runs and {run.info.status for run in runs} == {"FAILED"}


@pytest.mark.parametrize("extra, expect", [
    ("tags: {'owner@lab': x}", "characters MLflow refuses"),
    ("tags: {" + "k" * 300 + ": x}", "MLflow allows 241"),
    ("tags: {" + ", ".join(f"t{i}: x" for i in range(101)) + "}", "more than the 100 allowed"),
    ("tags: {a: " + "v" * 9000 + "}", "MLflow keeps 8000"),
    ("experiment: ''", "must not be empty"),
    ("model: {tiny: {}, cpu_threads: 1000000}", "cpu_threads"),
    ("train: {optimizer: {lr: .inf}}", "must be a finite number > 0"),
    ("train: {algorithm: {entropy_coeff: .nan}}", "must be a finite number"),
    ("train: {algorithm: {clip_ratio_low: 5}}", "< 1.0"),
    ("train: {train_batch_size: 1000000000000}", "≤ 1_000_000"),
    ("seed: 18446744073709551616", "≤ 4_294_967_295"),
    ("eval: {temperature: .inf}", "finite"),
])
def test_nonsense_refused_at_validation_and_no_run_is_started(tmp_path, mlflow_uri, extra, expect):
    (tmp_path / "s.yaml").write_text(GOOD.replace("experiment: hardening\n", "") + "model: {tiny: {}}\n" * ("model:" not in extra)
                                     + extra + "\n" + ("experiment: hardening\n" if "experiment" not in extra else ""))
    r = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml")])
    assert r.exit_code == 2, r.output
    assert expect in r.output and r.output.startswith("Error: ")
    assert all(line.rstrip().endswith(")") or "[set in" in line for line in r.output.splitlines()), r.output
    client = mlflow.MlflowClient(mlflow_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_broken_spec_does_not_hide_the_others(tmp_path, monkeypatch):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "broken.yaml").write_text("data: {synthetic: {}}\nseed: 1\nseed: 2\n")
    (tmp_path / "bomb.yaml").write_text("tags:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + BOMB)
    monkeypatch.setenv("RLREG_SPECS_DIR", str(tmp_path))
    r = CliRunner().invoke(main, ["list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["good"]["valid"] and not rows["broken"]["valid"] and not rows["bomb"]["valid"]
    assert "duplicate key" in rows["broken"]["error"]
    r = CliRunner().invoke(main, ["validate"])
    assert r.exit_code == 2 and "ok  " in r.output and "good.yaml" in r.output and "duplicate key" in r.output




@pytest.mark.parametrize("uri, code, expect", [
    ("file:///tmp/rlreg-mlruns", 2, "file store"),
    ("./mlruns", 2, "file store"),
    ("bogus://x", 2, "unknown scheme 'bogus'"),
    ("postgresql://u@127.0.0.1:1/db", 2, "driver 'psycopg' is not installed"),
    ("http://u:pw@127.0.0.1:1", 2, "holds a password"),
    ("http://127.0.0.1:{port}", 1, "is unreachable"),
])
def test_store_uri_checked_up_front(tmp_path, uri, code, expect):
    (tmp_path / "s.yaml").write_text(GOOD)
    uri = uri.format(port=free_port())
    r = cli(["run", str(tmp_path / "s.yaml")], env={"MLFLOW_TRACKING_URI": uri, "RLREG_HOME": str(tmp_path / "h"),
                                                    "RLREG_STORE_TIMEOUT_S": "3"}, timeout=90)
    msg = one_error(r, code)
    assert expect in msg and "pw@" not in msg


def test_internal_error_is_one_line_with_a_log(tmp_path, monkeypatch):
    import registry.loader

    def boom(*a, **k):
        raise RuntimeError("kaboom https://u:s3cretpw@h")

    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RLREG_DEBUG", raising=False)
    monkeypatch.setattr(registry.loader, "load_spec", boom)
    r = CliRunner().invoke(main, ["show", "x"])
    assert r.exit_code == 1, r.output
    (line,) = r.output.splitlines()
    assert line.startswith("Error: internal error: RuntimeError: kaboom") and "s3cretpw" not in line
    log = Path(line.split("details in ", 1)[1].split(";", 1)[0])
    assert log.is_file() and log.parent == tmp_path / "home" / "logs"
    text = log.read_text()
    assert "Traceback" in text and "boom" in text and "s3cretpw" not in text
    assert (log.stat().st_mode & 0o777) == 0o600
    r = CliRunner().invoke(main, ["--debug", "show", "x"])
    assert isinstance(r.exception, RuntimeError)  # --debug: the traceback, not the line


def test_parent_never_left_running_when_its_metadata_is_refused(tmp_path, mlflow_uri, monkeypatch):
    from registry.tracking import Tracker

    (tmp_path / "s.yaml").write_text(GOOD)

    def refuse(self, tags):
        raise mlflow.exceptions.MlflowException("INVALID_PARAMETER_VALUE: tag refused")

    monkeypatch.setattr(Tracker, "set_tags", refuse)
    r = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml")])
    assert r.exit_code == 1 and "internal error" in r.output
    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("hardening").experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]
