"""Broken specs exit 2 with `Error: <file>: <dotted.path>: <what> (<fix>)`, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import main
from registry.errors import SpecError, UsageError
from registry.loader import deep_merge, load_spec

GOOD = "data: {synthetic: {num_records: 10}}\n"


def write(d: Path, name: str, text: str) -> Path:
    p = d / f"{name}.yaml"
    p.write_text(text)
    return p


@pytest.fixture()
def specs(tmp_path, monkeypatch):
    d = tmp_path / "specs"
    d.mkdir()
    monkeypatch.setenv("RLREG_SPECS_DIR", str(d))
    monkeypatch.chdir(tmp_path)
    return d


def run_cli(*args):
    return CliRunner().invoke(main, list(args))


def assert_clean_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ")
    for f in fragments:
        assert f in result.output, result.output


def test_unknown_key_suggests_the_fix(specs):
    write(specs, "x", GOOD + "train:\n  algorithm: {adv_estimtor: egpo}\n")
    r = run_cli("validate", "x")
    assert_clean_error(r, "specs/x.yaml: train.algorithm.adv_estimtor: unknown field (did you mean adv_estimator?)")


def test_wrong_type_names_field_and_value(specs):
    write(specs, "x", GOOD + "train: {train_batch_size: lots}\n")
    r = run_cli("validate", "x")
    assert_clean_error(r, "specs/x.yaml: train.train_batch_size:", "'lots'")


def test_bad_literal_suggests_closest(specs):
    write(specs, "x", GOOD + "train: {algorithm: {adv_estimator: egp}}\n")
    assert_clean_error(run_cli("validate", "x"), "train.algorithm.adv_estimator", "did you mean 'egpo'")


def test_missing_required_source(specs):
    write(specs, "x", "data: {max_samples: 3}\n")
    assert_clean_error(run_cli("validate", "x"), "specs/x.yaml: data:", "exactly one of `source`")


def test_missing_model_for_training(specs):
    write(specs, "x", GOOD + "train: {}\n")
    assert_clean_error(run_cli("validate", "x"), "need a `model` section")


def test_bad_extends_target(specs):
    write(specs, "x", "extends: nope\n" + GOOD)
    assert_clean_error(run_cli("validate", "x"), "specs/x.yaml: extends: no spec named 'nope'")


def test_extends_cycle_reports_chain(specs):
    write(specs, "a", "extends: b\n")
    write(specs, "b", "extends: c\n")
    write(specs, "c", "extends: a\n")
    assert_clean_error(run_cli("validate", "a"), "extends: cycle a -> b -> c -> a")


@pytest.mark.parametrize("name", ["../x", "a/b", "_x", ".hidden", "x y", ""])
def test_bad_names_refused_before_opening_files(specs, name):
    outside = specs.parent / "x.yaml"
    outside.write_text(GOOD)
    r = run_cli("show", name)
    assert_clean_error(r, "is not a valid spec name")


def test_broken_yaml_gives_line(specs):
    write(specs, "x", "data: {synthetic: {num_records: 10}\ntrain: [\n")
    assert_clean_error(run_cli("validate", "x"), "specs/x.yaml: invalid YAML at line")


def test_non_mapping_and_empty(specs):
    write(specs, "x", "- 1\n- 2\n")
    write(specs, "y", "")
    assert_clean_error(run_cli("validate", "x"), "must be a YAML mapping")
    assert_clean_error(run_cli("validate", "y"), "the file is empty")


def test_inherited_error_names_origin(specs):
    write(specs, "base", GOOD + "sft: {max_steps: many}\nmodel: {tiny: {}}\n")
    write(specs, "child", "extends: base\n")
    with pytest.raises(SpecError) as exc:
        load_spec("child")
    assert "specs/child.yaml: sft.max_steps" in str(exc.value)
    assert "[set in specs/base.yaml]" in str(exc.value)


def test_egpo_keys_on_grpo_rejected(specs):
    write(specs, "x", GOOD + "model: {tiny: {}}\ntrain: {algorithm: {adv_estimator: grpo, egpo_lambda: 0.4}}\n")
    assert_clean_error(run_cli("validate", "x"), "egpo_lambda/egpo_alpha only apply to egpo estimators")


def test_unknown_spec_name_suggests(specs):
    write(specs, "demo-grpo", GOOD)
    with pytest.raises(UsageError, match="did you mean demo-grpo"):
        load_spec("demo-grp")


def test_validate_reports_every_problem_and_all_specs(specs):
    write(specs, "good", GOOD)
    write(specs, "bad", GOOD + "sft: {lr: -1, schedule: linear}\nmodel: {tiny: {}}\n")
    r = run_cli("validate")
    assert r.exit_code == 2
    assert "ok  specs/good.yaml" in r.output
    assert "sft.lr" in r.output and "sft.schedule" in r.output


def test_deep_merge_rules():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1, "s": {"k": 1}}
    over = {"a": {"y": [3]}, "s": None}
    assert deep_merge(base, over) == {"a": {"x": 1, "y": [3]}, "b": 1, "s": None}
    assert base["a"]["y"] == [1, 2]  # inputs untouched


def test_name_is_never_inherited(specs):
    write(specs, "base", "name: base\n" + GOOD)
    write(specs, "kid", "extends: base\n")
    assert load_spec("kid").spec.name == "kid"
