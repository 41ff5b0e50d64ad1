"""``analysis.tool_entropy``: round statistics, the figure, loading files, and the CLI."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from analysis.tool_entropy import (
    entropy_figure,
    load_entropy_file,
    plot_entropy,
    profiles,
    round_stats,
    simulate,
)
from registry.errors import InputDataError


def test_round_stats_mean_std_count_by_hand():
    records = [{"sample_idx": 0, "round": 0, "entropy": 0.2}, {"sample_idx": 1, "round": 0, "entropy": 0.4},
               {"sample_idx": 0, "round": 1, "entropy": 0.9}, {"sample_idx": 1, "round": 1, "entropy": float("nan")}]
    stats = round_stats(records)
    assert stats[0].mean == pytest.approx(0.3) and stats[0].std == pytest.approx(0.1) and stats[0].count == 2
    assert (stats[1].mean, stats[1].std, stats[1].count) == (pytest.approx(0.9), 0.0, 1)  # NaN left out


def test_profiles_split_by_model_in_first_seen_order():
    records = [{"round": 0, "entropy": 0.1, "model": "b"}, {"round": 0, "entropy": 0.5, "model": "a"},
               {"round": 1, "entropy": 0.7, "model": "b"}]
    p = profiles(records)
    assert list(p) == ["b", "a"] and sorted(p["b"]) == [0, 1] and p["a"][0].mean == pytest.approx(0.5)


def test_simulate_is_seeded_labelled_and_shows_the_jump():
    a, b = simulate(5, 100, seed=1), simulate(5, 100, seed=1)
    assert a == b and a != simulate(5, 100, seed=2)
    assert len(a) == 100 * 6 and all(r["simulated"] and r["model"] == "simulated" for r in a)
    assert {"sample_idx", "round", "entropy", "is_after_tool_call"} <= set(a[0])
    stats = round_stats(a)
    assert sorted(stats) == [0, 1, 2, 3, 4, 5]
    assert all(stats[r].mean > stats[0].mean + 0.15 for r in range(1, 6))
    assert all(0.0 <= r["entropy"] <= 1.0 for r in a)


def test_figure_has_one_errorbar_line_per_model_and_labels_simulation():
    records = simulate(3, 20) + [{**r, "model": "other", "simulated": False} for r in simulate(3, 20, seed=5)]
    fig = entropy_figure(records)
    ax = fig.axes[0]
    assert "SIMULATED" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["simulated (n=20)", "other (n=20)"]
    assert ax.get_xlabel() == "Tool-call round" and "log V" in ax.get_ylabel()
    assert len(ax.containers) == 2  # two errorbar containers


def test_load_entropy_file_accepts_the_seed_schema_and_rejects_bad_records(tmp_path):
    good = tmp_path / "entropy_data.json"
    good.write_text(json.dumps([{"sample_idx": 0, "round": 0, "entropy": 0.75, "is_after_tool_call": False},
                                {"sample_idx": 0, "round": 1, "entropy": 0.82, "is_after_tool_call": True}]))
    assert [r["round"] for r in load_entropy_file(good)] == [0, 1]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"sample_idx": 0, "entropy": 0.5}]))
    with pytest.raises(InputDataError, match=r"bad.json: record 0: needs fields"):
        load_entropy_file(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(InputDataError, match="broken.json: not valid JSON"):
        load_entropy_file(broken)


def test_cli_simulate_writes_a_png(tmp_path):
    out = tmp_path / "demo.png"
    result = CliRunner().invoke(plot_entropy, ["--simulate", "--num_rounds", "5", "--num_samples", "100", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[SIMULATED]" in result.output and "600 records" in result.output


def test_cli_entropy_file_and_after_tool_only(tmp_path):
    data = tmp_path / "entropy_data.json"
    data.write_text(json.dumps([r for r in simulate(2, 5)]))
    out = tmp_path / "e.png"
    result = CliRunner().invoke(plot_entropy, ["--entropy_file", str(data), "--after_tool_only", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "10 records" in result.output and out.is_file()


@pytest.mark.parametrize("args, message", [
    ([], "give exactly one source"),
    (["--simulate", "--entropy_file", "x.json"], "give exactly one source"),
    (["--entropy_file", "missing.json"], "missing.json: entropy file not found"),
])
def test_cli_errors_are_clean(tmp_path, args, message):
    result = CliRunner().invoke(plot_entropy, args + ["-o", str(tmp_path / "x.png")])
    assert result.exit_code in (1, 2) and message in result.output
    assert "Traceback" not in result.output


def test_cli_help():
    result = CliRunner().invoke(plot_entropy, ["--help"])
    assert result.exit_code == 0 and "--entropy_file" in result.output and "--simulate" in result.output


def test_round_stats_is_finite_for_single_values():
    s = round_stats([{"round": 2, "entropy": 0.5}])[2]
    assert math.isfinite(s.std) and s.std == 0.0
