"""Quiet logs (scoped HF silence, line progress off a terminal) and system-metrics monitors that
stop with their stage, whatever way it ends."""

from __future__ import annotations

import io
import os
import threading

import pytest

from registry.progress import LineProgress, progress
from registry.quiet import quiet_hf
from registry.sysmetrics import system_metrics


def test_line_progress_prints_a_line_per_ten_percent_and_no_redraws():
    out = io.StringIO()
    bar = LineProgress(100, desc="sft", unit="step", file=out, min_seconds=0)
    for _ in range(100):
        bar.update(1)
        bar.set_postfix(loss="1.000")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in out.getvalue()
    assert lines[0].startswith("sft: 10/100 step (10%") and lines[-1].startswith("sft: 100/100 step (100%")
    assert lines[-1].endswith("loss=1.000")


def test_line_progress_throttles_by_time_and_closes_with_the_final_count():
    out = io.StringIO()
    bar = LineProgress(50, initial=5, desc="train", file=out, min_seconds=3600)
    for _ in range(20):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    # the first 10 % step prints, later ones wait an hour; close prints where it stopped
    assert len(lines) == 2 and lines[-1].startswith("train: 25/50")


def test_progress_is_a_line_printer_when_stderr_is_not_a_terminal():
    assert isinstance(progress(10, desc="x"), LineProgress)  # pytest captures stderr


def test_quiet_hf_is_scoped_and_restores_state(monkeypatch):
    import huggingface_hub.utils as hub
    import transformers.utils.logging as tlog

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    before = (tlog.get_verbosity(), tlog.is_progress_bar_enabled(), hub.are_progress_bars_disabled())
    with quiet_hf():
        assert tlog.get_verbosity() == tlog.ERROR and not tlog.is_progress_bar_enabled()
        assert hub.are_progress_bars_disabled() and os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert (tlog.get_verbosity(), tlog.is_progress_bar_enabled(), hub.are_progress_bars_disabled()) == before
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


def _monitor_threads():
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]


def test_system_metrics_logged_and_monitor_stopped_when_the_stage_fails(tracker, mlflow_uri):
    with pytest.raises(RuntimeError):
        with system_metrics(mlflow_uri, tracker.run_id, interval_s=0.1) as monitor:
            assert monitor is not None and _monitor_threads()
            raise RuntimeError("stage crashed")
    assert not _monitor_threads()
    metrics = tracker.client.get_run(tracker.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/disk_usage_percentage" in metrics


def test_system_metrics_off_switch(tracker, mlflow_uri):
    with system_metrics(mlflow_uri, tracker.run_id, enabled=False) as monitor:
        assert monitor is None
    assert not any(k.startswith("system/") for k in tracker.client.get_run(tracker.run_id).data.metrics)


def test_cli_switch_and_spec_field_turn_system_metrics_off(tmp_path, mlflow_uri, monkeypatch):
    import json

    import mlflow
    from click.testing import CliRunner

    from registry.cli import main

    specs = tmp_path / "specs"
    specs.mkdir()
    base = "experiment: sysm\ndata: {synthetic: {num_records: 20, seed: 1}, test_size: 0.2}\n"
    (specs / "on.yaml").write_text(base + "tracking: {system_metrics_interval_s: 0.2}\n")
    (specs / "off.yaml").write_text(base + "tracking: {system_metrics: false}\n")
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "home"))
    client = mlflow.MlflowClient(mlflow_uri)

    def convert_metrics(*args):
        r = CliRunner().invoke(main, ["run", *args, "--force", "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout[r.stdout.index("{\n"):])
        return client.get_run(out["stages"][0]["run_id"]).data.metrics

    assert "system/cpu_utilization_percentage" in convert_metrics("on")
    assert not any(k.startswith("system/") for k in convert_metrics("on", "--no-system-metrics"))
    assert not any(k.startswith("system/") for k in convert_metrics("off"))
